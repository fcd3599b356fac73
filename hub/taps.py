"""Fan-out of one Instance channel (output, stdout, stderr, log) to any number of HTTP readers.

host_bridge gives each channel one reader and returns flow-control credit only for
bytes that reader took. A Tap is that one reader; it hands every chunk to each
attached reader through a small bounded queue (``READER_QUEUE`` chunks of at most
1 MiB), waiting for the slowest one: readers share one pace, like a pipe, and a
reader that disconnects is dropped at once (its queue closes, the wait ends).

A Tap given ``ready`` (what its source holds ready to be taken without waiting:
host_bridge's ``buffered``) joins what is ready into one chunk of up to ``MAX_CHUNK``
before handing it on. Every chunk costs each reader the same hops (queue, response,
uvicorn's framing and one socket write) whatever its size, so under load a bulk output
of 64 KiB frames reaches readers in fewer, larger chunks; a trickle is never held back.

Two policies:

* ``pipe`` (output): nothing is read while nobody listens, so unread output pushes back
  on the Sequence through host_bridge's window. The first reader gets what waited; when
  the last reader leaves, the chunks it had not yet taken are kept for the next one.
* ``tail`` (stdout, stderr, log): always read, so a Sequence never waits on its
  diagnostics while nobody reads them; the last ``tail_bytes`` are kept and every new
  reader gets them first, then the live stream. While readers are attached they set
  the pace, as with ``pipe``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

READER_QUEUE = 4
DEFAULT_TAIL = 64 << 10
MAX_CHUNK = 1 << 20


class Tap:
    def __init__(self, name: str, source: AsyncIterator[bytes], *, pipe: bool, tail_bytes: int = DEFAULT_TAIL,
                 ready: Callable[[], int] | None = None) -> None:
        self.name = name
        self._source = source
        self._ready = ready
        self._pending: bytes | None = None  # taken while joining, too big to join: the next chunk's start
        self.pipe = pipe
        self._tail_bytes = tail_bytes
        self._kept: deque[bytes] = deque()  # tail (tail policy) or holdover (pipe policy)
        self._kept_size = 0
        self._readers: dict[MemoryObjectReceiveStream[bytes], MemoryObjectSendStream[bytes]] = {}
        self._has_readers = anyio.Event()
        self.ended = False
        self.bytes_read = 0
        self._scope = anyio.CancelScope()

    @property
    def readers(self) -> int:
        return len(self._readers)

    async def run(self) -> None:
        """Pump the source until it ends or ``close()`` (run as a task); then end every reader."""
        try:
            with self._scope:
                await self._pump()
        finally:
            self.ended = True
            for send in list(self._readers.values()):
                send.close()

    def close(self) -> None:
        """Stop pumping (the hub forgets the Instance): what nobody read is dropped."""
        self._scope.cancel()

    async def _pump(self) -> None:
        while True:
            if self.pipe and not self._readers:
                await self._has_readers.wait()
                continue
            try:
                chunk = await self._next()
            except StopAsyncIteration:
                return
            self.bytes_read += len(chunk)
            await self._deliver(chunk)

    async def _next(self) -> bytes:
        """The next chunk, joined with what is ready behind it (up to MAX_CHUNK); StopAsyncIteration at the end."""
        chunk, self._pending = self._pending, None
        if chunk is None:
            chunk = await self._source.__anext__()
        ready = self._ready
        if ready is None or not ready() or len(chunk) >= MAX_CHUNK:
            return chunk
        parts, size = [chunk], len(chunk)
        while ready():
            part = await self._source.__anext__()  # ready: returns without waiting
            if size + len(part) > MAX_CHUNK:
                self._pending = part
                break
            parts.append(part)
            size += len(part)
        return b"".join(parts) if len(parts) > 1 else chunk

    async def _deliver(self, chunk: bytes) -> None:
        if not self.pipe:
            self._keep(chunk, trim=True)
        if not self._readers:
            if self.pipe:
                self._keep(chunk, trim=False)
            return
        for receive, send in list(self._readers.items()):
            try:
                send.send_nowait(chunk)
            except anyio.WouldBlock:
                try:
                    await send.send(chunk)  # the slowest reader sets the pace
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._drop(receive)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(receive)
        if self.pipe and not self._readers:
            return  # every reader left during the sends; they returned what they had not taken

    def _keep(self, chunk: bytes, *, trim: bool) -> None:
        self._kept.append(chunk)
        self._kept_size += len(chunk)
        while trim and self._kept_size > self._tail_bytes and len(self._kept) > 1:
            self._kept_size -= len(self._kept.popleft())

    def _drop(self, receive: MemoryObjectReceiveStream[bytes]) -> None:
        send = self._readers.pop(receive, None)
        if send is None:
            return
        send.close()
        if not self._readers:
            self._has_readers = anyio.Event()

    async def stream(self) -> AsyncIterator[bytes]:
        """Attach a reader: what is kept for it first, then live chunks until the channel ends."""
        send, receive = anyio.create_memory_object_stream[bytes](READER_QUEUE)
        first = b"".join(self._kept)
        if self.pipe:
            self._kept.clear()
            self._kept_size = 0
        if not self.ended:
            self._readers[receive] = send
            self._has_readers.set()
        else:
            send.close()
        try:
            if first:
                yield first
            async for chunk in receive:
                yield chunk
        finally:
            self._leave(receive)

    def _leave(self, receive: MemoryObjectReceiveStream[bytes]) -> None:
        was_reader = receive in self._readers
        self._drop(receive)
        if self.pipe and was_reader and not self._readers:
            while True:  # the last reader's untaken chunks wait for the next one
                try:
                    self._keep(receive.receive_nowait(), trim=False)
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
        receive.close()
