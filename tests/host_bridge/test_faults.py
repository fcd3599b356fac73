"""Fault tests: runners that die, misbehave, never handshake, or are not who they claim."""

from __future__ import annotations

import os
import signal

import anyio
import pytest
from hb_helpers import collect, spawn_fake

from host_bridge import Bridge, BridgeError, SpawnError, Status

pytestmark = pytest.mark.anyio


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); it must have been reaped too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


async def test_sigkill_from_outside_is_reported(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    with anyio.fail_after(10):
        while inst.health().heartbeats == 0:  # its stderr line went out before the first heartbeat
            await anyio.sleep(0.02)
    assert inst.pid is not None
    os.kill(inst.pid, signal.SIGKILL)
    with anyio.fail_after(10):
        code = await inst.wait()
    assert code == 137 and inst.info.exit_signal == signal.SIGKILL
    assert inst.info.error is not None and "SIGKILL (not sent by the host)" in inst.info.error
    assert inst.info.stderr_tail == ["fake stderr line"]
    assert not _alive(inst.pid)


async def test_runner_ignoring_kill_and_sigterm_gets_sigkill(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "ignore-term", exit_grace=0.5, term_grace=0.5)
    await inst.wait_started()
    await inst.kill()
    with anyio.fail_after(15):
        code = await inst.wait()
    # The host escalated (KILL ignored -> SIGTERM ignored -> SIGKILL): that is a kill it asked for.
    assert code == 137 and inst.info.exit_signal == signal.SIGKILL
    assert inst.status is Status.COMPLETED
    assert inst.pid is not None and not _alive(inst.pid)


async def test_second_kill_is_sigkill_now(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "ignore-term", exit_grace=12)
    await inst.wait_started()
    await inst.kill()
    await inst.kill()
    with anyio.fail_after(8):  # well before the 12 s exit grace
        assert await inst.wait() == 137
    assert inst.info.exit_signal == signal.SIGKILL


async def test_malformed_frames_are_a_protocol_error_and_the_runner_is_killed(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "malformed", protocol_error_grace=0.3, term_grace=1)
    with anyio.fail_after(15):
        await inst.wait()
    assert inst.status is Status.ERRORED
    assert inst.info.error is not None and "protocol error" in inst.info.error
    assert "MalformedFrame" in inst.info.error
    assert inst.info.exit_signal in (signal.SIGTERM, signal.SIGKILL)
    # Frames before the bad one were acted on.
    assert inst.last_event("config") is not None
    assert inst.pid is not None and not _alive(inst.pid)


async def test_runner_that_never_handshakes_is_timed_out_and_killed(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "no-handshake", handshake_timeout=0.5, protocol_error_grace=0.2, term_grace=1)
    assert not await inst.wait_started()
    with anyio.fail_after(10):
        await inst.wait()
    assert inst.status is Status.ERRORED
    assert inst.info.error is not None and "handshake timeout" in inst.info.error
    assert inst.pid is not None and not _alive(inst.pid)


async def test_wrong_token_is_rejected(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "wrong-token")
    with anyio.fail_after(10):
        code = await inst.wait()
    assert code == 20 and inst.status is Status.ERRORED
    assert inst.info.error is not None and "wrong token" in inst.info.error
    # The runner got the REJECT and wrote its reason to its real stderr.
    assert any("rejected: wrong token for instance" in line for line in inst.info.process_output_tail)


async def test_runner_failing_before_connecting_reports_code_and_output(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "crash-early")
    with anyio.fail_after(10):
        assert await inst.wait() == 21
    assert inst.status is Status.ERRORED
    assert inst.info.process_output_tail == ["fake runner: cannot start, boom"]
    assert inst.info.error is not None and "boom" in inst.info.error


async def test_children_of_the_runner_are_killed(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "child")
    with anyio.fail_after(10):
        child = (await inst.once("child")).message
    assert _alive(child)
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()
    with anyio.fail_after(5):
        while _alive(child):
            await anyio.sleep(0.05)


async def test_spawn_error_is_raised(bridge: Bridge) -> None:
    with pytest.raises(SpawnError):
        await bridge.spawn("x", command=["/nonexistent/python-runner"])
    assert not bridge.instances


async def test_memory_limit_is_applied(bridge: Bridge) -> None:
    limit = 3 << 30
    inst = await spawn_fake(bridge, memory_limit=limit)
    await inst.wait_started()
    assert inst.pid is not None
    limits = _read(f"/proc/{inst.pid}/limits").splitlines()
    line = next(x for x in limits if x.startswith("Max address space"))
    assert str(limit) in line
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()


async def test_unread_stdout_does_not_block_other_channels(bridge: Bridge) -> None:
    window = 256 * 1024
    inst = await spawn_fake(bridge, "flood", window=window)
    await inst.wait_started()
    await anyio.sleep(0.3)  # the runner has 4 MiB of stdout queued and nobody reads it
    with anyio.fail_after(10):
        await inst.send_event("x", "still there")
        assert (await inst.once("x-reply")).message == "still there"
        await inst.write_input("through\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"through\n"
        await inst.wait()
    # The host buffered at most one window of the unread channel.
    assert 0 < inst.buffered("stdout") <= window


async def test_bridge_exit_kills_and_reaps_what_still_runs(anyio_backend: str) -> None:
    async with Bridge(exit_grace=0.5, term_grace=0.5) as bridge:
        instances = [await spawn_fake(bridge, mode) for mode in ("echo", "ignore-term", "no-handshake")]
        for inst in instances[:2]:
            await inst.wait_started()
    for inst in instances:
        assert inst.done.is_set() and inst.pid is not None and not _alive(inst.pid)


async def test_runner_over_its_memory_limit_crashes_and_is_reported(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "alloc", memory_limit=1 << 30)
    with anyio.fail_after(15):
        code = await inst.wait()
    assert code == 1 and inst.status is Status.ERRORED
    assert any("MemoryError" in line for line in inst.info.process_output_tail)
    assert inst.info.error is not None and "MemoryError" in inst.info.error


async def test_bridge_must_be_entered(anyio_backend: str) -> None:
    with pytest.raises(BridgeError):
        await Bridge().spawn("x")


async def test_kill_before_the_handshake_signals_the_process(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "no-handshake", term_grace=1)
    await anyio.sleep(0.3)
    await inst.stop()  # not connected: a stop is a kill, and a kill can only be a signal
    with anyio.fail_after(10):
        await inst.wait()
    assert inst.info.exit_signal == signal.SIGTERM and inst.exit_code == 137
    assert inst.status is Status.ERRORED  # it never ran
    assert inst.info.error is not None and ("PING" in inst.info.error or "handshake" in inst.info.error)
    assert inst.pid is not None and not _alive(inst.pid)
