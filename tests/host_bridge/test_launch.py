"""Bridge.launch: runners started elsewhere (a container in the hub's docker runtime) but supervised
like spawned ones. Here the "elsewhere" is a plain process started by the test's ExternalRunner,
which reports its exit the way a container engine does (128 + signal) and delivers signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import anyio
import anyio.abc
import pytest
from hb_helpers import FAKE_RUNNER, ROOT, SAMPLES, collect

from host_bridge import Bridge, Instance, RunnerExit, SpawnError, Status

pytestmark = pytest.mark.anyio


class ProcessRunner:
    """An ExternalRunner over a process: what a container runtime would be, without the engine."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.signals: list[signal.Signals] = []
        self.oom = False

    async def wait(self) -> RunnerExit:
        code = await self.process.wait()
        if code < 0:
            code = 128 - code  # as an engine reports a signal death
        return RunnerExit(code, oom_killed=self.oom, detail="OOMKilled: limit 64 MiB" if self.oom else None)

    async def signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig)
        if self.process.returncode is None:
            self.process.send_signal(sig)

    def oom_kill(self) -> None:
        self.oom = True
        self.process.send_signal(signal.SIGKILL)


def starter(listener_address: str, command: list[str], handles: list[ProcessRunner]):  # type: ignore[no-untyped-def]
    async def start(instance: Instance) -> ProcessRunner:
        env = dict(os.environ, SEQUENCE_RUNNER_INSTANCE_ID=instance.id, SEQUENCE_RUNNER_TOKEN=instance.token)
        process = await anyio.open_process([*command, "--connect", listener_address], env=env, cwd=ROOT,
                                           stdin=None, stdout=None, stderr=None)
        handle = ProcessRunner(process)
        handles.append(handle)
        return handle

    return start


async def test_a_launched_runner_runs_and_reports_its_exit(bridge: Bridge) -> None:
    listener = await bridge.listen_tcp()
    handles: list[ProcessRunner] = []
    command = [sys.executable, "-m", "runner", "--sequence", str(SAMPLES / "hello")]
    inst = await bridge.launch(starter(listener.address, command, handles))
    assert inst.id in bridge.instances and inst.status is Status.STARTING
    with anyio.fail_after(20):
        assert await inst.wait_started()
        await inst.send_input("Ada\n")
        assert await collect(inst.output()) == b"Hello Ada!\n"
        assert await inst.wait() == 0
    assert inst.status is Status.COMPLETED and inst.info.error is None and handles[0].signals == []


async def test_a_runner_that_dies_before_connecting_ends_the_instance_at_once(bridge: Bridge) -> None:
    listener = await bridge.listen_tcp()
    command = [sys.executable, FAKE_RUNNER, "--mode", "crash-early"]
    began = time.monotonic()
    inst = await bridge.launch(starter(listener.address, command, []), handshake_timeout=30)
    with anyio.fail_after(20):
        assert await inst.wait_started() is False
        assert await inst.wait() == 21
    assert time.monotonic() - began < 10, "it waited for the handshake timeout"
    assert inst.status is Status.ERRORED
    assert "exited before completing the handshake" in (inst.info.error or "")


async def test_a_start_that_fails_is_a_spawn_error_and_leaves_nothing(bridge: Bridge) -> None:
    async def broken(instance: Instance) -> ProcessRunner:
        raise RuntimeError("no such image")

    with pytest.raises(SpawnError, match="no such image"):
        await bridge.launch(broken)
    assert bridge.instances == {}


async def test_escalation_signals_go_through_the_handle(bridge: Bridge) -> None:
    """A runner that ignores KILL and SIGTERM: SIGTERM, then SIGKILL, delivered by the handle."""
    listener = await bridge.listen_tcp()
    handles: list[ProcessRunner] = []
    command = [sys.executable, FAKE_RUNNER, "--mode", "ignore-term"]
    inst = await bridge.launch(starter(listener.address, command, handles), exit_grace=0.5, term_grace=0.5)
    with anyio.fail_after(20):
        assert await inst.wait_started()
        await inst.kill()
        assert await inst.wait() == 137
    assert handles[0].signals == [signal.SIGTERM, signal.SIGKILL]
    assert inst.status is Status.COMPLETED and inst.info.killed_by == "host"
    assert inst.info.exit_signal == signal.SIGKILL


async def test_an_oom_kill_reported_by_the_runtime_is_the_instance_s(bridge: Bridge) -> None:
    listener = await bridge.listen_tcp()
    handles: list[ProcessRunner] = []
    command = [sys.executable, FAKE_RUNNER]
    inst = await bridge.launch(starter(listener.address, command, handles))
    with anyio.fail_after(20):
        assert await inst.wait_started()
        handles[0].oom_kill()
        assert await inst.wait() == 137
    info = inst.info
    assert (info.killed_by, info.oom, info.exit_signal) == ("oom-killer", "OOMKilled: limit 64 MiB", signal.SIGKILL)
    assert "OOMKilled: limit 64 MiB" in (info.error or "")
    assert handles[0].signals == []


async def test_a_signal_from_outside_is_told_apart_from_the_runner_s_own_137(bridge: Bridge) -> None:
    """No EXITING and 137 from the runtime: SIGKILL from outside (`docker kill`), as for a process."""
    listener = await bridge.listen_tcp()
    handles: list[ProcessRunner] = []
    inst = await bridge.launch(starter(listener.address, [sys.executable, FAKE_RUNNER], handles))
    with anyio.fail_after(20):
        assert await inst.wait_started()
        handles[0].process.send_signal(signal.SIGKILL)
        assert await inst.wait() == 137
    info = inst.info
    assert (info.exit_signal, info.killed_by) == (signal.SIGKILL, "outside")
    assert "not sent by the host" in (info.error or "")


async def test_a_clean_exit_code_wins_over_the_lifecycle_s(bridge: Bridge, tmp_path: Path) -> None:
    """The runtime's exit code is the process's own: 0 without EXITING is still no clean end."""
    listener = await bridge.listen_tcp()
    command = [sys.executable, FAKE_RUNNER, "--mode", "vanish"]
    inst = await bridge.launch(starter(listener.address, command, []))
    with anyio.fail_after(20):
        assert await inst.wait_started()
        await inst.send_input("x\n")
        assert await inst.wait() == 0
    assert inst.status is Status.ERRORED and "without EXITING" in (inst.info.error or "")
