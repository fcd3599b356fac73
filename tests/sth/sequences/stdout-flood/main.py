"""E2E-012 TC-002: print as fast as possible while answering events."""

import asyncio


async def run(context, input):
    context.on("test-event", lambda message: context.emit("test-response", f"reply to {message}"))
    line = "x" * 99
    while True:
        for _ in range(200):
            print(line)
        await asyncio.sleep(0)
