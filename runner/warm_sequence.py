"""The Sequence a warm-start template runs its runner's start-up with (runner/warm_startup.py).

It does what an idle Sequence does when it starts (registers an event handler, emits an event,
answers the host's event, waits on its input), so that the runner's code for those runs in the
template often enough to be specialised before any fork. It ends when the host ends its input.
"""

from __future__ import annotations

from typing import Any


async def run(context: Any, input: Any) -> None:
    context.on("ping", lambda message: context.emit("pong", message))
    context.emit("ready", None)
    async for _ in input:
        pass
