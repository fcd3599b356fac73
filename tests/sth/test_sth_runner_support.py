"""Shared pieces of the tests of the real runner over STH's protocol (no tests here).

Every test starts ``python -m runner <startup-log>`` exactly as STH's process
adapter does (sth_host.STHHost) and, unless it says otherwise, reads the
exit code only from ``/tmp/runner-<pid>`` (``exit_code_source="file"``), as
the process adapter does: a runner that forgets the file ends with 213.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from sth_host import STHHost

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEQUENCES = HERE / "sequences"
SAMPLES = ROOT / "sample_sequences"

#: How STH starts our runner (the default of STHHost).
RUNNER_COMMAND: tuple[str, ...] = ("-m", "runner")
#: Fast exits for tests (the default, 1000 ms, has its own test).
FAST_ENVS = {"SEQUENCE_RUNNER_STH_EXIT_TIMEOUT_MS": "0"}


def seq(name: str) -> Path:
    """A test Sequence (tests/sth/sequences) or a sample (sample_sequences)."""
    own = SEQUENCES / name
    return own if own.is_dir() else SAMPLES / name


def new_host(tmp_path: Path, **kw: Any) -> STHHost:
    kw.setdefault("exit_grace", 15.0)
    kw.setdefault("exit_code_source", "file")
    kw.setdefault("runner_command", RUNNER_COMMAND)
    kw.setdefault("python", sys.executable)
    envs = dict(FAST_ENVS)
    envs.update(kw.pop("runner_envs", {}) or {})
    return STHHost(port=0, cwd=str(tmp_path), exit_poll_interval=0.05, runner_envs=envs, **kw)


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


async def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


async def read_until(it: AsyncIterator[bytes], needle: bytes, timeout: float = 10.0) -> bytes:
    """Bytes from ``it`` until ``needle`` was seen (fails after ``timeout``)."""
    got = b""
    with anyio.fail_after(timeout):
        async for chunk in it:
            got += chunk
            if needle in got:
                return got
    raise AssertionError(f"{needle!r} not seen; got {got[-500:]!r}")
