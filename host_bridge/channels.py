"""Per-channel buffers between the connection's reader task and the application.

A ByteChannel holds what the runner sent on one data channel until the
application reads it, and returns flow-control credit only for bytes the
application took. Its size is therefore bounded by the window the host grants
(docs/protocol.md §6): an unread channel stops only that channel's sender and
never blocks the reader, the other channels or other Instances.

Events (not flow-controlled) are kept by the EventHub in events.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

#: Largest chunk handed to the application at once when several small ones are buffered.
MAX_JOIN = 1 << 20
#: Buffered chunks at least this large are handed over one by one, never joined.
JOIN_BELOW = 1 << 16


def _as_bytes(chunk: Any) -> bytes:
    """``chunk`` as bytes: as it is, the whole ``bytes`` a view spans, else one copy."""
    if type(chunk) is bytes:
        return chunk
    obj = chunk.obj if isinstance(chunk, memoryview) else None
    if type(obj) is bytes and len(obj) == len(chunk):
        return obj
    return bytes(chunk)


def keepable(payload: Any) -> Any:
    """A DATA payload in a form that may be kept: bytes as they are, a view of an immutable
    ``bytes`` (the reader's recv buffer) when it spans at least a quarter of it (so an unread
    channel pins at most 4x its window), otherwise a copy."""
    if type(payload) is bytes:
        return payload
    if isinstance(payload, memoryview):
        obj = payload.obj
        if type(obj) is bytes and len(payload) * 4 >= len(obj):
            return payload
    return bytes(payload)


class ByteChannel:
    """Bytes from one data channel, read by the application through ``receive()``."""

    def __init__(self, channel: int, on_consumed: Callable[[int, int], None]) -> None:
        self.channel = channel
        self._on_consumed = on_consumed
        self._chunks: deque[Any] = deque()  # bytes, or memoryviews of immutable bytes (keepable())
        self.buffered = 0
        self.ended = False
        self.discarding = False
        self._wakeup = anyio.Event()

    def feed(self, data: Any) -> None:
        """Buffer ``data`` (bytes, or a view of immutable bytes: see ``keepable``)."""
        n = len(data)
        if not n:
            return
        if self.discarding:
            self._on_consumed(self.channel, n)
            return
        self._chunks.append(data)
        self.buffered += n
        wakeup = self._wakeup
        if not wakeup.is_set():
            wakeup.set()

    def end(self) -> None:
        self.ended = True
        self._wakeup.set()

    def discard(self) -> None:
        """Drop buffered and future bytes, returning their credit (for channels nobody reads)."""
        self.discarding = True
        dropped, self.buffered = self.buffered, 0
        self._chunks.clear()
        if dropped:
            self._on_consumed(self.channel, dropped)

    def receive_nowait(self) -> bytes | None:
        """Buffered bytes, b"" if none yet, None at end of stream.

        A large chunk comes alone (as the bytes it arrived in when it fills them, else one
        copy); runs of small chunks are joined, up to MAX_JOIN."""
        chunks = self._chunks
        if not chunks:
            return None if self.ended else b""
        first = chunks[0]
        if len(chunks) == 1 or len(first) >= JOIN_BELOW or len(chunks[1]) >= JOIN_BELOW:
            data = _as_bytes(chunks.popleft())
        else:
            parts = []
            size = 0
            while chunks and len(chunks[0]) < JOIN_BELOW and size + len(chunks[0]) <= MAX_JOIN:
                part = chunks.popleft()
                parts.append(part)
                size += len(part)
            data = b"".join(parts)
        self.buffered -= len(data)
        self._on_consumed(self.channel, len(data))
        return data

    async def receive(self) -> bytes | None:
        """The next bytes, waiting for them; None once the stream ended and is drained."""
        while True:
            data = self.receive_nowait()
            if data != b"":
                return data
            if self._wakeup.is_set():
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (data := await self.receive()) is not None:
            yield data
