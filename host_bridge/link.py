"""The I/O loop around one sans-IO ``Connection(Role.HOST)``, on a socket it owns.

``SocketStream`` is the connected non-blocking socket itself (no asyncio
transport, no anyio stream): reads are ``recv`` of up to 256 KiB, writes are
one ``sendmsg`` of every buffer the Connection queued (header runs and large
payloads as separate iovecs, never joined), and the task waits with
``anyio.wait_readable``/``wait_writable`` only when the socket would block, so
the same code runs on asyncio (with or without uvloop) and trio.

A ``Link`` runs one reader task that never stops reading (it decodes a whole
read and hands every event to the Instance synchronously before it yields, so
CONTROL and MONITORING are never stuck behind data), one writer task that only
finishes writes the kernel did not take at once, and one timer task that feeds
the Connection's lifecycle deadlines (stop timeout, exit grace) back into it.
``flush()`` writes what was queued right away when nothing is pending, so a
``write_input``, a ``send_event`` or returned credit costs one ``sendmsg`` and
no task switch.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from runner.protocol import NEED_DATA, Ping, ProtocolError, Role
from runner.protocol.connection import Connection, ConnectionEvent

from .options import InstanceOptions
from .splice import ConnectionCut, PipeSplice

READ_SIZE = 1 << 18
#: A payload with at least this much missing after a read is received into its own buffer.
RECV_INTO_MIN = 1 << 16
#: The read after a spliced frame: the next frame's header alone (a DATA header is 7 bytes), so a
#: spliced frame's payload is never read into this process at all (nor a buffer allocated for it).
SPLICE_READ_SIZE = 7
try:
    IOV_MAX = min(int(os.sysconf("SC_IOV_MAX")), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - not on Linux/macOS
    IOV_MAX = 16
if IOV_MAX <= 0:  # pragma: no cover
    IOV_MAX = 16

# anyio >= 4.7 names; the older socket-only spellings are deprecated there.
wait_readable: Callable[[socket.socket], Any] = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
wait_writable: Callable[[socket.socket], Any] = getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable
notify_closing: Callable[[socket.socket], None] | None = getattr(anyio, "notify_closing", None)

_WOULD_BLOCK = (BlockingIOError, InterruptedError)

#: SO_SNDBUF of every unix-socket connection between the bridge and a runner, both ends: the
#: bridge's (a socketpair end or a connection accepted from a unix listener, set here) and the
#: runner's (set by bridge._socketpair, or by the runner itself when it connects:
#: runner/transport/native.py). The system default is ~208 KiB; with 1 MiB each side can write
#: ahead further, so both wake less often per byte (bulk +15% here; a container runner on the hub's
#: unix listener was 0.86x a spawned one without it, docs/deploy.md). On a unix stream socket only
#: the sender's buffer bounds what is in flight, so both ends need it; kernel memory is only used
#: while a side does not read, and both sides always read. TCP keeps the kernel's autotuning.
SOCKET_BUFFER: int | None = 1 << 20


def widen_send_buffer(sock: socket.socket) -> None:
    """SO_SNDBUF = SOCKET_BUFFER on a unix socket (the kernel caps it at net.core.wmem_max)."""
    if SOCKET_BUFFER and sock.family == socket.AF_UNIX:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        except OSError:  # pragma: no cover - a system that refuses it keeps its default
            pass


def _views(buffers: list[Any]) -> list[Any]:
    """Buffers as byte-sized items (len() == bytes), empty ones dropped."""
    out = []
    for buf in buffers:
        if type(buf) is not bytes:
            buf = memoryview(buf).cast("B")
        if len(buf):
            out.append(buf)
    return out


class SocketStream:
    """A connected stream socket (socketpair end, unix or TCP) in non-blocking mode, owned by one Link."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        widen_send_buffer(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        self.sock = sock
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        """The next bytes; b"" at end of file. Raises OSError / anyio.ClosedResourceError."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self.closed:
                raise anyio.ClosedResourceError
            try:
                return self.sock.recv(max_bytes)
            except _WOULD_BLOCK:
                await wait_readable(self.sock)

    def send_nowait(self, views: list[Any]) -> list[Any]:
        """sendmsg ``views`` (from ``_views``) until done or the socket would block; return what is left."""
        sock = self.sock
        first = 0
        count = len(views)
        while first < count:
            try:
                sent = sock.sendmsg(views if not first and count <= IOV_MAX else views[first : first + IOV_MAX])
            except _WOULD_BLOCK:
                break
            while sent:
                head = views[first]
                size = len(head)
                if sent >= size:
                    sent -= size
                    first += 1
                else:
                    views[first] = memoryview(head)[sent:]
                    sent = 0
        return views[first:] if first else views

    async def send_all(self, buffers: list[Any]) -> None:
        """Write every buffer, waiting for the socket when it is full."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        views = _views(buffers)
        while views:
            if self.closed:
                raise anyio.ClosedResourceError
            views = self.send_nowait(views)
            if views:
                await wait_writable(self.sock)

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if notify_closing is not None:
            try:
                notify_closing(self.sock)  # wakes any task waiting on it with ClosedResourceError
            except Exception:  # noqa: BLE001, S110 - nothing waits, or the loop is gone
                pass
        self.sock.close()


