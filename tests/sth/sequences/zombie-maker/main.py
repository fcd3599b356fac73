"""As PID 1 (a container without init): leave an orphan that exits, report zombies after the reaper's grace."""

import asyncio
import os
import subprocess


def zombies():
    found = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                children = f.read().split()
        except OSError:
            continue
        for pid in children:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            found += state == "Z"
    return found


async def run(context, input, wait="7"):
    subprocess.run(["sh", "-c", "sleep 0.1 &"], check=True)  # noqa: ASYNC221 - returns at once
    await asyncio.sleep(0.6)
    before = zombies()
    await asyncio.sleep(float(wait))
    yield f"pid={os.getpid()} zombies_before={before} zombies_after={zombies()}\n"
