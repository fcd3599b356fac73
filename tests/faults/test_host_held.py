"""Host-side cases of issue 11 that already held, kept as tests with their figures
(docs/reliability.md): credit overruns, handshake checks (tests/host_bridge/test_listeners.py),
200 stop/kill cycles without zombies or descriptor leaks, 50 concurrent streams
(tests/host_bridge/test_real_runner.py)."""

from __future__ import annotations

import os
import time

import anyio
import pytest
from host_fault_helpers import open_fds, spawn_fake

from host_bridge import Bridge, Instance, Status

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _zombie_children() -> list[int]:
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == me:
                found.append(int(name))
    return found


async def test_a_runner_overrunning_its_credit_is_cut_off_alone(anyio_backend: str) -> None:
    async with Bridge(exit_grace=5, term_grace=1, protocol_error_grace=0.5) as bridge:
        bystander = await spawn_fake(bridge)
        inst = await spawn_fake(bridge, "overrun")  # nobody reads OUT: 1 MiB of credit, 2 MiB sent
        started = time.monotonic()
        with anyio.fail_after(20):
            await inst.wait()
        took = time.monotonic() - started
        assert inst.status is Status.ERRORED
        assert inst.info.error is not None and "FlowControlError" in inst.info.error
        assert inst.buffered("output") <= 1 << 20  # never more than the window was kept
        await bystander.send_input("unaffected\n")  # the other Instance goes on
        with anyio.fail_after(20):
            assert b"".join([c async for c in bystander.output()]) == b"unaffected\n"
            assert await bystander.wait() == 0
    assert took < 10


async def test_200_stop_and_kill_cycles_leave_no_zombies_and_no_descriptors(anyio_backend: str) -> None:
    cycles, at_once = (200, 10) if anyio_backend == "asyncio" else (40, 10)  # trio: the same code, fewer
    before = open_fds()
    codes: list[int | None] = []
    started = time.monotonic()
    async with Bridge(exit_grace=5, term_grace=1) as bridge:

        async def cycle(i: int) -> None:
            inst: Instance = await spawn_fake(bridge, stop_timeout_ms=100)
            assert await inst.wait_started()
            await (inst.stop() if i % 2 else inst.kill())
            codes.append(await inst.wait())
            bridge.forget(inst.id)

        with anyio.fail_after(180):
            for first in range(0, cycles, at_once):
                async with anyio.create_task_group() as tg:
                    for i in range(first, first + at_once):
                        tg.start_soon(cycle, i)
    took = time.monotonic() - started
    assert sorted(set(codes)) == [137, 138] and codes.count(137) == codes.count(138) == cycles // 2
    assert _zombie_children() == []
    assert open_fds() <= before + 2, f"{open_fds() - before} descriptors more than before"
    print(f"{cycles} cycles in {took:.1f} s")
