"""Protocol v1 over one stream socket: a reader thread and a writer thread around the sans-IO Connection.

Why threads and not asyncio streams: the Sequence owns the event loop and may
block it (a busy loop, a long C call). The reader thread keeps reading while it
does, so KILL, STOP deadlines and credit are handled anyway; it hands input to
the loop in batches (one hop per read, never per item). The writer thread
takes everything the Connection has queued and writes it with one ``sendmsg``
(small frames coalesced, big payloads as their own buffers), so data writers
on any thread only ever touch memory. The exceptions are a message, or up to
256 KiB of data, queued while the writer is idle and nothing else is pending:
the queueing thread writes it at once with a non-blocking ``sendmsg`` under the
lock (an EVENT reply does not wait for the writer thread to be scheduled; bulk
output in 64 KiB chunks does not wake it per chunk: ~12% less runner CPU), and
hands whatever the socket did not take to the writer, which sends it before
anything queued later. Larger output (1 MiB chunks) still goes through the
writer thread, so the Sequence's loop does not spend its time copying it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from ..protocol import (
    NEED_DATA,
    CreditAvailable,
    Data,
    EndOfStream,
    Ping,
    Pong,
    ProtocolError,
    Reject,
    Role,
)
from ..protocol.connection import Connection
from ..protocol.constants import RUNNER_TO_HOST
from ..protocol.events import Message
from ..protocol.framer import IMPLEMENTATION
from .base import ChannelWriter, HandshakeFailed, Transport, TransportHandler

RECV_SIZE = 256 * 1024
#: A payload with at least this much missing after a read is received into its own buffer.
RECV_INTO_MIN = 64 * 1024
#: The read after such a payload: small, so most of the next large payload goes the same way.
RECV_AFTER_PAYLOAD = 16 * 1024
IOV_MAX = 512
#: In ``flush``, past its timeout: the host still counts as taking output (reading) if credit
#: came within this many seconds. A steadily reading host on a loaded machine grants credit in
#: gaps of a few hundred ms (its threads wait for a core), and at 0.1 s it lost the rest of the
#: output on KILL. Credit that came before the exit began never extends it (no longer than the
#: exit budget), and SENDABLE_GRACE still caps the whole wait.
PROGRESS_STALL = 0.5
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
#: ``send`` writes a message from the calling thread when at most this much is queued (else the
#: writer thread does: a Sequence's thread should not spend its time copying bulk output).
DIRECT_SEND_MAX = 64 * 1024
#: Output queued on a data channel while the writer thread is idle goes out from the queueing
#: thread (the Sequence's loop, mostly) when at most this much is queued: one non-blocking
#: sendmsg instead of waking the writer thread for every chunk; what the socket does not take
#: is carried over to the writer, in order.
DIRECT_DATA_MAX = 256 * 1024


#: SO_SNDBUF of the runner's end when it connects to a unix socket (a hub's listener, e.g. from a
#: container): the same 1 MiB host_bridge gives both ends of a spawned runner's socketpair
#: (host_bridge/link.py SOCKET_BUFFER). On a unix stream socket the sender's buffer alone bounds
#: what is in flight, so with the ~208 KiB default the runner's output wakes both sides more often
#: per byte (docker-mode bulk through the hub: 0.86x process mode without it, docs/deploy.md).
UNIX_SEND_BUFFER = 1 << 20


def connect(target: tuple[str, str, int], timeout: float) -> socket.socket:
    """A connected socket for ("unix", path, 0) or ("tcp", host, port)."""
    kind, where, port = target
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SEND_BUFFER)
        except OSError:  # pragma: no cover - a system that refuses it keeps its default
            pass
        sock.settimeout(timeout)
        sock.connect(where)
    else:
        sock = socket.create_connection((where, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


def from_fd(fd: int) -> socket.socket:
    """The inherited connected socket; kept from leaking into the Sequence's child processes."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(sock.fileno(), False)
    sock.settimeout(None)
    return sock


