"""IN, as the Sequence's input: batches from the transport's reader thread, decoded on the loop."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .protocol import Channel
from .transport.base import Transport

if TYPE_CHECKING:
    from .bridge import LoopBridge
    from .control import ControlHandler

__all__ = ["InputStream"]


class InputStream:
    """IN bytes, handed from the reader thread in batches, as the Sequence's input iterator."""

    def __init__(self, bridge: LoopBridge, transport: Transport, control: ControlHandler) -> None:
        import asyncio

        self._bridge = bridge
        self._transport = transport
        self._control = control
        self._lock = threading.Lock()
        self._batches: list[list[bytes] | None] = []
        self._waiting = False
        self._ready = asyncio.Event()

    def feed(self, channel: int, batch: list[bytes] | None) -> None:
        """Reader thread: queue a batch (None = END). Wakes the loop only if it is waiting."""
        with self._lock:
            self._batches.append(batch)
            wake, self._waiting = self._waiting, False
        if wake:
            self._bridge.call(self._ready.set)

    async def _next(self) -> list[list[bytes] | None]:
        while True:
            with self._lock:
                if self._batches:
                    taken, self._batches = self._batches, []
                    return taken
                self._waiting = True
                self._ready.clear()
            await self._ready.wait()

    async def chunks(self) -> AsyncIterator[bytes]:
        consumed = self._transport.consumed
        while True:
            for batch in await self._next():
                if batch is None:
                    return
                # Credit goes back when the Sequence takes a batch: at most one window is buffered.
                consumed(Channel.IN, sum(map(len, batch)))
                for chunk in batch:
                    yield chunk

    async def attach_to(self, sequence_input: Any, fallback_ct: Callable[[], str | None]) -> None:
        """Give ``sequence_input`` its decoded source once the first IN byte (or END) is here:
        the content type may arrive (INPUT_CONTENT_TYPE) up to that moment."""
        from .sequence.content import decode_input

        chunks = self.chunks()
        first: list[bytes] = []
        async for chunk in chunks:
            first.append(chunk)
            break
        content_type = self._control.input_content_type or fallback_ct() or "text/plain"

        async def replay() -> AsyncIterator[bytes]:
            for chunk in first:
                yield chunk
            async for chunk in chunks:
                yield chunk

        sequence_input.attach(decode_input(content_type, replay()))
