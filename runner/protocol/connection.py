"""The sans-IO connection of protocol v1, for either role.

No sockets, no clock, no asyncio: bytes come in through ``receive_data``, bytes
to write come out of ``data_to_send``, time enters as ``now``. The I/O layer of
the runner and of host_bridge is a thin loop around this object. On any
ProtocolError the caller writes what ``data_to_send`` still holds (it may hold
a REJECT) and closes the connection.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import codec
from .constants import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    HOST_CODES,
    HOST_TO_RUNNER,
    MAX_MAX_FRAME_SIZE,
    MIN_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    RUNNER_CODES,
    RUNNER_TO_HOST,
    Code,
)
from .errors import HandshakeError, LocalProtocolError, MalformedFrame, ProtocolError, UnknownMessage
from .flow import ReceiveWindow, SendWindow
from .framer import IMPLEMENTATION, KIND_CREDIT, KIND_DATA, KIND_END, FrameDecoder, FrameEncoder
from .lifecycle import DEFAULT_EXIT_GRACE, LIFECYCLE_CODES, Deadline, Lifecycle, State

MAX_WINDOW = (1 << 31) - 1


class Role(str, enum.Enum):
    RUNNER = "runner"
    HOST = "host"


@dataclass(slots=True)
class Data:
    """Bytes on a data channel (``payload`` may be a memoryview; copy it to keep it)."""

    channel: int
    payload: Any


@dataclass(slots=True)
class EndOfStream:
    """The peer will send no more data on ``channel``."""

    channel: int


@dataclass(slots=True)
class Message:
    """A message with a checked body; ``channel`` is CONTROL, MONITORING or EVENTS."""

    code: int
    body: dict[str, Any]


@dataclass(slots=True)
class CreditAvailable:
    """The peer granted credit: ``available`` bytes may now be sent on ``channel``."""

    channel: int
    available: int


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection."""


@dataclass(slots=True)
class DeadlineExpired:
    """A lifecycle deadline passed (the host role has already queued KILL if due)."""

    kind: Deadline


