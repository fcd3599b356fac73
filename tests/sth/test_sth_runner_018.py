"""The real runner under an 0.18-style STH host (``@scramjet/host`` 0.18.7; docs/sth-compat.md §6).

``STHHost(protocol="0.18")`` starts ``python -m runner ./python-runner-startup.log`` with 0.18.7's
environment (no SEQUENCE_INFO / RUNNER_CONNECT_INFO), takes eight connections (a ninth is refused
and named in ``host.refused``: 0.18.7 throws there and, under Node >= 15, dies), never answers a
heartbeat, sends the start request's appConfig/args in PONG only, routes a topic on every PANG
naming one and takes the process's own exit code (the exit-code file is still written: checked).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from sth_host import STHHost, STHInstance
from test_sth_runner_support import collect, new_host, read_until, seq, wait_for

from runner.protocol.sth import STHCode

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def host_0_18(tmp_path: Path, **kw: Any) -> STHHost:
    kw.setdefault("exit_code_source", "process")  # 0.18.7 reads the process's exit code
    return new_host(tmp_path, protocol="0.18", **kw)


def startup_log(tmp_path: Path) -> str:
    return (tmp_path / "python-runner-startup.log").read_text()


def assert_clean(host: STHHost, inst: STHInstance, code: int) -> None:
    """Eight connections only, one session (no reconnect), no reply expected, no exit-code file left."""
    assert host.refused == []
    assert inst.reconnects == 0
    assert inst.protocol_errors == []
    assert inst.exit_code == code
    assert inst.exit_code_from_file is None  # 0.18.7 never reads /tmp/runner-<pid>: none is written


async def test_input_to_output_with_the_0_18_environment(tmp_path: Path) -> None:
    async with host_0_18(tmp_path) as host:
        inst = await host.start(seq("hello"), app_config={"x": 1}, args=[])
        await inst.wait_running()
        assert inst.ping is not None
        assert "appConfig" not in inst.ping["payload"]  # nothing in the environment to echo
        assert inst.ping["sequenceInfo"]["config"]["sequenceDir"] == str(seq("hello"))
        await inst.send_input(b"python runner\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"Hello python runner!\n"
        assert await inst.wait() == 0
    assert_clean(host, inst, 0)
    assert inst.pangs == [{"requires": "", "contentType": ""}]
    assert (inst.topic_routings, inst.output_routings) == (0, 0)
    log = startup_log(tmp_path)
    assert log.count("STH 0.18-style host") == 1 and "8 connections" in log


async def test_app_config_and_args_come_from_pong(tmp_path: Path) -> None:
    main = tmp_path / "echo_config.py"
    main.write_text("import json\n\nasync def run(context, input, *args):\n"
                    "    yield json.dumps({'config': context.config, 'args': list(args)})\n")
    async with host_0_18(tmp_path) as host:
        inst = await host.start(main, app_config={"k": "v"}, args=["a", 2])
        out = await collect(inst.output())
        assert await inst.wait() == 0
    assert_clean(host, inst, 0)
    assert json.loads(out) == {"config": {"k": "v"}, "args": ["a", 2]}


async def test_pong_without_app_config_or_args(tmp_path: Path) -> None:
    """0.18.7's PONG lacks both keys when the start request did (STH-Py 0.18.7 dies on KeyError)."""
    async with host_0_18(tmp_path) as host:
        inst = await host.start(seq("hello"))
        await inst.send_input(b"x\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"Hello x!\n"
        assert await inst.wait() == 0
    assert_clean(host, inst, 0)


async def test_stop_exits_138(tmp_path: Path) -> None:
    async with host_0_18(tmp_path) as host:
        inst = await host.start(seq("stop-handler"))
        out = inst.stdout()
        await read_until(out, b"started\n")
        assert await inst.stop(1000, False) is True  # SEQUENCE_STOPPED, then KILL at the timeout
        assert await inst.wait() == 138
        assert await collect(out) == b"Cleaning up... Cleanup done.\n"
    assert_clean(host, inst, 138)
    assert STHCode.SEQUENCE_STOPPED in inst.received


async def test_kill_exits_137(tmp_path: Path) -> None:
    async with host_0_18(tmp_path) as host:
        inst = await host.start(seq("events"))
        await inst.wait_running()
        health = await inst.health()
        assert health == {"healthy": True, "processId": inst.pid}
        await inst.kill()
        with anyio.fail_after(10):
            assert await inst.wait() == 137
    assert_clean(host, inst, 137)


async def test_topic_consumer_and_producer_routed_once(tmp_path: Path) -> None:
    """0.18.7 routes on every PANG naming a topic, content type or not: each must name it once."""
    async with host_0_18(tmp_path) as host:
        producer = await host.start(seq("topic-producer"))
        consumer = await host.start(seq("topic-consumer"))
        await wait_for(lambda: any(p.get("requires") for p in consumer.pangs))
        assert consumer.input_from_topic  # routed: no header block; the runner skipped the 3013 line
        data = await collect(producer.output())
        assert data == b"Alice\nBob\nCarol\n"
        await consumer.send_input(data)
        await consumer.end_input()
        assert await collect(consumer.output()) == b"Got: Alice\nGot: Bob\nGot: Carol\n"
        assert await producer.wait() == 0
        assert await consumer.wait() == 0
    assert_clean(host, producer, 0)
    assert_clean(host, consumer, 0)
    assert (consumer.topic_routings, consumer.output_routings) == (1, 0)
    assert (producer.topic_routings, producer.output_routings) == (0, 1)


async def test_sequence_failing_on_import_exits_22(tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("raise ImportError('no such thing')\n")
    async with host_0_18(tmp_path) as host:
        inst = await host.start(bad)
        assert await inst.wait() == 22
        stderr = await collect(inst.stderr())
    assert b"ImportError: no such thing" in stderr
    assert_clean(host, inst, 22)
    assert inst.pangs == [{"requires": "", "contentType": ""}]


async def test_long_running_sequence_outlives_heartbeats_without_replies(tmp_path: Path) -> None:
    """On 1.0.x a heartbeat without MONITORING_REPLY means the host is gone (1 s); 0.18.7 never
    replies, so the runner must arm no watchdog, even when the variable asks for one."""
    async with host_0_18(tmp_path, runner_envs={"SEQUENCE_RUNNER_STH_REPLY_TIMEOUT": "0.2"}) as host:
        inst = await host.start(seq("stop-handler"))
        out = inst.stdout()
        await read_until(out, b"started\n")
        await inst.set_monitoring_rate(10)
        first = inst.heartbeats
        with anyio.fail_after(20):
            while inst.heartbeats < first + 20:  # ~2 s of heartbeats, none answered
                await anyio.sleep(0.05)
        assert inst.connected and not inst.exited and inst.reconnects == 0
        assert STHCode.MONITORING_REPLY not in inst.received
        await inst.kill()
        with anyio.fail_after(10):
            assert await inst.wait() == 137
    assert_clean(host, inst, 137)


async def test_sequence_dependencies_in_pypackages(tmp_path: Path) -> None:
    """0.18.7 does not put <sequenceDir>/__pypackages__ on PYTHONPATH (1.0.x does): the runner adds it,
    also for a main file below the package directory (where the loader alone would miss it)."""
    package = tmp_path / "pkg"
    (package / "src").mkdir(parents=True)
    (package / "__pypackages__").mkdir()
    (package / "__pypackages__" / "seqdep_0_18.py").write_text("VALUE = 'from __pypackages__'\n")
    (package / "src" / "main.py").write_text(
        "import seqdep_0_18\n\nasync def run(context, input):\n    yield seqdep_0_18.VALUE + '\\n'\n")
    (package / "package.json").write_text(json.dumps(
        {"name": "pyp", "version": "1.0.0", "main": "src/main.py", "engines": {"python3": "3.10.0"}}))
    async with host_0_18(tmp_path) as host:
        inst = await host.start(package)
        assert await collect(inst.output()) == b"from __pypackages__\n"
        assert await inst.wait() == 0
    assert_clean(host, inst, 0)
    assert inst.ping is not None
    assert inst.ping["sequenceInfo"]["config"]["entrypointPath"] == os.path.join("src", "main.py")
    assert f"{package / '__pypackages__'} added to sys.path" in startup_log(tmp_path)
