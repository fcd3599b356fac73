"""Print "Got on stdin: <line>" for every line read from stdin (STH E2E TC-002).

Uses the stdin/stdout channels only, so it has no output stream. It ends when
stdin ends.
"""

import sys


async def run(context, input):
    async for line in sys.stdin:
        text = line.rstrip("\r\n")
        print(f"Got on stdin: {text}", flush=True)
