"""Clean up on stop, asking once for more time when allowed.

The stop handler prints "Cleaning up...". If the host allows a keepalive and
the Sequence was told to use one (arg "SEND_KEEPALIVE" or appConfig
{"sendKeepalive": true}), the first stop is answered with keep_alive(3000)
and the Sequence keeps running. Otherwise it prints "Cleanup done.".
"""

import asyncio


async def run(context, input, *args):
    wants_keepalive = "SEND_KEEPALIVE" in args or bool(context.config.get("sendKeepalive"))
    kept_alive = False

    async def on_stop(timeout, can_keep_alive):
        nonlocal kept_alive
        print("Cleaning up...", flush=True)
        if can_keep_alive and wants_keepalive and not kept_alive:
            kept_alive = True
            print("Keeping alive for 3000 ms", flush=True)
            await context.keep_alive(3000)
            return
        print("Cleanup done.", flush=True)

    context.set_stop_handler(on_stop)

    while True:
        await asyncio.sleep(1)
