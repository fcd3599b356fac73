"""Issue 11 item 14 (host part): every descendant of a runner ends with its Instance.

A child that called setsid outlived its Instance: cleanup only killed the runner's process
group. Now each spawned runner gets a cgroup where the system allows it (every descendant
ends with cgroup.kill), else a sweep of /proc finds its session and its scope tag; whatever
survives SIGKILL is reported in the Instance's info.
"""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import pytest
from host_fault_helpers import alive, spawn_fake

from host_bridge import Bridge, containment
from host_bridge.cgroups import CgroupTree

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _cgroups_available() -> bool:
    tree = CgroupTree()
    group = tree.new_group()
    if group is None:
        return False
    os.rmdir(group)
    tree.close()
    return True


def _session(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "sweep"])
@pytest.mark.parametrize("ending", ["kill", "exit"])
async def test_a_setsid_child_ends_with_its_instance(anyio_backend: str, cgroups: bool, ending: str) -> None:
    if cgroups and not _cgroups_available():
        pytest.skip("no cgroup v2 this process may create cgroups in")
    async with Bridge(cgroups=cgroups, exit_grace=5, term_grace=1) as bridge:
        inst = await spawn_fake(bridge, "setsid-child")
        with anyio.fail_after(20):
            child = (await inst.once("child")).message
        assert alive(child) and _session(child) == child != inst.pid  # out of the runner's group and session
        assert (inst.info.cgroup is not None) is cgroups
        if ending == "kill":
            await inst.kill()
        else:
            await inst.end_input()  # the runner completes and exits 0 by itself
        with anyio.fail_after(20):
            await inst.wait()
    assert not alive(child), "the setsid child outlived its Instance"
    assert child in inst.info.descendants_killed and inst.info.survivors == []
    if cgroups:
        assert not os.path.exists(str(inst.info.cgroup))  # removed once empty


async def test_survivors_are_reported(anyio_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What does not end after SIGKILL (here: a kill that is not allowed) is named in the info."""
    monkeypatch.setattr(containment, "_kill", lambda pids: None)
    monkeypatch.setattr(containment, "_GONE_WAIT", 0.2)
    async with Bridge(cgroups=False, exit_grace=5, term_grace=1) as bridge:
        inst = await spawn_fake(bridge, "setsid-child")
        with anyio.fail_after(20):
            child = (await inst.once("child")).message
            await inst.kill()
            await inst.wait()
    try:
        assert inst.info.survivors == [child] and alive(child)
        assert inst.info.error is not None and f"could not be ended: [{child}]" in inst.info.error
    finally:
        os.kill(child, 9)


def test_the_sweep_leaves_unrelated_processes_alone() -> None:
    """Same user, not in the runner's session and without its scope tag: never touched."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                 env=dict(os.environ, **{containment.SCOPE_ENV: "someone-else"}))
    try:
        found = containment.Containment(os.getpid(), None, "mine")._descendants()
        assert bystander.pid not in found
    finally:
        bystander.kill()
        bystander.wait()
