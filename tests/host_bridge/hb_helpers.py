"""Helpers shared by the host_bridge tests (imported as a top-level module by pytest's rootdir mode)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from host_bridge import Bridge, Instance

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FAKE_RUNNER = str(HERE / "fake_runner.py")
SAMPLES = ROOT / "sample_sequences"


async def spawn_fake(bridge: Bridge, mode: str = "echo", **kwargs: Any) -> Instance:
    command = [sys.executable, FAKE_RUNNER, "--mode", mode]
    return await bridge.spawn("unused", command=command, **kwargs)


def real_runner_available() -> bool:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "runner", "--version"], cwd=ROOT, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def collect(aiter: Any) -> bytes:
    return b"".join([chunk async for chunk in aiter])
