"""The sans-IO connection of protocol v1, for either role (as in h11).

No sockets, no clock, no asyncio. One way in: bytes read from the peer go to
``receive_data(data, now)`` (``b""`` at end of file), then ``next_event()`` hands
out what they completed, one event at a time, until it returns ``NEED_DATA``.
One way out: ``send(message)`` for messages (``Stop(...)``, ``Event(...)``, the
handshake), ``send_data``/``send_end``/``consumed`` on the data path; the bytes
to write come out of ``data_to_send()``. Time enters as ``now``: the host's stop
timeout and exit grace come back through ``next_deadline()``/``handle_timer(now)``.

When the peer breaks the protocol, ``next_event()`` first hands out every event
of the frames before the bad one, then raises the RemoteProtocolError (and again
on every later call). The caller then writes what ``data_to_send`` still holds
(it may hold a REJECT) and closes the connection.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from . import codec
from .constants import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    HOST_TO_RUNNER,
    MAX_MAX_FRAME_SIZE,
    MIN_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    RUNNER_TO_HOST,
    Role,
)
from .errors import HandshakeError, LocalProtocolError, MalformedFrame, RemoteProtocolError, UnknownMessage
from .events import (
    MESSAGES,
    NEED_DATA,
    ConnectionClosed,
    ConnectionEvent,
    CreditAvailable,
    Data,
    DeadlineExpired,
    EndOfStream,
    Kill,
    Message,
    Ping,
    Pong,
    Reject,
    Sentinel,
    replaced,
)
from .flow import ReceiveWindow, SendWindow
from .framer import IMPLEMENTATION, KIND_CREDIT, KIND_DATA, KIND_END, FrameDecoder, FrameEncoder
from .lifecycle import LIFECYCLE_MESSAGES, Lifecycle, State
from .stop import DEFAULT_EXIT_GRACE

__all__ = [
    "MAX_WINDOW",
    "Connection",
    "ConnectionClosed",
    "ConnectionEvent",
    "CreditAvailable",
    "Data",
    "DeadlineExpired",
    "EndOfStream",
    "Message",
    "Role",
]

MAX_WINDOW = (1 << 31) - 1
_HANDSHAKE = (Ping, Pong, Reject)


class Connection:
    def __init__(
        self,
        role: Role,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        window: int = DEFAULT_WINDOW,
        exit_grace: float = DEFAULT_EXIT_GRACE,
    ) -> None:
        if not MIN_MAX_FRAME_SIZE <= max_frame_size <= MAX_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be {MIN_MAX_FRAME_SIZE}..{MAX_MAX_FRAME_SIZE}")
        if not 0 < window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}")
        self.role = role
        self.max_frame_size = max_frame_size
        self.window = window
        self.lifecycle = Lifecycle(exit_grace)
        #: The peer's Ping (host) or Pong (runner), once received.
        self.peer_hello: Ping | Pong | None = None
        self.closed = False
        self._decoder = FrameDecoder(max_frame_size)
        self._encoder = FrameEncoder(max_frame_size)
        self._pack = codec.packer().pack
        self._events: deque[ConnectionEvent] = deque()
        self._error: RemoteProtocolError | None = None
        self._inbound = HOST_TO_RUNNER if role is Role.RUNNER else RUNNER_TO_HOST
        # No receive windows until the handshake completes: data, credit and end of stream
        # before it are refused. No credit to send until the peer's hello says how much.
        self._recv: dict[int, ReceiveWindow] = {}
        outbound = RUNNER_TO_HOST if role is Role.RUNNER else HOST_TO_RUNNER
        self._send: dict[int, SendWindow] = {int(ch): SendWindow(0) for ch in outbound}
        self._ended_in: set[int] = set()
        self._ended_out: set[int] = set()
        self._hello_sent = False  # our Ping, Pong or Reject
        self._accepted = False  # the handshake completed: PONG sent (host) or received (runner)

    # -- state -------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.lifecycle.state

    @property
    def open(self) -> bool:
        """True once the handshake completed and until EXITING."""
        return self._accepted and self.lifecycle.state is not State.EXITED

    def can_send(self, cls: type[Message]) -> bool:
        """Whether this side may send a ``cls`` message now and it changes something (see
        ``Lifecycle.can_send``): a sender skips a message that crossed with the peer's."""
        # Asked before every message a runner sends: ``open`` and Lifecycle.can_send written out
        # for the ordinary messages (EVENT, MONITORING), the lifecycle ones asked as before.
        state = self.lifecycle.state
        if not self._accepted or state is State.EXITED or cls.sender not in (self.role, None):
            return False
        if cls in LIFECYCLE_MESSAGES:
            return self.lifecycle.can_send(cls)
        return state is not State.STARTING

    # -- sending messages ------------------------------------------------------
    def send(self, event: Message, now: float = 0.0) -> None:
        """Queue a message. LocalProtocolError if this side may not send it now (nothing is queued)."""
        cls = type(event)
        sender = cls.sender
        if sender is not None and sender is not self.role:
            raise LocalProtocolError(f"{cls.__name__} is sent by the {sender.value}, not by the {self.role.value}")
        if cls in _HANDSHAKE:
            event = self._own_hello(event)
        elif not self._accepted or self.lifecycle.state is State.EXITED:  # not open
            raise LocalProtocolError(f"cannot send {cls.__name__} while the connection is {self._phase()}")
        raw = codec.encode(event, self._pack)
        if cls in LIFECYCLE_MESSAGES:
            self.lifecycle.apply(event, now, LocalProtocolError)
        self._encoder.message(cls.channel, cls.code, raw)
        if cls is Pong:
            self._accept()

    def _phase(self) -> str:
        return "in its handshake" if not self._accepted else self.state.value

    def _own_hello(self, event: Message) -> Message:
        """Check the order of the handshake and fill in this side's parameters."""
        if self._hello_sent:
            raise LocalProtocolError(f"the {self.role.value} already sent its handshake message")
        if isinstance(event, Pong) and self.peer_hello is None:
            raise LocalProtocolError("Pong answers a received Ping")
        if isinstance(event, (Ping, Pong)):
            event = replaced(event, protocol=PROTOCOL_VERSION, impl=IMPLEMENTATION,
                            max_frame_size=self.max_frame_size, window=self.window)
        self._hello_sent = True
        return event

    def _accept(self) -> None:
        self._accepted = True
        self._recv.update({int(ch): ReceiveWindow(self.window) for ch in self._inbound})

    # -- receiving -------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, now: float = 0.0) -> None:
        """Feed bytes read from the peer (b"" at end of file); then call next_event() until NEED_DATA."""
        if self._error is not None or self.closed:
            return
        if not data:
            if self._decoder.buffered:
                self._error = MalformedFrame(f"connection closed inside a frame ({self._decoder.buffered} bytes)")
            else:
                self.closed = True
                self._events.append(ConnectionClosed())
            return
        try:
            frames = self._decoder.decode(data)
        except RemoteProtocolError as err:
            frames, err.frames = err.frames, []  # act on the frames before the bad one
            self._error = err
        try:
            self._handle_frames(frames, now)
        except RemoteProtocolError as err:
            self._error = err  # the frames after the refused one are not acted on

    def pending_view(self, at_least: int = 1) -> memoryview | None:
        """Where the rest of a payload cut by the last read goes without a copy: a writable view
        to ``recv_into``, then ``received_into(n)``. None when no payload is pending (or fewer
        than ``at_least`` of its bytes are missing): read and ``receive_data`` as ever. Only the
        one thread that feeds this Connection may use it."""
        if self._error is not None or self.closed:
            return None
        view: memoryview | None = self._decoder.pending_view(at_least)
        return view

    def received_into(self, n: int, now: float = 0.0) -> None:
        """``n`` bytes were read into the last ``pending_view`` (0: end of file, as ``receive_data(b"")``);
        then call next_event() until NEED_DATA."""
        if self._error is not None or self.closed:
            return
        if not n:
            self.receive_data(b"", now)
            return
        try:
            frames = self._decoder.pending_filled(n)
        except RemoteProtocolError as err:
            frames, err.frames = err.frames, []
            self._error = err
        try:
            self._handle_frames(frames, now)
        except RemoteProtocolError as err:
            self._error = err

    def next_event(self) -> ConnectionEvent | Sentinel:
        """The next event, NEED_DATA when there is none; raises the peer's protocol error after
        the events of every frame that came before the bad one."""
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return NEED_DATA

    def _handle_frames(self, frames: list[Any], now: float) -> None:
        append = self._events.append
        recv = self._recv
        for kind, channel, number, payload in frames:
            if kind == KIND_DATA:
                window = recv.get(channel)
                if window is None or channel in self._ended_in:
                    raise self._refused(channel, "data")
                window.receive(len(payload), channel)
                append(Data(channel, payload))
            elif kind == KIND_END:
                if channel not in recv or channel in self._ended_in:
                    raise self._refused(channel, "end of stream")
                self._ended_in.add(channel)
                append(EndOfStream(channel))
            elif kind == KIND_CREDIT:
                send_window = self._send.get(channel)
                if send_window is None or not self._accepted:
                    raise self._refused(channel, "credit")
                send_window.grant(number)
                append(CreditAvailable(channel, send_window.available))
            else:
                append(self._receive_message(channel, number, payload, now))

    def _refused(self, channel: int, what: str) -> RemoteProtocolError:
        if not self._accepted:
            return HandshakeError(f"{what} on channel {channel} before the handshake")
        if channel in self._ended_in:
            return MalformedFrame(f"{what} on channel {channel} after its end of stream")
        return MalformedFrame(f"{what} on channel {channel}, which the {self._peer_role()} does not send on")

    def _receive_message(self, channel: int, code: int, payload: Any, now: float) -> Message:
        cls = MESSAGES.get(code)
        if cls is None or cls.sender is self.role:
            raise UnknownMessage(f"message code {code} may not be sent by the {self._peer_role()}")
        event = codec.decode(code, payload)
        if channel != cls.channel:
            raise MalformedFrame(f"message {code} on channel {channel}")
        if isinstance(event, (Ping, Pong)):
            self._take_peer_hello(event)
        elif not self._accepted and cls is not Reject:
            raise HandshakeError(f"message {code} before the handshake")
        if cls in LIFECYCLE_MESSAGES:
            self.lifecycle.apply(event, now)
        return event

    def _take_peer_hello(self, hello: Ping | Pong) -> None:
        if self.peer_hello is not None:
            raise HandshakeError(f"a second handshake message {hello.code}")
        if isinstance(hello, Pong) and not self._hello_sent:
            raise HandshakeError("PONG before PING")
        reason = None
        if hello.protocol != PROTOCOL_VERSION:
            reason = f"protocol version {hello.protocol} is not supported (this side speaks {PROTOCOL_VERSION})"
        elif not (MIN_MAX_FRAME_SIZE <= hello.max_frame_size <= MAX_MAX_FRAME_SIZE
                  and 0 < hello.window <= MAX_WINDOW):
            reason = f"bad handshake parameters maxFrameSize={hello.max_frame_size} window={hello.window}"
        if reason is not None:
            if self.role is Role.HOST and not self._hello_sent:
                self.send(Reject(reason=reason))
            raise HandshakeError(reason)
        self.peer_hello = hello
        self._encoder.max_frame_size = min(hello.max_frame_size, self.max_frame_size)
        for send_window in self._send.values():
            send_window.grant(hello.window)
        if isinstance(hello, Pong):
            self._accept()

    def _peer_role(self) -> str:
        return "host" if self.role is Role.RUNNER else "runner"

    # -- the data path -------------------------------------------------------------
    def consumed(self, channel: int, n: int) -> None:
        """The application took ``n`` bytes of ``channel``; return credit to the peer when due."""
        window = self._recv.get(channel)
        if window is None:
            raise LocalProtocolError(f"the {self.role.value} does not receive on channel {channel} now")
        credit = window.consume(n)
        if credit and channel not in self._ended_in:
            self._encoder.credit(channel, credit)

    def credit(self, channel: int) -> int:
        """Bytes that may be sent on ``channel`` now."""
        return self._send[channel].available

    def send_data(self, channel: int, payload: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``payload`` as credit allows; return how many bytes were taken."""
        window = self._send.get(channel)
        if window is None:
            raise LocalProtocolError(f"the {self.role.value} does not send on channel {channel}")
        if channel in self._ended_out:
            raise LocalProtocolError(f"channel {channel} was already ended")
        n = min(len(payload), window.available)
        if n <= 0:
            return 0
        window.available -= n
        self._encoder.data(channel, payload if n == len(payload) else memoryview(payload)[:n])
        return n

    @property
    def max_send_frame(self) -> int:
        """The largest DATA payload one frame to the peer may carry (the smaller of both limits)."""
        return int(self._encoder.max_frame_size)

    def send_data_header(self, channel: int, n: int) -> None:
        """Spend ``n`` bytes of credit (1..credit and max_send_frame) on a DATA frame whose payload
        the caller writes itself: only the header is queued, and the caller writes the ``n`` bytes
        right after the buffers ``data_to_send()`` returns next, before anything queued later
        (``os.sendfile`` from a file, so the bytes never enter this process)."""
        window = self._send.get(channel)
        if window is None:
            raise LocalProtocolError(f"the {self.role.value} does not send on channel {channel}")
        if channel in self._ended_out:
            raise LocalProtocolError(f"channel {channel} was already ended")
        if not 0 < n <= min(window.available, self.max_send_frame):
            raise LocalProtocolError(f"{n} bytes do not fit one frame within the credit of channel {channel}")
        self._encoder.data_header(channel, n)
        window.available -= n

    def detach_data(self, channel: int) -> tuple[memoryview, int] | None:
        """The DATA frame on ``channel`` that the last ``receive_data`` left cut, taken out of the
        frame stream: ``(head, rest)``, its payload bytes received so far and how many follow.
        The caller reads the next ``rest`` bytes of the connection itself (``os.splice`` to a
        pipe, say) and reports them with ``consumed`` as it delivers them; no ``Data`` event
        comes for the frame. None when no such frame is held (or the channel may not carry it
        now: its error comes from ``next_event`` as ever)."""
        window = self._recv.get(channel)
        if window is None or channel in self._ended_in or self._error is not None or self.closed:
            return None
        detached: tuple[memoryview, int] | None = self._decoder.detach_payload(channel)
        if detached is None:
            return None
        head, rest = detached
        try:
            window.receive(len(head) + rest, channel)
        except RemoteProtocolError as err:
            self._error = err
            return None
        return detached

    def send_end(self, channel: int) -> None:
        if channel not in self._send:
            raise LocalProtocolError(f"the {self.role.value} does not send on channel {channel}")
        if not self._accepted:
            raise LocalProtocolError(f"cannot end channel {channel} before the handshake")
        if channel in self._ended_out:
            return
        self._ended_out.add(channel)
        self._encoder.end(channel)

    def data_to_send(self) -> list[Any]:
        """Buffers to write, in order (one coalesced buffer for runs of small frames)."""
        chunks: list[Any] = self._encoder.take()
        return chunks

    @property
    def bytes_to_send(self) -> int:
        return int(self._encoder.pending)

    # -- time --------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self.lifecycle.deadline

    def handle_timer(self, now: float) -> None:
        """Act on a deadline that passed: DeadlineExpired from next_event(), KILL queued when due."""
        kind = self.lifecycle.expire(now)
        if kind is None:
            return
        if self.role is Role.HOST and self.state in (State.STOPPING, State.STOPPED, State.COMPLETED):
            # The stop timeout passed without keepalive, or the runner did not exit in time.
            self.send(Kill(), now)
        self._events.append(DeadlineExpired(kind))

