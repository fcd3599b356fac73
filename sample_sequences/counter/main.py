"""Produce output without reading input: "1\\n" up to "<count>\\n".

Args: ``count`` (default 5) and ``interval_ms`` between lines (default 0).
Both may arrive as strings from the command line.
"""

import asyncio


async def run(context, input, count=5, interval_ms=0):
    count = int(count)
    interval = float(interval_ms) / 1000
    for i in range(1, count + 1):
        yield f"{i}\n"
        if i < count:
            await asyncio.sleep(interval)
