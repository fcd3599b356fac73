"""The I/O loop around one sans-IO ``Connection(Role.HOST)``.

One reader task that never stops reading (it hands events to the Instance
synchronously, so CONTROL and MONITORING are never stuck behind data), one
writer task that owns the sending side and coalesces everything queued into
as few ``send`` calls as possible, and one timer task that feeds the
Connection's lifecycle deadlines (stop timeout, exit grace) back into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from runner.protocol import Code, Connection, ProtocolError
from runner.protocol.connection import Event, Message

READ_SIZE = 1 << 18
#: Payloads at least this large are sent as their own buffer instead of being copied.
JOIN_LIMIT = 1 << 16


class HandshakeFailed(Exception):
    """The runner closed or broke the connection before its PING."""


async def read_ping(stream: anyio.abc.ByteStream, conn: Connection) -> dict[str, Any]:
    """Read until the runner's PING; return its body. Raises ProtocolError / HandshakeFailed."""
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            data = b""
        events = conn.receive_data(data, anyio.current_time())
        for event in events:
            if isinstance(event, Message) and event.code == Code.PING:
                return event.body
        if not data:
            raise HandshakeFailed("the runner closed the connection before sending PING")


async def send_buffers(stream: anyio.abc.ByteStream, buffers: list[Any]) -> None:
    """Write buffers in order: runs of small ones joined into one send, large ones alone."""
    pending: list[Any] = []
    size = 0
    for buf in buffers:
        n = len(buf)
        if n >= JOIN_LIMIT:
            if pending:
                await stream.send(b"".join(pending))
                pending, size = [], 0
            await stream.send(buf)
        else:
            pending.append(buf)
            size += n
            if size >= JOIN_LIMIT:
                await stream.send(b"".join(pending))
                pending, size = [], 0
    if pending:
        await stream.send(b"".join(pending) if len(pending) > 1 else pending[0])


class Link:
    """Runs reader, writer and timer for one connection until the reader is done."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        conn: Connection,
        on_events: Callable[[list[Event]], None],
        on_failure: Callable[[str, bool], None],
    ) -> None:
        self.stream = stream
        self.conn = conn
        self._on_events = on_events
        self._on_failure = on_failure  # (text, is_protocol_error)
        self._want_write = anyio.Event()
        self._activity = anyio.Event()
        self.read_done = anyio.Event()
        self.write_broken = False
        self._closing = False
        self._sending = False
        self._cancel: anyio.CancelScope | None = None

    def flush(self) -> None:
        """Wake the writer (something was queued) and the timer (a deadline may have changed)."""
        self._want_write.set()
        self._activity.set()

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
                self._want_write.set()
                with anyio.move_on_after(close_grace):
                    await self._writer_idle()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(close_grace):
                await self.stream.aclose()

    def abort(self) -> None:
        """Stop serving now (the process is gone or the Instance is torn down)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def _writer_idle(self) -> None:
        while (self._sending or self.conn.bytes_to_send) and not self.write_broken:
            await anyio.sleep(0.005)

    async def _reader(self) -> None:
        conn = self.conn
        try:
            while True:
                try:
                    data = await self.stream.receive(READ_SIZE)
                except anyio.EndOfStream:
                    data = b""
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    self._on_failure(f"connection broken while reading: {exc!r}", False)
                    return
                try:
                    events = conn.receive_data(data, anyio.current_time())
                except ProtocolError as err:
                    earlier = [e for e in err.frames if not isinstance(e, tuple)]
                    if earlier:
                        self._on_events(earlier)
                    self._on_failure(f"protocol error from the runner: {type(err).__name__}: {err}", True)
                    return
                if events:
                    self._on_events(events)
                    self.flush()
                if not data:
                    return
        finally:
            self.read_done.set()

    async def _writer(self) -> None:
        while True:
            await self._want_write.wait()
            self._want_write = anyio.Event()
            buffers = self.conn.data_to_send()
            if not buffers or self.write_broken:
                continue
            self._sending = True
            try:
                await send_buffers(self.stream, buffers)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                # Never retried: a half-written frame cannot be continued.
                self.write_broken = True
                if not self._closing:
                    self._on_failure(f"connection broken while writing: {exc!r}", False)
            finally:
                self._sending = False

    async def _timer(self) -> None:
        conn = self.conn
        while True:
            if self._activity.is_set():
                self._activity = anyio.Event()
            deadline = conn.next_deadline()
            if deadline is None:
                await self._activity.wait()
                continue
            delay = deadline - anyio.current_time()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._activity.wait()
            events = conn.handle_timer(anyio.current_time())
            if events:
                self._on_events(events)
                self._want_write.set()
