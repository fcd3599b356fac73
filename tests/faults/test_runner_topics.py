"""Issue 11 items 1 and 2: PANG carries each fact once, and topics set at run time as attributes
of the run function are announced. Real runners, over STH's protocol (sth_host.STHHost,
which records every PANG) and over protocol v1 (the test host).

STH's hub remembers ``requires`` from the first PANG that names it and (re)routes that topic
into the Instance on *every* PANG with a content type (reference §10): the test host's ``topic_routings`` counts
what such a hub would do with the PANGs a runner sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_fault_helpers import SAMPLES, TestHost, package_dir, sequence_file
from test_sth_runner_support import collect, new_host

from runner.protocol import Channel, Code

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_topic_consumer_gets_its_topic_routed_once(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(SAMPLES / "topic-consumer")
        await inst.send_input(b"Alice\nBob\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"Got: Alice\nGot: Bob\n"
        assert await inst.wait() == 0
    # STH's first PANG right after PONG (no content type: nothing routed), then the requires once
    assert inst.pangs == [{"requires": "", "contentType": ""}, {"requires": "names", "contentType": "text/plain"}]
    assert inst.topic_routings == 1  # was 2: a second PANG {provides: "", contentType} re-routed it


async def test_requires_set_on_the_run_function_at_run_time_is_announced_once(tmp_path: Path) -> None:
    pkg = package_dir(tmp_path, """
        def run(context, input):
            run.requires = "names"
            run.contentType = "text/plain"
            run.provides = "greetings"
            return input
    """)
    async with new_host(tmp_path) as host:
        inst = await host.start(pkg)
        await inst.send_input(b"x\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"x\n"
        assert await inst.wait() == 0
    assert inst.pangs == [{"requires": "", "contentType": ""},
                          {"requires": "names", "contentType": "text/plain"},
                          {"provides": "greetings", "contentType": "text/plain", "outputEncoding": None}]
    assert inst.requires == "names" and inst.provides == "greetings"


async def test_provides_set_by_an_async_generator_body_is_announced(tmp_path: Path) -> None:
    pkg = package_dir(tmp_path, """
        async def run(context, input):
            run.provides = {"provides": "late", "contentType": "application/x-ndjson"}
            yield {"n": 1}
    """)
    async with new_host(tmp_path) as host:
        inst = await host.start(pkg)
        await inst.end_input()
        await collect(inst.output())
        assert await inst.wait() == 0
    # the content type is the one OUT was already encoded with when the body ran
    assert inst.pangs == [{"requires": "", "contentType": ""},
                          {"provides": "late", "contentType": "text/plain", "outputEncoding": None}]


def test_function_attributes_at_import_are_the_first_pang_and_the_input_type(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
        async def run(context, input):
            async for item in input:
                yield f"{item['n'] * 2}\\n"

        run.requires = "numbers"
        run.contentType = "application/x-ndjson"
    """)
    with TestHost(path) as host:
        host.send_data(Channel.IN, b'{"n": 1}\n{"n": 21}\n')
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
        assert bytes(host.data[Channel.OUT]) == b"2\n42\n"  # ndjson by the declaration, no INPUT_CONTENT_TYPE
    pangs = host.messages(Code.PANG)
    assert pangs[0] == {"requires": "numbers", "contentType": "application/x-ndjson"}
    assert [p for p in pangs if "requires" in p] == [pangs[0]]  # never repeated
    assert [{k: v for k, v in p.items() if k != "outputEncoding"} for p in pangs[1:]] == [
        {"provides": "", "contentType": "text/plain"}]
