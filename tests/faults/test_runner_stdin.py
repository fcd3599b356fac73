"""Issue 11 item 3: ``sys.stdin`` can be awaited and iterated asynchronously, as STH gives it, as
well as read with the plain file API; waiting on it never blocks the event loop, and a stop still
works while the Sequence waits. Real runners, plus the reader itself on a loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from runner_fault_helpers import TestHost, package_dir, sequence_file
from test_sth_runner_support import collect, new_host

from runner.protocol import Channel, Code
from runner.stdin import StdinBuffer, StdinText

pytestmark = pytest.mark.timeout(60)


def test_await_read_as_sths_samples_do(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
        import sys

        async def run(context, input):
            name = (await sys.stdin.read()).strip()
            yield f"Hello {name}!\\n"
    """)
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        host.send_data(Channel.STDIN, "Zoë\n".encode())
        host.send_end(Channel.STDIN)
        assert host.finish()[0] == 0, host.summary()
    assert bytes(host.data[Channel.OUT]).decode() == "Hello Zoë!\n"


def test_waiting_on_stdin_leaves_the_loop_free_and_a_stop_works(tmp_path: Path) -> None:
    """While run() awaits stdin, events are answered, heartbeats say healthy, and STOP runs the
    stop handler (SEQUENCE_STOPPED, then KILL: 138)."""
    path = sequence_file(tmp_path, """
        import sys

        async def run(context, input):
            context.on("ping", lambda message: context.emit("pong", message))
            context.set_stop_handler(lambda timeout, can_keep_alive: print("stop handler ran", flush=True))
            print("waiting", flush=True)
            line = await sys.stdin.readline()
            yield f"never: {line}"
    """)
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"waiting\n")
        host.send(Code.MONITORING_RATE, {"monitoringRate": 20})
        host.send(Code.EVENT, {"eventName": "ping", "message": 7})
        host.wait_until(lambda: any(m.get("eventName") == "pong" for m in host.messages(Code.EVENT)), what="pong")
        host.wait_until(lambda: sum(b["healthy"] and "loopLagMs" in b["stats"]
                                    for b in host.messages(Code.MONITORING)) >= 3, what="healthy beats")
        host.send(Code.STOP, {"timeout": 5000, "canCallKeepalive": False})
        host.wait_message(Code.SEQUENCE_STOPPED)
        assert "stop handler ran" in host.text(Channel.STDOUT)
        host.send(Code.KILL)
        assert host.finish()[0] == 138
    assert bytes(host.data[Channel.OUT]) == b""


def test_the_plain_file_api_still_works_in_a_sync_run(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
        import sys

        def run(context, input):
            first = sys.stdin.readline()
            two = sys.stdin.read(2)
            rest = list(sys.stdin)
            data = sys.stdin.buffer.read()
            return f"{first!r} {two!r} {rest!r} {data!r} {sys.stdin.read()!r}\\n"
    """)
    with TestHost(path) as host:
        host.send_data(Channel.STDIN, b"one\r\ntwo\nthree\n")
        host.send_end(Channel.STDIN)
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
    assert bytes(host.data[Channel.OUT]) == b"'one\\n' 'tw' ['o\\n', 'three\\n'] b'' ''\n"


def test_async_forms_readline_readlines_and_async_for(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
        import sys

        async def run(context, input):
            first = await sys.stdin.readline()
            second = await sys.stdin.read(3)
            lines = [line async for line in sys.stdin]
            yield f"{first!r} {second!r} {lines!r} {(await sys.stdin.readlines())!r}\\n"
    """)
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        for part in (b"al", b"pha\nbe", b"ta\ngamma\n", "δ\n".encode()):
            host.send_data(Channel.STDIN, part)
            time.sleep(0.05)
        host.send_end(Channel.STDIN)
        assert host.finish()[0] == 0, host.summary()
    assert bytes(host.data[Channel.OUT]).decode() == "'alpha\\n' 'bet' ['a\\n', 'gamma\\n', 'δ\\n'] []\n"


@pytest.mark.anyio
async def test_await_stdin_read_under_sth(tmp_path: Path) -> None:
    pkg = package_dir(tmp_path, """
        import sys

        async def run(context, input):
            name = (await sys.stdin.read()).strip()
            print(f"Hello {name}!")
    """)
    async with new_host(tmp_path) as host:
        inst = await host.start(pkg)
        await inst.send_stdin(b"python runner\n")
        await inst.end_stdin()
        await inst.end_input()
        assert await collect(inst.stdout()) == b"Hello python runner!\n"
        assert await inst.wait() == 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the reader itself -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_cancelled_wait_loses_no_input() -> None:
    buffer = StdinBuffer(lambda n: None)
    stdin = StdinText(buffer)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stdin.areadline(), 0.05)
    buffer.feed([b"kept\n"])
    buffer.end()
    assert await stdin.readline() == "kept\n"
    assert await stdin.read() == ""


@pytest.mark.anyio
async def test_the_loop_runs_while_a_coroutine_awaits_stdin() -> None:
    buffer = StdinBuffer(lambda n: None)
    stdin = StdinText(buffer)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    threading.Timer(0.3, lambda: (buffer.feed([b"late\n"]), buffer.end())).start()
    assert await stdin.read() == "late\n"
    task.cancel()
    assert ticks >= 10  # about 30 in 0.3 s: the loop was never blocked


def test_sync_read_from_another_thread_and_consumed_bytes_are_counted() -> None:
    taken: list[int] = []
    buffer = StdinBuffer(taken.append)
    stdin = StdinText(buffer)
    threading.Timer(0.05, lambda: (buffer.feed([b"a", "ż\n".encode()]), buffer.end())).start()
    assert stdin.read() == "aż\n"
    assert sum(taken) == 4
