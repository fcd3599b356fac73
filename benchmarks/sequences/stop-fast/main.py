"""A stop handler that does nothing but emit "stopped" (stop latency)."""

import asyncio


async def run(context, input):
    async def on_stop(timeout, can_keep_alive):
        context.emit("stopped", None)

    context.set_stop_handler(on_stop)
    context.emit("ready", None)
    while True:
        await asyncio.sleep(3600)
