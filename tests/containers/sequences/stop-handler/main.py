"""Runs until stopped; its stop handler takes a moment and says so on stdout."""

import asyncio


async def run(context, input):
    async def on_stop(timeout, can_keep_alive):
        await asyncio.sleep(0.2)
        print(f"stop handler ran (timeout {timeout})", flush=True)

    context.set_stop_handler(on_stop)
    print("started", flush=True)
    while True:
        await asyncio.sleep(1)
