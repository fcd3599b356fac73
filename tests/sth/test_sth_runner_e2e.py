"""STH's Python BDD scenarios (reference §7: E2E-014, E2E-015, E2E-010 TC-021) against the real runner.

Each test starts ``python -m runner`` the way STH's process adapter does and
talks STH's protocol to it (sth_host.STHHost); the exit code comes only
from the exit-code file, as on the process adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from test_sth_runner_support import collect, new_host, read_until, seq, wait_for

from runner.protocol.sth import STHCode

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- E2E-015 (unified) -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hello", "sth-hello"])
async def test_tc001_hello_input_to_output(tmp_path: Path, name: str) -> None:
    if name == "sth-hello":
        pytest.importorskip("scramjet")
    async with new_host(tmp_path) as host:
        inst = await host.start(seq(name), app_config={}, args=[])
        await inst.wait_running()
        assert inst.pangs[0] == {"requires": "", "contentType": ""}
        await inst.send_input(b"python runner\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"Hello python runner!\n"
        assert await inst.wait() == 0
        assert inst.exit_code_from_file == 0 and inst.status == "completed"
        # one PANG, right after PONG: no topic on either side, so nothing else for STH to route
        assert inst.pangs == [{"requires": "", "contentType": ""}]
        assert inst.received[:2] == [STHCode.PING, STHCode.PANG]
        assert inst.topic_routings == 0
        assert inst.protocol_errors == []


async def test_tc002_stdin_to_stdout(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("stdinout"))
        await inst.send_stdin(b"python runner\n")
        await inst.end_stdin()
        assert await collect(inst.stdout()) == b"Got on stdin: python runner\n"
        assert await inst.wait() == 0


async def test_tc004_args_and_tc021_startup_config_round_trip(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("debug-args"), app_config={"current": [1, 2]}, args=["foo", "3"])
        assert await collect(inst.output()) == b'{"first_arg":"foo","second_arg":"3"}'
        assert await inst.wait() == 0
        # E2E-010 TC-021: the host learns appConfig/args from the PING payload
        assert inst.ping is not None
        assert inst.ping["payload"]["appConfig"] == {"current": [1, 2]}
        assert inst.ping["payload"]["args"] == ["foo", "3"]
        assert inst.app_config == {"current": [1, 2]} and inst.args == ["foo", "3"]


async def test_tc005_kill_and_tc009_default_health(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("events"))
        await inst.wait_running()
        health = await inst.health()
        assert health["healthy"] is True and health["processId"] == inst.pid
        assert set(health) == {"healthy", "processId"}  # the runner sends {healthy} only
        await inst.kill()
        with anyio.fail_after(10):
            assert await inst.wait() == 137
        assert inst.status == "completed"


async def test_tc008_stop_handler_runs_before_shutdown(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("stop-handler"))
        out = inst.stdout()
        await read_until(out, b"started\n")
        assert await inst.stop(2000, False) is True  # SEQUENCE_STOPPED, then KILL at the timeout
        assert await inst.wait() == 138
        assert inst.status == "completed"
        assert (await collect(out)) == b"Cleaning up... Cleanup done.\n"
        assert inst.sequence_error is None


async def test_tc012_events_both_ways(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("events"))
        await inst.wait_running()
        async with anyio.create_task_group() as tg:
            got: list[object] = []

            async def wait_reply() -> None:
                got.append(await inst.once("test-response"))

            tg.start_soon(wait_reply)
            await anyio.sleep(0.05)
            await inst.send_event("test-event", "foo")
        assert got == ["reply to foo"]
        await inst.send_event("ping")  # no message: the handler gets None
        assert await inst.once("pong") == "reply to None"
        await inst.kill()
        assert await inst.wait() == 137


# -- E2E-014 (python) ------------------------------------------------------------------------------


async def test_tc003_exception_appears_on_stderr(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("exception-test"))
        stderr = await collect(inst.stderr())
        assert b"TestException: This exception should appear on stderr" in stderr
        assert await inst.wait() == 23
        # and on the runner's real stderr, which STH keeps as the crash log (as STH-Py's runner does)
        await wait_for(lambda: b"runner: Sequence failed during execution: TestException" in inst.crash_log)
        crash_log = bytes(inst.crash_log)
        assert b"Traceback" in crash_log
        assert b"TestException: This exception should appear on stderr" in crash_log
        assert inst.status == "errored"
        error = inst.reports[STHCode.ERROR]
        assert error["exitCode"] == error["errorCode"] == 23
        assert "TestException" in error["message"]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("text/plain", b"4,8,5,"), ("application/octet-stream", b"20,")],
)
async def test_tc006_tc007_text_split_into_lines_binary_not(
    tmp_path: Path, content_type: str, expected: bytes
) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("chunk-lengths"))
        await inst.send_input("foo\nbar baz\nżółw\n".encode(), content_type)
        await inst.end_input()
        assert await collect(inst.output()) == expected
        assert await inst.wait() == 0


async def test_tc010_health_check_override(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("unhealthy"))
        with anyio.fail_after(10):
            while (await inst.health())["healthy"] is not False:
                await anyio.sleep(0.1)
        await inst.kill()
        assert await inst.wait() == 137


async def test_tc013_context_logger_reaches_log(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("logs-test"))
        log = inst.log()
        text = await read_until(log, b"Debug log message")
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert any(r["msg"] == "Debug log message" and r["level"] == "DEBUG" for r in records)
        await inst.kill()
        assert await inst.wait() == 137


async def test_tc015_async_generator(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("gen-async"))
        await inst.send_input(b"1")
        await inst.end_input()
        assert await collect(inst.output()) == b"saved to db: 1"
        assert await inst.wait() == 0


async def test_tc011_tc014_topics_producer_to_consumer(tmp_path: Path) -> None:
    """The host routes a topic only after a PANG with a content type; the routed input has no header block."""
    async with new_host(tmp_path) as host:
        producer = await host.start(seq("topic-producer"), output_topic="names3")
        consumer = await host.start(seq("topic-consumer"), input_topic="names3")
        await consumer.wait_running()
        await wait_for_pang(consumer, "requires")
        # STH's first PANG right after PONG, then the Sequence's requires once it is loaded
        assert consumer.pangs == [{"requires": "", "contentType": ""}, {"requires": "names", "contentType": "text/plain"}]
        assert consumer.input_from_topic  # STH's dispatcher: raw topic data, no header block
        data = await collect(producer.output())  # the topic, as STH's topic router would carry it
        assert data == b"Alice\nBob\nCarol\n"
        await wait_for_pang(producer, "provides")
        assert {"provides": "names", "contentType": "text/plain", "outputEncoding": None} in producer.pangs
        await consumer.send_input(data)
        await consumer.end_input()
        assert await collect(consumer.output()) == b"Got: Alice\nGot: Bob\nGot: Carol\n"
        assert await producer.wait() == 0
        assert await consumer.wait() == 0
    # STH's dispatcher would have routed "names3" into the consumer once: no doubled topic data
    assert (consumer.topic_routings, producer.topic_routings) == (1, 0)
    assert producer.pangs[0] == {"requires": "", "contentType": ""}


async def test_input_topic_without_declaration_is_announced_with_a_content_type(tmp_path: Path) -> None:
    """--input-topic for a Sequence without `requires` (STH-Py sent contentType '' and got no data)."""
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("hello"), input_topic="names4")
        await wait_for_pang(inst, "contentType")  # running at the first PANG; routed at this one
        assert inst.pangs == [{"requires": "", "contentType": ""}, {"requires": "names4", "contentType": "text/plain"}]
        await inst.send_input(b"topic\n")  # no header block: the topic feeds IN raw
        await inst.end_input()
        assert await collect(inst.output()) == b"Hello topic!\n"
        assert await inst.wait() == 0
    assert inst.topic_routings == 1


async def wait_for_pang(inst: object, key: str) -> None:
    with anyio.fail_after(10):
        while not any(p.get(key) for p in inst.pangs):  # type: ignore[attr-defined]
            await anyio.sleep(0.02)
