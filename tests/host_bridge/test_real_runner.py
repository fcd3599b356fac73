"""The Instance API against real `python -m runner` processes running sample_sequences/."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import anyio
import pytest
from hb_helpers import SAMPLES, collect, real_runner_available

from host_bridge import Bridge, Instance, State, Status

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not real_runner_available(), reason="python -m runner is not available"),
]


def sample(name: str) -> str:
    return str(SAMPLES / name)


async def _lines(inst: Instance, stream: str) -> str:
    chunks = inst.stdout() if stream == "stdout" else inst.stderr()
    return (await collect(chunks)).decode()


async def test_hello_text_in_text_out(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("hello"))
    assert await inst.wait_started()
    await inst.send_input(["python runner\n", "Alice\n"])
    with anyio.fail_after(30):
        items = [item async for item in inst.output_items()]
        assert await inst.wait() == 0
    assert items == ["Hello python runner!\n", "Hello Alice!\n"]
    assert inst.status is Status.COMPLETED and inst.info.error is None
    assert inst.info.runner["protocol"] == 1 and inst.info.runner["pid"] == inst.pid
    records = [r async for r in inst.logs()]
    assert records and all({"ts", "level", "msg"} <= r.keys() for r in records)


async def test_counter_args_from_pong(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("counter"), args=[3, 0])
    with anyio.fail_after(30):
        assert await collect(inst.output()) == b"1\n2\n3\n"
        assert await inst.wait() == 0
    assert inst.info.args == [3, 0]


async def test_binary_passthrough_keeps_bytes(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("binary-passthrough"), input_content_type="application/octet-stream")
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with anyio.create_task_group() as tg:
        received = bytearray()

        async def read() -> None:
            async for chunk in inst.output_items():
                received.extend(chunk)

        tg.start_soon(read)
        with anyio.fail_after(30):
            await inst.send_input(payload)
            assert await inst.wait() == 0
    assert bytes(received) == payload
    assert inst.info.output_content_type == "application/octet-stream"


async def test_ndjson_transform_items(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("ndjson-transform"))
    await inst.send_input([{"a": 1}, 5], content_type="application/x-ndjson")
    with anyio.fail_after(30):
        items = [item async for item in inst.output_items()]
        assert await inst.wait() == 0
    assert items == [{"a": 1, "seen": True, "n": 1}, {"value": 5, "seen": True, "n": 2}]
    assert inst.info.output_content_type == "application/x-ndjson"


async def test_events_sample_replies(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("events"))
    assert await inst.wait_started()
    with anyio.fail_after(30):
        # The Sequence registers its handlers once run() starts: retry until it answers.
        while inst.last_event("test-response") is None:
            await inst.send_event("test-event", "foo")
            with anyio.move_on_after(0.5):
                await inst.once("test-response")
        last = inst.last_event("test-response")
        assert last is not None and last.message == "reply to foo"
        await inst.send_event("ping", "x")
        assert (await inst.once("pong")).message == "reply to x"
        await inst.stop(timeout_ms=500)
        assert await inst.wait() == 138
    assert inst.status is Status.COMPLETED


async def test_stop_keepalive_then_stop(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("stop-keepalive"), args=["SEND_KEEPALIVE"])
    with anyio.fail_after(15):
        await inst.wait_running()  # run() has installed its stop handler
    # 2 s for the handler to reach keep_alive(), also on a loaded machine.
    stop_timeout_s = 2.0
    sent = anyio.current_time()
    await inst.stop(timeout_ms=int(stop_timeout_s * 1000), can_call_keepalive=True)
    with anyio.fail_after(15):
        state = await inst.wait_until(lambda s: s.keepalive_ms is not None)
    assert state.status is Status.STOPPING and inst.info.keepalive_ms == state.keepalive_ms
    await anyio.sleep(max(0.0, sent + stop_timeout_s + 0.5 - anyio.current_time()))  # past the stop timeout
    assert not inst.done.is_set() and inst.status is Status.STOPPING
    await inst.stop(timeout_ms=20000)  # the handler's answer ends this stop, not the deadline
    with anyio.fail_after(20):
        await inst.wait_until(lambda s: s.lifecycle is State.STOPPED)  # SEQUENCE_STOPPED
        assert inst.info.sequence_error is None
        await inst.kill()
        assert await inst.wait() == 138
    out = await _lines(inst, "stdout")
    assert "Keeping alive for 3000 ms" in out and "Cleanup done." in out
    assert inst.status is Status.COMPLETED


async def test_unhealthy_sample_reports_unhealthy(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("unhealthy"))
    await inst.set_monitoring_rate(10)
    with anyio.fail_after(20):
        # Heartbeats start at the handshake; until the loop runs (stats.loopLagMs appears)
        # the Sequence's health check has not been asked yet, so they say healthy.
        while "loopLagMs" not in inst.health().stats:
            await anyio.sleep(0.05)
    health = inst.health()
    assert not health.healthy and not health.stale
    assert "rss" in health.stats
    await inst.kill()
    with anyio.fail_after(20):
        assert await inst.wait() == 137


async def test_failing_sample_is_errored_with_traceback(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("failing"))
    with anyio.fail_after(30):
        out = await collect(inst.output())
        assert await inst.wait() == 23
    assert out == b"about to fail\n"
    assert inst.status is Status.ERRORED
    stderr = await _lines(inst, "stderr")
    assert "TestException: This exception should appear on stderr" in stderr
    assert inst.info.runner_error is not None
    assert inst.info.error is not None and "This exception should appear on stderr" in inst.info.error


async def test_cpu_bound_sample_is_killed(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("cpu-bound"))
    assert await inst.wait_started()
    seen = b""
    with anyio.fail_after(20):
        async for chunk in inst.stdout():
            seen += chunk
            if b"Spinning" in seen:
                break
    await inst.kill()
    with anyio.fail_after(30):  # KILL, or at worst SIGTERM/SIGKILL after the graces
        code = await inst.wait()
    assert code == 137 and inst.status is Status.COMPLETED


async def test_stdinout_sample(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("stdinout"))
    await inst.write_stdin("one\ntwo\n")
    await inst.end_stdin()
    with anyio.fail_after(30):
        assert await inst.wait() == 0
    out = await _lines(inst, "stdout")
    assert "Got on stdin: one\nGot on stdin: two\n" in out


async def test_missing_sequence_path_is_21(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("does-not-exist"))
    with anyio.fail_after(30):
        assert await inst.wait() == 21
    assert inst.status is Status.ERRORED and inst.info.error


async def test_real_runner_killed_from_outside(bridge: Bridge) -> None:
    inst = await bridge.spawn(sample("events"))
    assert await inst.wait_started() and inst.pid is not None
    os.kill(inst.pid, signal.SIGKILL)
    with anyio.fail_after(20):
        assert await inst.wait() == 137
    assert inst.info.exit_signal == signal.SIGKILL
    assert inst.info.error is not None and "not sent by the host" in inst.info.error


async def test_real_runner_over_unix_listener(bridge: Bridge) -> None:
    with tempfile.TemporaryDirectory(prefix="hb-") as tmp:
        listener = await bridge.listen_unix(os.path.join(tmp, "hub.sock"))
        inst = await bridge.spawn(sample("hello"), listener=listener)
        await inst.send_input("unix\n")
        with anyio.fail_after(30):
            assert await collect(inst.output()) == b"Hello unix!\n"
            assert await inst.wait() == 0


async def test_fifty_concurrent_runners_streaming(anyio_backend: str) -> None:
    count = 50 if anyio_backend == "asyncio" else 20
    async with Bridge(handshake_timeout=60, exit_grace=30) as bridge:
        instances = [await bridge.spawn(sample("counter"), args=[200, 5]) for _ in range(count)]
        expected = "".join(f"{i}\n" for i in range(1, 201)).encode()
        results: dict[str, bytes] = {}

        async def drain(inst: Instance) -> None:
            results[inst.id] = await collect(inst.output())
            await inst.wait()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for inst in instances:
                    tg.start_soon(drain, inst)
    assert all(inst.exit_code == 0 for inst in instances), [i.info.error for i in instances if i.exit_code]
    assert all(out == expected for out in results.values())


async def test_real_runner_with_wrong_token_is_rejected(bridge: Bridge) -> None:
    # argv wins over the environment in the runner: hand it a token that is not the Instance's.
    command = [sys.executable, "-m", "runner", "--token", "not-the-token"]
    inst = await bridge.spawn(sample("events"), command=command)
    with anyio.fail_after(30):
        assert await inst.wait() == 20
    assert inst.status is Status.ERRORED and not inst.connected.is_set()
    assert inst.info.error is not None and "wrong token" in inst.info.error
    assert any("wrong token" in line for line in inst.info.process_output_tail)
