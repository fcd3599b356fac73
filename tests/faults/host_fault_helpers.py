"""Helpers shared by tests/faults/test_host_*.py: the fake runner, fd limits, process checks."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host_bridge import Bridge, Instance

REPO = Path(__file__).resolve().parents[2]
FAKE_RUNNER = str(REPO / "tests" / "host_bridge" / "fake_runner.py")
SAMPLES = REPO / "sample_sequences"


async def spawn_fake(bridge: Bridge, mode: str = "echo", **kwargs: Any) -> Instance:
    command = [sys.executable, FAKE_RUNNER, "--mode", mode]
    return await bridge.spawn("unused", command=command, **kwargs)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def fd_limit(extra: int) -> Iterator[None]:
    """Allow only ``extra`` more open files in this process (the soft limit), restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
