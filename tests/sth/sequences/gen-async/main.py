"""E2E-014 TC-015: an async generator awaiting a coroutine per item."""

import asyncio


async def save(item):
    await asyncio.sleep(0.01)
    return f"saved to db: {item.strip()}"


async def run(context, input):
    async for item in input:
        yield await save(item)
