"""E2E-015 TC-008: a lambda stop handler with defaulted parameters calling sync cleanup."""

import asyncio


def cleanup():
    print("Cleaning up...", end=" ", flush=True)
    print("Cleanup done.", flush=True)


async def run(context, input):
    context.set_stop_handler(lambda timeout=0, can_keep_alive=False: cleanup())
    print("started", flush=True)
    await asyncio.sleep(3600)
