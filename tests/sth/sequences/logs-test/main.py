"""E2E-014 TC-013: context.logger reaches the LOG channel; then it waits to be killed."""

import asyncio


async def run(context, input):
    context.logger.debug("Debug log message")
    context.logger.info("Info log message")
    while True:
        await asyncio.sleep(1)