def host_connection(options: InstanceOptions) -> Connection:
    """A fresh host-side Connection with the Instance's window, frame size and exit grace."""
    return Connection(
        Role.HOST, max_frame_size=options.max_frame_size, window=options.window, exit_grace=options.exit_grace
    )


class HandshakeFailed(Exception):
    """The runner closed or broke the connection before its PING."""


def drain(conn: Connection) -> list[ConnectionEvent]:
    """Every event the Connection has ready; ProtocolError (the peer's) only after the ones before it."""
    events: list[ConnectionEvent] = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
    return events


async def read_ping(stream: SocketStream, conn: Connection) -> Ping:
    """Read until the runner's PING and return it. Raises ProtocolError / HandshakeFailed."""
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            data = b""
        conn.receive_data(data, anyio.current_time())
        for event in drain(conn):
            if isinstance(event, Ping):
                return event
        if not data:
            raise HandshakeFailed("the runner closed the connection before sending PING")


class Link:
    """Runs reader, writer and timer for one connection until the reader is done."""

    def __init__(
        self,
        stream: SocketStream,
        conn: Connection,
        on_events: Callable[[list[ConnectionEvent]], None],
        on_failure: Callable[[str, bool], None],
    ) -> None:
        self.stream = stream
        self.conn = conn
        self._on_events = on_events
        self._on_failure = on_failure  # (text, is_protocol_error)
        #: Buffers taken from the Connection that the kernel has not taken yet (the writer's).
        self._pending: list[Any] = []
        self._want_write = anyio.Event()
        self._drained = anyio.Event()  # set by the writer whenever it has nothing left to write
        self._activity = anyio.Event()
        self._timer_deadline: float | None = None
        self.read_done = anyio.Event()
        self.write_broken = False
        self._closing = False
        self._cancel: anyio.CancelScope | None = None
        #: Where the reader splices a channel's frames (``Instance.splice_output``), if anywhere.
        self.splice: PipeSplice | None = None
        #: A payload is being written by ``send_file``: nothing else may be written meanwhile.
        self._passthrough = False
        self._passthrough_done = anyio.Event()

    def flush(self) -> None:
        """Write what the Connection queued (as far as the socket takes it now) and wake the timer
        if a deadline changed. What the kernel does not take, the writer task finishes, in order."""
        if self.conn.bytes_to_send and not self.write_broken:
            if self._pending or self._passthrough:
                self._want_write.set()  # the writer is waiting for the socket; it takes the rest after
            else:
                self._write_now(self.conn.data_to_send())
        if self.conn.next_deadline() != self._timer_deadline:
            self._activity.set()

    def _write_now(self, buffers: list[Any]) -> None:
        if self.stream.closed:  # the link is over: nothing more can be written or reported
            self.write_broken = True
            return
        try:
            rest = self.stream.send_nowait(_views(buffers))
        except OSError as exc:
            self._broken(repr(exc))
            return
        if rest:
            self._pending = rest
            self._want_write.set()

    def _broken(self, why: str) -> None:
        # Never retried: a half-written frame cannot be continued.
        self.write_broken = True
        self._pending = []
        self.conn.data_to_send()  # drop what can no longer be written
        self._drained.set()
        if not self._closing:
            self._on_failure(f"connection broken while writing: {why}", False)

    async def run(self, close_grace: float = 1.0) -> None:
        """Serve until the reader ends, then write what is queued (bounded) and close."""
        try:
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                tg.start_soon(self._writer)
                tg.start_soon(self._timer)
                self.flush()  # what was queued before the loop ran (PONG)
                await self._reader()
                self._closing = True
                self.flush()
                with anyio.move_on_after(close_grace):
                    await self._writer_idle()
                tg.cancel_scope.cancel()
        finally:
            self._closing = True
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    def abort(self) -> None:
        """Stop serving now (the process is gone or the Instance is torn down)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def _writer_idle(self) -> None:
        while (self._pending or self.conn.bytes_to_send) and not self.write_broken:
            drained = self._drained = anyio.Event()
            self._want_write.set()
            await drained.wait()

    async def _reader(self) -> None:
        conn = self.conn
        sock = self.stream.sock
        on_events = self._on_events
        small = False  # frame by frame: the last frame was spliced, and the next one likely is
        try:
            while True:
                try:
                    got = self._receive(sock, small)
                except _WOULD_BLOCK:
                    await wait_readable(sock)
                    continue
                except OSError as exc:
                    self._on_failure(f"connection broken while reading: {exc!r}", False)
                    return
                events = []
                try:
                    while (event := conn.next_event()) is not NEED_DATA:
                        events.append(event)
                except ProtocolError as err:
                    if events:
                        on_events(events)  # what came before the bad frame is acted on
                    self._on_failure(f"protocol error from the runner: {type(err).__name__}: {err}", True)
                    return
                if events:
                    on_events(events)
                    self.flush()
                if not got:
                    return
                splice = self.splice
                if splice is not None and splice.ready():
                    detached = conn.detach_data(splice.channel)
                    if detached is not None:
                        try:
                            small = await splice.take(sock, *detached)
                        except ConnectionCut as exc:
                            self._on_failure(str(exc), False)
                            return
                        continue
                else:
                    small = False
                if small:
                    continue  # the next header now (a read that would block waits above)
                if got < READ_SIZE:
                    await wait_readable(sock)  # most likely drained: sleep until more comes
                else:
                    await anyio.lowlevel.checkpoint()  # more is waiting; let others run first
        except anyio.ClosedResourceError:
            return
        finally:
            self.read_done.set()

    def _receive(self, sock: socket.socket, small: bool) -> int:
        """One read into the Connection; the bytes read (0 at end of file). The rest of a large
        payload cut by the last read goes straight into its own buffer (``recv_into``: no copy
        out of a 256 KiB read); ``small`` reads one frame at a time (a DATA header, then its
        payload), so a payload to splice is never read into this process at all."""
        conn = self.conn
        view = conn.pending_view(1 if small else RECV_INTO_MIN)
        if view is not None:
            with view:
                got = sock.recv_into(view)
            conn.received_into(got, anyio.current_time())
            return got
        data = sock.recv(SPLICE_READ_SIZE if small else READ_SIZE)
        conn.receive_data(data, anyio.current_time())
        return len(data)

    async def _writer(self) -> None:
        sock = self.stream.sock
        while True:
            if not self._pending:
                if self._passthrough:
                    self._drained.set()
                    await self._passthrough_done.wait()
                    continue
                if self.write_broken or not self.conn.bytes_to_send:
                    self._drained.set()
                    await self._want_write.wait()
                    self._want_write = anyio.Event()
                    continue
                self._write_now(self.conn.data_to_send())
                continue
            try:
                await wait_writable(sock)
            except anyio.ClosedResourceError:
                self._broken("the connection is closed")
                continue
            try:
                self._pending = self.stream.send_nowait(self._pending)
            except OSError as exc:
                self._broken(repr(exc))

    async def send_file(self, channel: int, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of the file ``fd`` from ``offset`` as one DATA frame on ``channel``:
        what the Connection queued is written first, then the frame's header, then its payload
        with ``os.sendfile`` (the bytes never enter this process). Nothing else is written until
        the payload is done; what is queued meanwhile follows it. ``count`` must fit the credit
        (``Connection.send_data_header``). Raises LocalProtocolError (nothing written), OSError or
        anyio.ClosedResourceError: the link is broken then (a frame cut short cannot be continued;
        a file that ends early cuts one short)."""
        if self.write_broken or self.stream.closed:
            raise anyio.ClosedResourceError
        self._passthrough = True
        framed = False  # the header is queued: from here on, failing breaks the link
        try:
            while self._pending:  # the writer task is finishing earlier writes
                drained = self._drained = anyio.Event()
                self._want_write.set()
                await drained.wait()
            if self.write_broken:
                raise anyio.ClosedResourceError
            # The header goes last, right before its payload: nothing queued while we waited
            # (credit, an event) may come between them.
            self.conn.send_data_header(channel, count)
            framed = True
            await self.stream.send_all(self.conn.data_to_send())
            await self._sendfile(fd, offset, count)
        except BaseException as exc:
            if framed and not self.write_broken:  # cancelled or failed inside a frame
                self._broken(f"while sending a file: {exc!r}")
            raise
        finally:
            self._passthrough = False
            done, self._passthrough_done = self._passthrough_done, anyio.Event()
            done.set()
            self.flush()

    async def _sendfile(self, fd: int, offset: int, count: int) -> None:
        sock = self.stream.sock
        while count:
            try:
                sent = os.sendfile(sock.fileno(), fd, offset, count)
            except _WOULD_BLOCK:
                await wait_writable(sock)
                continue
            if not sent:
                raise OSError(f"the file ended {count} bytes before the frame it was sent in")
            offset += sent
            count -= sent

    async def _timer(self) -> None:
        conn = self.conn
        while True:
            if self._activity.is_set():
                self._activity = anyio.Event()
            deadline = self._timer_deadline = conn.next_deadline()
            if deadline is None:
                await self._activity.wait()
                continue
            delay = deadline - anyio.current_time()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._activity.wait()
            conn.handle_timer(anyio.current_time())
            events = drain(conn)
            if events:
                self._on_events(events)
                self.flush()