class NativeTransport(Transport):
    impl = IMPLEMENTATION

    def __init__(self, sock: socket.socket, *, sent_ping: bytes | None = None, **connection_options: Any) -> None:
        self._sock = sock
        #: The PING frame runner.hello already wrote on this socket (handshake checks it).
        self._sent_ping = sent_ping
        self._conn = Connection(Role.RUNNER, **connection_options)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer thread waits here
        self._drained = threading.Condition(self._lock)  # flush() waits here
        self._writers = {int(ch): self._channel_writer(int(ch)) for ch in RUNNER_TO_HOST}
        self._handler: TransportHandler | None = None
        self._writing = False
        self._closing = False
        self._broken = False
        self._closed_reported = False
        self._progress_at = 0.0  # when credit last came
        #: Bytes a direct send (``_send_now``) could not write: the writer sends them first.
        self._carry: list[Any] = []
        #: Made by ``start``, started by ``_wake_writer`` when there is first something to write.
        self._writer: threading.Thread | None = None

    def _channel_writer(self, channel: int) -> ChannelWriter:
        def sink(data: Any) -> int:
            if self._broken:
                return len(data)
            conn = self._conn
            taken = conn.send_data(channel, data)
            if taken:
                if (self._writing or self._carry or not _DONTWAIT
                        or conn.bytes_to_send > DIRECT_DATA_MAX):
                    self._wake_writer()
                else:
                    self._send_now()
            return taken

        def end() -> None:
            if not self._broken:
                self._conn.send_end(channel)
                self._wake_writer()

        return ChannelWriter(self._lock, sink, end)

    # -- handshake, in the main thread before the loop exists ------------------------
    def handshake(self, hello: Ping, timeout: float) -> Pong:
        deadline = time.monotonic() + timeout
        conn = self._conn
        try:
            conn.send(hello)
            frame = b"".join(bytes(buf) for buf in conn.data_to_send())
            sent, self._sent_ping = self._sent_ping, None  # it carries the token: not kept
            if sent is None:
                self._sock.sendall(frame)
            elif frame != sent:
                raise HandshakeFailed("the PING written at start-up (runner/hello.py) is not the one the "
                                      "Connection builds from the same values: a runner bug")
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HandshakeFailed(f"no PONG from the host within {timeout:g} s")
                self._sock.settimeout(left)
                data = self._sock.recv(RECV_SIZE)
                if not data:
                    raise HandshakeFailed("the host closed the connection during the handshake")
                conn.receive_data(data, time.monotonic())
                while (event := conn.next_event()) is not NEED_DATA:
                    match event:
                        case Reject(reason=reason):
                            raise HandshakeFailed(f"the host rejected the runner: {reason}")
                        case Pong():
                            return event  # what came with it stays queued for the reader
        except TimeoutError:
            raise HandshakeFailed(f"no PONG from the host within {timeout:g} s") from None
        except ProtocolError as err:
            raise HandshakeFailed(f"handshake failed: {err}") from None
        except OSError as err:
            raise HandshakeFailed(f"connection failed during the handshake: {err}") from None
        finally:
            self._sock.settimeout(None)

    # -- threads -------------------------------------------------------------------
    def start(self, handler: TransportHandler) -> None:
        self._handler = handler
        reader = threading.Thread(target=self._read_loop, name="runner-reader", daemon=True)
        with self._lock:
            self._writer = threading.Thread(target=self._write_loop, name="runner-writer", daemon=True)
            if self._conn.bytes_to_send or self._carry:
                self._wake_writer()
        from ..thread_start import start_soon

        start_soon(reader)  # the main thread goes on loading meanwhile

    def _wake_writer(self) -> None:
        """Lock held: the writer thread has something to send; started the first time it has.

        Until then every write went out directly (``_send_now``), and that is all most runners
        write before their first PANG (a LOG record and the PANG itself): a writer thread started
        with the reader cost every cold start ~0.25 ms of CPU before it (one thread's start-up,
        measured side by side: runner CPU from ``runner.app``'s import to PANG)."""
        writer = self._writer
        if writer is not None and writer.ident is None:
            writer.start()  # returns once the thread runs; it then waits for this lock
        self._wake.notify()

    def _read_loop(self) -> None:
        ident = threading.get_ident()
        for channel_writer in self._writers.values():
            channel_writer.never_block.add(ident)
        error: BaseException | None = self._dispatch()  # what came with PONG
        recv, recv_into, conn, lock = self._sock.recv, self._sock.recv_into, self._conn, self._lock
        size = RECV_SIZE
        while error is None:
            # A large payload cut by the last read is read straight into its own buffer (no
            # 256 KiB read to copy it from); only this thread feeds the decoder, so looking
            # needs no lock.
            view = conn.pending_view(RECV_INTO_MIN)
            try:
                if view is not None:
                    with view:
                        got = recv_into(view)
                    with lock:
                        conn.received_into(got, time.monotonic())
                    size = RECV_AFTER_PAYLOAD  # the next frame's header and the start of its payload
                else:
                    data = recv(size)
                    got = len(data)
                    with lock:
                        conn.receive_data(data, time.monotonic())
                    size = RECV_SIZE
            except OSError as err:
                error = err
                break
            error = self._dispatch()
            if not got:
                break
        self._report_closed(error)

    def _dispatch(self) -> ProtocolError | None:
        """Hand every ready event to the core (bytes in one batch per channel run); return the
        peer's protocol error if one came after them."""
        handler = self._handler
        assert handler is not None
        next_event = self._conn.next_event
        batch: list[bytes] = []
        batch_channel = -1
        while True:
            try:
                event = next_event()
            except ProtocolError as err:
                if batch:
                    handler.on_data(batch_channel, batch)
                return err
            if type(event) is Data:
                if event.channel != batch_channel and batch:
                    handler.on_data(batch_channel, batch)
                    batch = []
                batch_channel = event.channel
                batch.append(_keepable(event.payload))
                continue
            if batch:
                handler.on_data(batch_channel, batch)
                batch = []
            if event is NEED_DATA:
                return None
            if type(event) is CreditAvailable:
                with self._lock:
                    self._progress_at = time.monotonic()
                    self._writers[event.channel].pump()
            elif type(event) is EndOfStream:
                handler.on_end(event.channel)
            elif isinstance(event, Message):
                try:
                    handler.on_message(event)
                except Exception as exc:  # noqa: BLE001 - a bug in a handler must not end control
                    _report_bug(exc)

    def _write_loop(self) -> None:
        conn, lock, sock = self._conn, self._lock, self._sock
        while True:
            with lock:
                while not (conn.bytes_to_send or self._carry) and not self._closing:
                    self._writing = False
                    self._drained.notify_all()
                    self._wake.wait()
                if not (conn.bytes_to_send or self._carry):
                    self._writing = False
                    self._drained.notify_all()
                    return
                buffers = conn.data_to_send()
                if self._carry:
                    buffers[:0] = self._carry
                    self._carry = []
                self._writing = True
            try:
                _send_all(sock, buffers)
            except OSError as err:
                self._mark_broken()
                self._report_closed(err)
                return

    def _mark_broken(self) -> None:
        with self._lock:
            self._broken = True
            self._writing = False
            self._conn.data_to_send()
            self._carry = []
            for channel_writer in self._writers.values():
                channel_writer.fail()
            self._drained.notify_all()
            self._wake.notify_all()

    def _report_closed(self, error: BaseException | None) -> None:
        with self._lock:
            if self._closed_reported:
                return
            self._closed_reported = True
        if self._handler is not None:
            self._handler.on_closed(error)

    # -- sending ---------------------------------------------------------------------
    def send(self, message: Message) -> bool:
        with self._lock:
            if self._broken or self._closing:
                return False
            conn = self._conn
            if not conn.can_send(type(message)):
                return False  # the connection is over, or it crossed with the host's (ALIVE after KILL)
            conn.send(message, time.monotonic())
            if self._writing or self._carry or not _DONTWAIT or conn.bytes_to_send > DIRECT_SEND_MAX:
                self._wake_writer()  # the writer is busy (or bulk is queued): it sends this after
            else:
                self._send_now()
            return True

    def _send_now(self) -> None:
        """Lock held, the writer idle and nothing carried: write what is queued from this thread.

        A reply (an EVENT from a handler, MONITORING) would otherwise wait for the writer
        thread to be scheduled, one more thread hand-over on its way out. The send never
        blocks: what the socket does not take now (or an error) is carried over to the
        writer, which sends it before anything queued later, so order is kept.
        """
        buffers = self._conn.data_to_send()
        try:
            sent = self._sock.sendmsg(buffers[:IOV_MAX], (), _DONTWAIT)
        except OSError:  # BlockingIOError, or a broken socket: the writer finds out and reports
            sent = 0
        for buf in buffers:
            size = len(buf)
            if sent >= size:
                sent -= size
                continue
            self._carry.append(memoryview(buf).cast("B")[sent:] if sent else buf)
            sent = 0
        if self._carry:
            self._wake_writer()

    def writer(self, channel: int) -> ChannelWriter:
        return self._writers[int(channel)]

    def consumed(self, channel: int, n: int) -> None:
        with self._lock:
            if not self._broken:
                self._conn.consumed(channel, n)
                if self._conn.bytes_to_send:
                    self._wake_writer()

    def flush(self, timeout: float, grace: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        hard_deadline = deadline + max(0.0, grace)
        with self._lock:
            while not self._broken:
                now = time.monotonic()
                # Sendable: frames the Connection holds (within credit), a write in progress, or
                # a host that is still granting credit (reading) as it goes.
                sendable = (self._writing or self._conn.bytes_to_send or self._carry
                            or now - self._progress_at < PROGRESS_STALL)
                if not (self._writing or self._conn.bytes_to_send or self._carry) and all(
                        w.drained for w in self._writers.values()):
                    return True
                left = (hard_deadline if sendable else deadline) - now
                if left <= 0:
                    return False  # the rest waits for credit the host withholds
                self._drained.wait(min(left, 0.05))
            return False

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    @property
    def broken(self) -> bool:
        return self._broken


def _report_bug(exc: BaseException) -> None:
    import traceback

    from ..stdio import diagnose

    diagnose("runner: error while handling a message from the host:\n"
             + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _keepable(payload: Any) -> bytes:
    """A DATA payload as ``bytes`` the consumers may keep, copied only when it must be.

    The decoder's payloads are memoryviews: of the immutable ``bytes`` that ``recv`` returned,
    or, for a frame cut by a read, of a ``bytes`` holding just that payload, which is handed on
    as it is (no copy). Slices of a receive buffer are copied here, on the reader thread, right
    after ``recv`` while they are still in this core's cache: handing the views on and copying
    on the loop thread instead (octet-stream input must reach the Sequence as ``bytes``) measured
    slower for bulk input (0.30-0.41x of the raw echo against 0.42-0.47x, 3 rounds side by side).
    """
    if type(payload) is memoryview:
        obj = payload.obj
        if type(obj) is bytes and len(payload) == len(obj):
            return obj
        return bytes(payload)
    if type(payload) is bytes:
        return payload
    return bytes(payload)


def _send_all(sock: socket.socket, buffers: list[Any]) -> None:
    """sendmsg every buffer, resuming after partial writes."""
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first:first + IOV_MAX])
        while sent:
            head = views[first]
            if sent >= len(head):
                sent -= len(head)
                first += 1
            else:
                views[first] = head[sent:]
                sent = 0
