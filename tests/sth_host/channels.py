"""The STH host's byte channels and sessions, on host_bridge's channel code.

A runner channel's bytes wait in host_bridge's ``ByteChannel`` (the buffer hubs
read through); STH has no credit, so TCP is the flow control: the reader stops
reading a channel while ``limit`` bytes of it wait, and the runner's writes to
it then block in the kernel, as STH's streams do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from host_bridge.channels import ByteChannel
from runner.protocol.sth import STHChannel

#: Bytes the host asks for per read of a runner connection.
READ_SIZE = 1 << 16
#: The channels the runner writes (the host keeps their bytes for the test/benchmark).
READ_CHANNELS = (STHChannel.STDOUT, STHChannel.STDERR, STHChannel.OUT, STHChannel.LOG)
#: The channels the runner reads: the host drains them (the runner may half-close; PACKAGE is unused).
DRAIN_CHANNELS = (STHChannel.STDIN, STHChannel.CONTROL, STHChannel.IN, STHChannel.PACKAGE)


class RunnerChannel(ByteChannel):
    """Bytes the runner wrote on one channel, for one consumer; at most ``limit`` wait unread."""

    def __init__(self, channel: int, limit: int) -> None:
        super().__init__(channel, self._taken)
        self.limit = limit
        self._room = anyio.Event()

    def _taken(self, _channel: int, _n: int) -> None:
        self._room.set()

    def end(self) -> None:
        super().end()
        self._room.set()

    def discard(self) -> None:
        super().discard()
        self._room.set()

    async def put(self, data: bytes) -> None:
        """Keep ``data``; return once fewer than ``limit`` bytes wait (the reader reads on then)."""
        if self.ended:
            return
        self.feed(data)
        while self.buffered >= self.limit and not (self.discarding or self.ended):
            self._room = anyio.Event()
            await self._room.wait()


@dataclass(eq=False)
class Session:
    """One set of nine connections (a reconnect makes a new session)."""

    streams: dict[int, anyio.abc.SocketStream]
    readers: dict[int, BufferedByteReceiveStream]
    locks: dict[int, anyio.Lock] = field(default_factory=lambda: {int(ch): anyio.Lock() for ch in STHChannel})
    monitoring_closed: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    input_ended: bool = False
    stdin_ended: bool = False


async def first(*events: anyio.Event) -> None:
    """Until any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)
