"""Report the instance as unhealthy, forever."""

import asyncio


async def run(context, input):
    context.set_health_check(lambda: {"healthy": False})
    while True:
        await asyncio.sleep(1)
