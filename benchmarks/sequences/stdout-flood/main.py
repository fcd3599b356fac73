"""Flood stdout from a thread while the event loop answers "ping" with "pong".

The printing thread blocks once the host stops reading stdout (flow control);
the loop must keep answering events meanwhile (control never queues behind data).
"""

import asyncio
import sys
import threading

LINE = "x" * 99 + "\n"


def flood():
    write = sys.stdout.write
    block = LINE * 100
    while True:
        write(block)


async def run(context, input):
    context.on("ping", lambda message: context.emit("pong", message))
    threading.Thread(target=flood, name="flood", daemon=True).start()
    context.emit("ready", None)
    while True:
        await asyncio.sleep(3600)
