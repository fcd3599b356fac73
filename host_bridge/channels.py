"""Per-channel buffers between the connection's reader task and the application.

A ByteChannel holds what the runner sent on one data channel until the
application reads it, and returns flow-control credit only for bytes the
application took. Its size is therefore bounded by the window the host grants
(docs/protocol.md §6): an unread channel stops only that channel's sender and
never blocks the reader, the other channels or other Instances.

The EventHub keeps the last message per event name and fans events out to
subscribers; message channels are not flow-controlled, so each subscriber has
a bounded queue that drops its oldest entries when a subscriber falls behind.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

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


@dataclass(frozen=True)
class EventMessage:
    """An EVENT from the runner: ``name``, ``message`` (None when absent) and ``source``."""

    name: str
    message: Any
    source: str | None = None


class EventSubscription:
    """Events published after it was created (optionally only those named ``name``).

    Async-iterate it; iteration ends when the Instance's connection ends.
    """

    def __init__(self, hub: EventHub, name: str | None, maxlen: int) -> None:
        self._hub = hub
        self.name = name
        self.queue: deque[EventMessage] = deque(maxlen=maxlen)
        self.dropped = 0
        self._wakeup = anyio.Event()

    def _push(self, event: EventMessage) -> None:
        if self.name is not None and event.name != self.name:
            return
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(event)
        self._wakeup.set()

    def _wake(self) -> None:
        self._wakeup.set()

    async def receive(self) -> EventMessage | None:
        """The next event, or None once the connection ended and the queue is empty."""
        while not self.queue:
            if self._hub.closed:
                return None
            if self._wakeup.is_set():
                self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self.queue.popleft()

    def close(self) -> None:
        self._hub.subscribers.discard(self)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> EventMessage:
        event = await self.receive()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    def __init__(self, maxlen: int = 10_000) -> None:
        self.last: dict[str, EventMessage] = {}
        self.subscribers: set[EventSubscription] = set()
        self.closed = False
        self.maxlen = maxlen

    def publish(self, event: EventMessage) -> None:
        self.last[event.name] = event
        for subscriber in list(self.subscribers):
            subscriber._push(event)

    def subscribe(self, name: str | None = None) -> EventSubscription:
        subscription = EventSubscription(self, name, self.maxlen)
        if not self.closed:
            self.subscribers.add(subscription)
        return subscription

    def close(self) -> None:
        self.closed = True
        for subscriber in list(self.subscribers):
            subscriber._wake()