Event = Data | EndOfStream | Message | CreditAvailable | ConnectionClosed | DeadlineExpired


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
        self.peer_hello: dict[str, Any] | None = None
        self.closed = False
        self._decoder = FrameDecoder(max_frame_size)
        self._encoder = FrameEncoder(max_frame_size)
        runner = role is Role.RUNNER
        inbound = HOST_TO_RUNNER if runner else RUNNER_TO_HOST
        outbound = RUNNER_TO_HOST if runner else HOST_TO_RUNNER
        self._own_codes = RUNNER_CODES if runner else HOST_CODES
        self._peer_codes = HOST_CODES if runner else RUNNER_CODES
        self._recv: dict[int, ReceiveWindow] = {int(ch): ReceiveWindow(window) for ch in inbound}
        # No credit until the peer's hello says how much: nothing flows before the handshake.
        self._send: dict[int, SendWindow] = {int(ch): SendWindow(0) for ch in outbound}
        self._ended_in: set[int] = set()
        self._ended_out: set[int] = set()
        self._hello_sent = False

    # -- state -------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.lifecycle.state

    @property
    def open(self) -> bool:
        """True once both hellos are exchanged and until EXITING."""
        return self.state not in (State.STARTING, State.EXITED) and self.peer_hello is not None

    def _hello(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "impl": IMPLEMENTATION,
            "maxFrameSize": self.max_frame_size,
            "window": self.window,
        }

    # -- handshake -----------------------------------------------------------
    def send_ping(self, instance_id: str, token: str = "", **extra: Any) -> None:
        """Runner: the first message of the connection."""
        if self.role is not Role.RUNNER or self._hello_sent:
            raise LocalProtocolError("only a runner sends PING, once")
        self._hello_sent = True
        self._queue(Code.PING, {**extra, **self._hello(), "instanceId": instance_id, "token": token}, 0.0)

    def accept(self, now: float = 0.0, **fields: Any) -> None:
        """Host: answer the runner's PING with PONG (``appConfig``, ``args``, ... as fields)."""
        if self.role is not Role.HOST or self.peer_hello is None or self._hello_sent:
            raise LocalProtocolError("accept() answers one received PING, once")
        self._hello_sent = True
        self._queue(Code.PONG, {**fields, **self._hello()}, now)

    def reject(self, reason: str, now: float = 0.0) -> None:
        """Host: refuse the runner; write data_to_send() and close afterwards."""
        if self.role is not Role.HOST or self._hello_sent:
            raise LocalProtocolError("reject() refuses a runner before accepting it")
        self._hello_sent = True
        self._queue(Code.REJECT, {"reason": reason}, now)

    def _take_peer_hello(self, code: int, body: dict[str, Any]) -> None:
        if body["protocol"] != PROTOCOL_VERSION:
            reason = f"protocol version {body['protocol']} is not supported (this side speaks {PROTOCOL_VERSION})"
            if self.role is Role.HOST:
                self.reject(reason)
            raise HandshakeError(reason)
        size, window = body["maxFrameSize"], body["window"]
        if not MIN_MAX_FRAME_SIZE <= size <= MAX_MAX_FRAME_SIZE or not 0 < window <= MAX_WINDOW:
            reason = f"bad handshake parameters maxFrameSize={size} window={window}"
            if self.role is Role.HOST:
                self.reject(reason)
            raise HandshakeError(reason)
        self.peer_hello = body
        self._encoder.max_frame_size = min(size, self.max_frame_size)
        for send_window in self._send.values():
            send_window.grant(window)

    # -- receiving -------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, now: float = 0.0) -> list[Event]:
        """Feed bytes read from the peer (b"" at end of file); return the events they complete."""
        if not data:
            if self._decoder.buffered:
                raise MalformedFrame(f"connection closed inside a frame ({self._decoder.buffered} bytes)")
            self.closed = True
            return [ConnectionClosed()]
        events: list[Event] = []
        try:
            frames = self._decoder.decode(data)
        except ProtocolError as err:
            self._handle_frames(err.frames, now, events)  # act on what came before the bad frame
            err.frames = events
            raise
        try:
            self._handle_frames(frames, now, events)
        except ProtocolError as err:
            err.frames = events  # the events of the frames before the one refused
            raise
        return events

    def _handle_frames(self, frames: list[Any], now: float, events: list[Event]) -> None:
        """Append the events of ``frames`` to ``events``; a refused frame raises, the list keeps the rest."""
        append = events.append
        recv = self._recv
        for kind, channel, number, payload in frames:
            if kind == KIND_DATA:
                window = recv.get(channel)
                if window is None or self.peer_hello is None:
                    raise MalformedFrame(f"data on channel {channel}, which the peer may not send on now")
                if channel in self._ended_in:
                    raise MalformedFrame(f"data on channel {channel} after its end of stream")
                window.receive(len(payload), channel)
                append(Data(channel, payload))
            elif kind == KIND_END:
                if channel not in recv or channel in self._ended_in:
                    raise MalformedFrame(f"unexpected end of stream on channel {channel}")
                self._ended_in.add(channel)
                append(EndOfStream(channel))
            elif kind == KIND_CREDIT:
                send_window = self._send.get(channel)
                if send_window is None:
                    raise MalformedFrame(f"credit for channel {channel}, which this side does not send on")
                send_window.grant(number)
                append(CreditAvailable(channel, send_window.available))
            else:
                append(self._receive_message(channel, number, payload, now))

    def _receive_message(self, channel: int, code: int, payload: Any, now: float) -> Message:
        if code not in self._peer_codes and code != Code.EVENT:
            raise UnknownMessage(f"message code {code} may not be sent by the {self._peer_role()}")
        body = codec.decode_body(code, payload)
        if channel != codec.channel_for(code):
            raise MalformedFrame(f"message {code} on channel {channel}")
        if code in (Code.PING, Code.PONG):
            if self.peer_hello is not None:
                raise ProtocolError(f"a second handshake message {code}")
            if code == Code.PONG and not self._hello_sent:
                raise ProtocolError("PONG before PING")
            self._take_peer_hello(code, body)
        elif self.peer_hello is None and code != Code.REJECT:
            raise ProtocolError(f"message {code} before the handshake")
        if code in LIFECYCLE_CODES:
            self.lifecycle.handle(code, body, now)
        return Message(code, body)

    def _peer_role(self) -> str:
        return "host" if self.role is Role.RUNNER else "runner"

    def consumed(self, channel: int, n: int) -> None:
        """The application took ``n`` bytes of ``channel``; return credit to the peer when due."""
        window = self._recv.get(channel)
        if window is None:
            raise LocalProtocolError(f"the {self.role.value} does not receive on channel {channel}")
        credit = window.consume(n)
        if credit and channel not in self._ended_in:
            self._encoder.credit(channel, credit)

    # -- sending ---------------------------------------------------------------
    def send_message(self, code: int, body: Mapping[str, Any] | None = None, now: float = 0.0) -> None:
        if code in (Code.PING, Code.PONG, Code.REJECT):
            raise LocalProtocolError("use send_ping/accept/reject for the handshake")
        if code not in self._own_codes and code != Code.EVENT:
            raise LocalProtocolError(f"message code {code} may not be sent by the {self.role.value}")
        if not self.open:
            raise LocalProtocolError(f"cannot send message {code} while the connection is {self.state.value}")
        self._queue(code, dict(body) if body else {}, now)

    def _queue(self, code: int, body: dict[str, Any], now: float) -> None:
        raw = codec.encode_body(code, body)
        if code in LIFECYCLE_CODES:
            try:
                self.lifecycle.handle(code, body, now)
            except ProtocolError as err:
                raise LocalProtocolError(str(err)) from err
        self._encoder.message(codec.channel_for(code), code, raw)

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

    def send_end(self, channel: int) -> None:
        if channel not in self._send:
            raise LocalProtocolError(f"the {self.role.value} does not send on channel {channel}")
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

    def handle_timer(self, now: float) -> list[Event]:
        kind = self.lifecycle.expire(now)
        if kind is None:
            return []
        if self.role is Role.HOST and self.state in (State.STOPPING, State.STOPPED, State.COMPLETED):
            # The stop timeout passed without keepalive, or the runner did not exit in time.
            self._queue(Code.KILL, {}, now)
        return [DeadlineExpired(kind)]
