"""State a hub can await: wait_running, state_changes, wait_until/wait_state, `async with`,
typed heartbeat stats and typed options (fake and real runners)."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import anyio
import pytest
from hb_helpers import SAMPLES, real_runner_available, spawn_fake

from host_bridge import Bridge, InstanceEnded, InstanceNotRunning, InstanceOptions, State, Status

pytestmark = pytest.mark.anyio

needs_runner = pytest.mark.skipif(not real_runner_available(), reason="python -m runner is not available")


@needs_runner
async def test_wait_running_then_one_event_is_answered(bridge: Bridge) -> None:
    """After wait_running() the Sequence's handlers exist: one event, one reply, no retry loop."""
    inst = await bridge.spawn(str(SAMPLES / "events"))
    inst.discard("log")
    with anyio.fail_after(20):
        state = await inst.wait_running()
        assert state.running and state.status is Status.RUNNING and state.lifecycle is State.RUNNING
        pong = inst.events("pong")
        await inst.send_event("ping", "hub")
        reply = await pong.receive()
    assert reply is not None and reply.message == "reply to hub"
    stats = inst.stats
    assert stats is not None and stats.loop_lag_ms is not None and stats.rss is not None and stats.rss > 0
    assert inst.health().last is stats
    await inst.kill()
    with anyio.fail_after(20):
        assert await inst.wait() == 137


@needs_runner
async def test_wait_running_raises_when_the_sequence_fails_at_import(bridge: Bridge, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('broken at import')\n")
    inst = await bridge.spawn(str(path))
    with anyio.fail_after(20), pytest.raises(InstanceEnded) as caught:
        await inst.wait_running()
    assert isinstance(caught.value, InstanceNotRunning)  # hubs catching the base class keep working
    assert "before its Sequence was running" in str(caught.value) and "22" in str(caught.value)
    with anyio.fail_after(20):
        assert await inst.wait() == 22
    assert not inst.state.running and inst.state.done


async def test_state_changes_deliver_every_transition_in_order(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    changes = inst.state_changes()  # subscribed now; read only after the Instance ended
    assert await inst.wait_started()
    await inst.kill()
    with anyio.fail_after(10):
        assert await inst.wait() == 137
        seen = [state async for state in changes]
    statuses = [s.status for s in seen]
    assert statuses[0] is Status.STARTING and statuses[-1] is Status.COMPLETED
    assert [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] is not s] == [
        Status.STARTING, Status.RUNNING, Status.KILLING, Status.COMPLETED,
    ]
    lifecycles = [s.lifecycle for s in seen]
    assert lifecycles.index(State.RUNNING) < lifecycles.index(State.KILLED) < lifecycles.index(State.EXITED)
    assert seen[-1].done and not any(s.done for s in seen[:-1])
    assert changes.dropped == 0
    # A subscription made after the end hands out the final state once.
    assert [s async for s in inst.state_changes()] == [seen[-1]]


async def test_wait_state_and_wait_until(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "keepalive")
    with anyio.fail_after(10):
        assert (await inst.wait_state(Status.RUNNING)).status is Status.RUNNING
    await inst.stop(timeout_ms=200, can_call_keepalive=True)
    with anyio.fail_after(10):
        state = await inst.wait_until(lambda s: s.keepalive_ms is not None)
    assert state.keepalive_ms == 1000 and state.status is Status.STOPPING
    await inst.kill()
    with anyio.fail_after(10), pytest.raises(InstanceEnded):
        await inst.wait_state(Status.ERRORED)  # it ends completed, never errored
    assert inst.status is Status.COMPLETED


async def test_sequence_stopped_is_visible_without_the_connection(bridge: Bridge) -> None:
    """SEQUENCE_STOPPED (the Sequence ended; the runner waits for KILL) is a public state."""
    inst = await spawn_fake(bridge, stop_timeout_ms=60_000)
    await inst.wait_started()
    await inst.stop()
    with anyio.fail_after(10):
        state = await inst.wait_until(lambda s: s.lifecycle is State.STOPPED)
    assert state.status is Status.STOPPING and not state.done
    await inst.kill()
    with anyio.fail_after(10):
        assert await inst.wait() == 138


async def test_async_with_stops_the_instance(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, stop_timeout_ms=300)
    with anyio.fail_after(10):
        async with inst:
            assert await inst.wait_started()
    assert inst.done.is_set() and inst.exit_code == 138 and inst.status is Status.COMPLETED
    assert inst.stop_requested


async def test_async_with_ends_a_runner_that_ignores_kill_and_sigterm(anyio_backend: str) -> None:
    async with Bridge(exit_grace=30, term_grace=0.3) as bridge:
        inst = await spawn_fake(bridge, "ignore-term", stop_timeout_ms=200)
        await inst.wait_started()
        with anyio.fail_after(15):
            async with inst:
                pass
    assert inst.exit_code == 138 and inst.info.exit_signal == signal.SIGKILL
    assert inst.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(inst.pid, 0)


async def test_heartbeat_updates_are_typed(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    updates = inst.heartbeat_updates()
    await inst.wait_started()
    with anyio.fail_after(10):
        beat = await updates.__anext__()
    assert beat.healthy and beat.rss == 1234 and beat.cpu == 0.5 and beat.loop_lag_ms == 0
    assert beat.raw["stats"]["rss"] == 1234 and inst.heartbeats >= 1
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()
        rest = [b async for b in updates]  # ends with the connection
    assert all(b.healthy for b in rest)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="window"):
        InstanceOptions(window=0)
    with pytest.raises(ValueError, match="exit_grace"):
        InstanceOptions(exit_grace=-1)
    with pytest.raises(ValueError, match="max_frame_size"):
        Bridge(max_frame_size=10)


async def test_conn_is_deprecated(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    with pytest.warns(DeprecationWarning, match="state.lifecycle"):
        assert inst.conn.state is inst.state.lifecycle
    assert await inst.wait_started()
    for name in ("link", "closed", "heartbeat_at", "connected_at"):
        with pytest.warns(DeprecationWarning, match=f"Instance.{name} is deprecated"):
            getattr(inst, name)
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()


@needs_runner
async def test_wait_running_for_a_slow_import(bridge: Bridge, tmp_path: Path) -> None:
    """Connected long before run(): wait_running waits through the import."""
    path = tmp_path / "slow.py"
    path.write_text(textwrap.dedent("""
        import time
        time.sleep(1.5)

        async def run(context, input):
            context.on("ping", lambda message: context.emit("pong", message))
            async for _ in input:
                pass
    """))
    inst = await bridge.spawn(str(path))
    inst.discard("log")
    assert await inst.wait_started()
    assert not inst.state.running
    with anyio.fail_after(20):
        await inst.wait_running()
        pong = inst.events("pong")
        await inst.send_event("ping", 1)
        assert (await pong.receive()) is not None
        await inst.end_input()
        assert await inst.wait() == 0


@needs_runner
async def test_topics_from_pang_can_be_awaited(bridge: Bridge) -> None:
    inst = await bridge.spawn(str(SAMPLES / "topic-producer"))
    inst.discard("log", "stdout", "stderr")
    with anyio.fail_after(20):
        state = await inst.wait_until(lambda s: s.provides is not None and s.requires is not None)
    assert state.provides == inst.info.provides and state.provides
    assert state.requires == ""
    await inst.kill()
    with anyio.fail_after(20):
        await inst.wait()
