"""The Sequence's output to OUT: batches encoded by content type, offered within credit.

The event loop never blocks on the host: ``ChannelWriter.offer`` takes a buffer
while the channel has room, else it remembers a wake-up that the transport calls
(from its thread, through the LoopBridge) once credit made room again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .bridge import LoopBridge
from .protocol import Channel
from .transport.base import Transport

__all__ = ["OutputPump"]


class OutputPump:
    def __init__(self, transport: Transport) -> None:
        self._writer = transport.writer(Channel.OUT)
        #: Output items the Sequence produced (the heartbeat's ``channels.out.items``).
        self.items = 0

    async def pump(self, bridge: LoopBridge, output: AsyncIterator[list[Any]],
                   encode: Callable[[list[Any]], list[Any]], after_first_batch: Callable[[], None]) -> None:
        """Every batch of ``output`` to OUT; the items before one that cannot be encoded go out
        first, then its OutputEncodeError is raised."""
        from .sequence.content import OutputEncodeError

        space = asyncio.Event()
        offer = self._writer.offer

        def wake() -> None:
            bridge.call(space.set)

        first = True
        async for batch in output:
            if first:
                first = False
                after_first_batch()
            self.items += len(batch)
            failed: OutputEncodeError | None = None
            try:
                buffers = encode(batch)  # a list of buffers: binary output is not joined
            except OutputEncodeError as exc:
                buffers, failed = [exc.partial], exc  # the items before the bad one still go out
            for data in buffers:
                if not data:
                    continue
                while not offer(data, wake):
                    await space.wait()
                    space.clear()
            if failed is not None:
                raise failed

    async def end(self) -> None:
        """END OUT; returns once it went out (the host gave credit for everything before it)."""
        writer = self._writer
        writer.end()
        while not (writer.ended or writer.failed):
            await asyncio.sleep(0.005)

    def end_without_loop(self, budget: float) -> None:
        """``end`` from a thread without a loop, waiting at most ``budget`` seconds."""
        writer = self._writer
        writer.end()
        deadline = time.monotonic() + budget
        while not (writer.ended or writer.failed) and time.monotonic() < deadline:
            time.sleep(0.005)
