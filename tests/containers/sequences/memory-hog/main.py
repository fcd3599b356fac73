"""Allocates (and touches) 8 MiB after 8 MiB until something stops it: for memory limits."""

import asyncio


async def run(context, input):
    hoard = []
    while True:
        hoard.append(b"\x01" * (8 << 20))  # written, so every page is resident
        print(f"holding {8 * len(hoard)} MiB", flush=True)
        await asyncio.sleep(0)
