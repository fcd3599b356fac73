"""Answer every "ping" event with a "pong" event carrying the same message (event round trip)."""

import asyncio


async def run(context, input):
    context.on("ping", lambda message: context.emit("pong", message))
    context.emit("ready", None)
    while True:
        await asyncio.sleep(3600)
