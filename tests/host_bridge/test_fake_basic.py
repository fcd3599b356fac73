"""Instance API against the fake runner (runner.protocol on the runner side)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from hb_helpers import collect, spawn_fake

from host_bridge import Bridge, InstanceNotRunning, Status

pytestmark = pytest.mark.anyio


async def test_echo_roundtrip_completes(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, args=["a", 1], app_config={"k": "v"})
    assert inst.status in (Status.STARTING, Status.RUNNING)
    assert await inst.wait_started()
    assert inst.status is Status.RUNNING
    config = inst.last_event("config") or await inst.once("config")
    assert config.message == {"appConfig": {"k": "v"}, "args": ["a", 1]}
    await inst.send_input(["hello\n", "world\n"], content_type="text/plain")
    with anyio.fail_after(20):
        out = await collect(inst.output())
        code = await inst.wait()
    assert out == b"hello\nworld\n"
    assert code == 0 and inst.exit_code == 0
    assert inst.status is Status.COMPLETED
    assert inst.info.reported_exit_code == 0
    assert inst.info.error is None
    event = inst.last_event("content-type")
    assert event is not None and event.message == "text/plain"
    info = inst.info
    assert info.pid == info.runner["pid"]
    assert info.created and info.started and info.ended and info.created <= info.started <= info.ended
    assert "token" not in info.runner
    assert info.stderr_tail == ["fake stderr line"]


async def test_stdin_stdout_logs_and_stderr(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    await inst.write_stdin("one\n")
    await inst.write_stdin(b"two\n")
    await inst.end_stdin()
    await inst.end_input()
    with anyio.fail_after(20):
        assert await inst.wait() == 0
    assert await collect(inst.stdout()) == b"stdin:one\nstdin:two\n"
    assert await collect(inst.stderr()) == b"fake stderr line\n"
    records = [r async for r in inst.logs()]
    assert records[0]["msg"] == "connected" and records[0]["level"] == "INFO"


async def test_events_once_last_and_subscription(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    subscription = inst.events("x-reply")
    await inst.send_event("x", {"n": 1})
    with anyio.fail_after(10):
        got = await subscription.receive()
        assert got is not None and got.message == {"n": 1}
        await inst.send_event("x", "second")
        reply = await inst.once("x-reply")
    assert reply.message == "second" and reply.name == "x-reply"
    last = inst.last_event("x-reply")
    assert last is not None and last.message == "second"
    assert inst.last_event("never") is None
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()
        rest = [e async for e in subscription]  # iteration ends with the connection
    assert [e.message for e in rest] == ["second"]
    with pytest.raises(InstanceNotRunning):
        await inst.send_event("x")
    with pytest.raises(InstanceNotRunning):
        await inst.once("x-reply")


async def test_health_reports_heartbeats_then_stale(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, heartbeat_timeout=0.6)
    with anyio.fail_after(10):
        while inst.health().heartbeats < 2:
            await anyio.sleep(0.05)
    health = inst.health()
    assert health.healthy and not health.stale and health.stats["rss"] == 1234
    await inst.send_event("mute")  # heartbeats stop as if the runner hung: it goes stale
    with anyio.fail_after(10):
        while inst.healthy:
            await anyio.sleep(0.1)
    assert inst.health().stale
    await inst.set_monitoring_rate(0)  # the host turned heartbeats off: silence is not a fault
    assert not inst.health().stale
    await inst.kill()
    with anyio.fail_after(10):
        assert await inst.wait() == 137


async def test_silent_runner_is_unhealthy(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "silent", heartbeat_timeout=0.5)
    await inst.wait_started()
    await anyio.sleep(0.8)
    health = inst.health()
    assert not health.healthy and health.stale and health.age is None
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()


async def test_stop_then_kill_at_deadline_is_138(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, exit_grace=12)
    await inst.wait_started()
    await inst.stop(timeout_ms=300)
    assert inst.status is Status.STOPPING
    with anyio.fail_after(8):  # KILL at the stop timeout, not after the 12 s exit grace
        assert await inst.wait() == 138
    assert inst.status is Status.COMPLETED
    assert inst.info.sequence_error is None


async def test_stop_with_keepalive_keeps_running(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "keepalive")
    await inst.wait_started()
    await inst.stop(timeout_ms=200, can_call_keepalive=True)
    await anyio.sleep(0.8)  # well past the stop timeout: no KILL after ALIVE
    assert inst.info.keepalive_ms == 1000
    assert inst.status is Status.STOPPING and not inst.done.is_set()
    await inst.send_event("x", 1)
    with anyio.fail_after(10):
        await inst.once("x-reply")
    await inst.stop(timeout_ms=200, can_call_keepalive=False)
    with anyio.fail_after(10):
        assert await inst.wait() == 138


async def test_kill_is_137_completed(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    await inst.wait_started()
    await inst.kill()
    assert inst.status is Status.KILLING
    with anyio.fail_after(10):
        assert await inst.wait() == 137
    assert inst.status is Status.COMPLETED and inst.info.exit_signal is None


async def test_sequence_error_is_errored_with_stderr(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "fail")
    with anyio.fail_after(10):
        assert await inst.wait() == 23
    assert inst.status is Status.ERRORED
    assert inst.info.runner_error is not None and inst.info.runner_error["message"] == "FakeError: boom"
    assert "Traceback: FakeError: boom" in inst.info.stderr_tail
    assert inst.info.error is not None and "FakeError: boom" in inst.info.error


async def test_ndjson_input_items_are_json_lines(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)

    async def items():  # type: ignore[no-untyped-def]
        yield {"a": 1}
        yield [2]

    await inst.send_input(items(), content_type="application/x-ndjson")
    with anyio.fail_after(10):
        decoded = [item async for item in inst.output_items("application/x-ndjson")]
    assert decoded == [{"a": 1}, [2]]
    assert inst.info.input_content_type == "application/x-ndjson"
    with pytest.raises(ValueError):
        await inst.write_input(b"", content_type="text/plain")


async def test_large_input_waits_for_credit(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    payload = bytes(range(256)) * (3 * 4096)  # 3 MiB, more than the fake runner's 256 KiB window
    received = bytearray()

    async def read() -> None:
        async for chunk in inst.output():
            received.extend(chunk)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        with anyio.fail_after(30):
            await inst.write_input(payload, content_type="application/octet-stream")
            await inst.end_input()
            await inst.wait()
    assert bytes(received) == payload


async def test_discarded_channel_never_holds_the_runner_back(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, "flood", window=256 * 1024)
    inst.discard("stdout", "log")
    await inst.send_input("done\n")
    with anyio.fail_after(20):
        assert await collect(inst.output()) == b"done\n"
        assert await inst.wait() == 0
    assert await collect(inst.stdout()) == b""


async def test_default_stop_timeout_option_and_lookup(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, stop_timeout_ms=200, instance_id="my-instance", exit_grace=12)
    assert bridge.get("my-instance") is inst and inst.id == "my-instance"
    await inst.wait_started()
    await inst.stop()  # KILL after the 200 ms default of this Instance
    with anyio.fail_after(8):
        assert await inst.wait() == 138
    bridge.forget("my-instance")
    assert "my-instance" not in bridge.instances


async def test_set_input_content_type_before_data(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    await inst.set_input_content_type("application/octet-stream")
    with anyio.fail_after(10):
        event = await inst.once("content-type") if inst.last_event("content-type") is None else None
    got = event or inst.last_event("content-type")
    assert got is not None and got.message == "application/octet-stream"
    await inst.send_input(b"\x00\x01")  # keeps the content type already sent
    with anyio.fail_after(10):
        assert await collect(inst.output()) == b"\x00\x01"
        assert await inst.wait() == 0


async def test_env_cwd_and_absolute_sequence_path(bridge: Bridge, tmp_path: Path) -> None:
    inst = await spawn_fake(bridge, env={"HB_TEST": "yes"}, cwd=tmp_path)
    with anyio.fail_after(10):
        event = inst.last_event("process") or await inst.once("process")
    assert event.message == {"cwd": str(tmp_path), "env": "yes", "sequence": os.path.abspath("unused")}
    await inst.kill()
    with anyio.fail_after(10):
        await inst.wait()


async def test_no_content_type_named_means_none_sent(bridge: Bridge) -> None:
    # The runner then applies the Sequence's own `requires` content type (protocol.md §6).
    inst = await spawn_fake(bridge)
    await inst.send_input(["a\n", "b\n"])
    with anyio.fail_after(10):
        assert await collect(inst.output()) == b"a\nb\n"
        assert await inst.wait() == 0
    assert inst.last_event("content-type") is None
