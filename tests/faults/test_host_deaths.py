"""Issue 11 item 19: deaths from outside are told apart from a host KILL.

A runner killed by SIGKILL from outside, or by the OOM killer, used to look exactly like a
host KILL (137, "completed"). The exit code stays STH's (137 for SIGKILL), but the info now
says which signal, who sent it as far as the host can know (Linux does not tell a parent the
sender: "host" when host_bridge sent it, "oom-killer" when the runner's own memory cgroup
counted an OOM kill, else "outside") and the kernel's OOM counter when it moved.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from host_fault_helpers import FAKE_RUNNER, spawn_fake

from host_bridge import Bridge, Status
from host_bridge.cgroups import memory_dir

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sigkill_from_outside_is_reported_as_outside(anyio_backend: str) -> None:
    async with Bridge(exit_grace=5, term_grace=1) as bridge:
        inst = await spawn_fake(bridge)
        assert await inst.wait_started() and inst.pid is not None
        os.kill(inst.pid, signal.SIGKILL)
        with anyio.fail_after(20):
            assert await inst.wait() == 137  # STH's code for a SIGKILL death, unchanged
    info = inst.info
    assert inst.status is Status.COMPLETED
    assert (info.exit_signal, info.exit_signal_name, info.killed_by) == (signal.SIGKILL, "SIGKILL", "outside")
    assert info.error is not None and "not sent by the host" in info.error


async def test_sigkill_sent_by_the_host_is_reported_as_host(anyio_backend: str) -> None:
    async with Bridge(exit_grace=5, term_grace=1) as bridge:
        inst = await spawn_fake(bridge, "ignore-term")  # ignores KILL and SIGTERM
        assert await inst.wait_started()
        await inst.kill()
        await inst.kill()  # the second kill() is SIGKILL now
        with anyio.fail_after(20):
            assert await inst.wait() == 137
    assert (inst.info.exit_signal_name, inst.info.killed_by, inst.info.oom) == ("SIGKILL", "host", None)
    assert inst.status is Status.COMPLETED and inst.info.error is None


@pytest.fixture
def small_memory_cgroup() -> Iterator[Path]:
    """A cgroup v1 memory cgroup of 96 MiB below this process's own (skipped where not allowed)."""
    own = memory_dir("self")
    if own is None or not os.path.exists(os.path.join(own, "memory.limit_in_bytes")):
        pytest.skip("no cgroup v1 memory hierarchy to make a small cgroup in")
    path = Path(own) / f"hb-oom-test-{os.getpid()}"
    try:
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(96 << 20))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup: {exc}")
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:  # the killed runner may take a moment to leave it
                time.sleep(0.1)


async def test_the_oom_killer_is_named(anyio_backend: str, small_memory_cgroup: Path) -> None:
    join = f'echo $$ > {small_memory_cgroup}/cgroup.procs && exec "$0" "$@"'
    command = [shutil.which("sh") or "/bin/sh", "-c", join, sys.executable, FAKE_RUNNER, "--mode", "hog"]
    async with Bridge(exit_grace=5, term_grace=1) as bridge:
        inst = await bridge.spawn("unused", command=command)
        with anyio.fail_after(60):
            code = await inst.wait()
    info = inst.info
    assert code == 137 and inst.status is Status.COMPLETED  # STH's code and status, unchanged
    assert (info.exit_signal_name, info.killed_by) == ("SIGKILL", "oom-killer")
    assert info.oom is not None and str(small_memory_cgroup) in info.oom and "oom_kill 0 -> 1" in info.oom
    assert info.error is not None and "OOM kill" in info.error
