"""stdio, heartbeat and flow control of real runner processes."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from testhost import SAMPLES, TestHost

from runner.protocol import Channel, Code, Monitoring, Pang

pytestmark = pytest.mark.timeout(60)


def sequence(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent(code))
    return path


def test_print_fd_writes_and_child_processes_reach_stdout(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import os, subprocess, sys

        async def run(context, input):
            print("from print")
            os.write(1, b"from fd 1\\n")
            os.system("echo from os.system")
            subprocess.run(["echo", "from subprocess"], check=True)
            sys.stderr.write("to stderr\\n")
            os.write(2, b"fd 2\\n")
            subprocess.run("echo child stderr >&2", shell=True, check=True)
    """)
    with TestHost(path) as host:
        assert host.finish()[0] == 0, host.summary()
        out = host.text(Channel.STDOUT)
        for line in ("from print", "from fd 1", "from os.system", "from subprocess"):
            assert line + "\n" in out
        err = host.text(Channel.STDERR)
        for line in ("to stderr", "fd 2", "child stderr"):
            assert line + "\n" in err


def test_print_arrives_promptly(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import asyncio

        async def run(context, input):
            print("first")
            await asyncio.sleep(30)
    """)
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"first\n", timeout=10)
        host.send(Code.KILL)
        assert host.finish()[0] == 137


def test_stdin_async_iteration() -> None:
    with TestHost(SAMPLES / "stdinout") as host:
        host.wait_message(Code.PANG)
        host.send_data(Channel.STDIN, b"one\ntwo\n")
        host.wait_data(Channel.STDOUT, b"Got on stdin: two\n")
        host.send_data(Channel.STDIN, b"three\n")
        host.send_end(Channel.STDIN)
        assert host.finish()[0] == 0
        assert host.text(Channel.STDOUT) == "Got on stdin: one\nGot on stdin: two\nGot on stdin: three\n"


def test_stdin_sync_read_readline_iteration(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import sys

        def run(context, input):
            first = sys.stdin.readline()
            rest = list(sys.stdin)
            return f"{first!r} {rest!r}\\n"
    """)
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send_data(Channel.STDIN, "a\nżb\nc".encode())
        host.send_end(Channel.STDIN)
        assert host.finish()[0] == 0, host.summary()
        assert host.text(Channel.OUT) == "'a\\n' ['żb\\n', 'c']\n"


def test_heartbeat_has_stats_and_follows_rate() -> None:
    with TestHost(SAMPLES / "hello") as host:
        host.wait_until(lambda: any("loopLagMs" in b["stats"] for b in host.messages(Code.MONITORING)),
                        what="a heartbeat from the running loop")
        beat = next(b for b in host.messages(Code.MONITORING) if "loopLagMs" in b["stats"])
        assert beat["healthy"] is True
        stats = beat["stats"]
        assert stats["rss"] > 0 and "cpu" in stats and stats["loopLagMs"] >= 0
        assert {"stdout", "stderr", "out", "log", "in"} <= set(stats["channels"])
        assert set(stats["channels"]["out"]) == {"bytes", "items"}
        host.send(Code.MONITORING_RATE, {"monitoringRate": 20})
        count = len(host.messages(Code.MONITORING))
        started = time.monotonic()
        host.wait_message(Code.MONITORING, count=count + 10, timeout=10)
        assert time.monotonic() - started < 3  # 10 beats at 20/s, not at 1/s
        host.send(Code.MONITORING_RATE, {"monitoringRate": 0})
        time.sleep(0.3)
        count = len(host.messages(Code.MONITORING))
        time.sleep(0.6)
        assert len(host.messages(Code.MONITORING)) <= count + 1
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0


def test_heartbeats_during_a_long_sequence_import(tmp_path: Path) -> None:
    """The heartbeat starts right after the handshake: a Sequence whose module takes 2.5 s to
    import still shows a live runner, with no verdict yet (healthy false, stats.starting; no loop
    yet: no loopLagMs)."""
    path = sequence(tmp_path, """
        import time
        time.sleep(2.5)

        async def run(context, input):
            yield "imported\\n"
    """)
    with TestHost(path) as host:
        host.wait_until(lambda: any("provides" in m for m in host.messages(Code.PANG)), what="PANG {provides}")
        before: list[Monitoring] = []
        for event in list(host.events):
            if isinstance(event, Pang) and event.provides is not None:
                break
            if isinstance(event, Monitoring):
                before.append(event)
        assert len(before) >= 2, host.summary()
        assert all(b.healthy is False and (b.stats or {}).get("starting") is True for b in before)
        assert all("loopLagMs" not in (b.stats or {}) for b in before)
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0
        assert bytes(host.data[Channel.OUT]) == b"imported\n"


def test_unhealthy_check_reported() -> None:
    with TestHost(SAMPLES / "unhealthy") as host:
        host.wait_message(Code.PANG)
        host.send(Code.MONITORING_RATE, {"monitoringRate": 10})
        host.wait_until(lambda: any(not b["healthy"] for b in host.messages(Code.MONITORING)), what="unhealthy")
        host.send(Code.KILL)
        assert host.finish()[0] == 137


def test_heartbeat_continues_while_loop_is_blocked() -> None:
    with TestHost(SAMPLES / "cpu-bound") as host:
        host.wait_data(Channel.STDOUT, b"Spinning.\n")
        host.send(Code.MONITORING_RATE, {"monitoringRate": 5})
        host.wait_until(lambda: sum(1 for b in host.messages(Code.MONITORING) if not b["healthy"]) >= 3,
                        what="three unhealthy heartbeats")
        last = [b for b in host.messages(Code.MONITORING) if not b["healthy"]][-1]
        assert last["stats"]["loopLagMs"] > 100
        host.send(Code.KILL)
        assert host.finish()[0] == 137


def test_host_not_reading_stdout_blocks_only_stdout(tmp_path: Path) -> None:
    """STDOUT credit runs out (bounded memory); events and OUT keep flowing; nothing is lost."""
    path = sequence(tmp_path, """
        import asyncio, threading

        def spam():
            for i in range(20000):
                print(f"line {i:05d} " + "x" * 90)
            print("spam done", flush=True)

        async def run(context, input):
            threading.Thread(target=spam, daemon=True).start()
            context.on("ping", lambda m: context.emit("pong", m))
            n = 0
            async for line in input:
                n += 1
                yield f"out {n}\\n"
    """)
    with TestHost(path, consume=(Channel.STDERR, Channel.OUT, Channel.LOG), window=64 * 1024) as host:
        host.wait_message(Code.PANG)
        host.wait_until(lambda: len(host.data[Channel.STDOUT]) >= 64 * 1024, what="stdout window filled")
        time.sleep(0.3)
        assert len(host.data[Channel.STDOUT]) <= 64 * 1024  # credit is respected
        for i in range(3):
            host.send(Code.EVENT, {"eventName": "ping", "message": i})
            assert host.wait_message(Code.EVENT, count=i + 1, timeout=10)["message"] == i
        host.send_data(Channel.IN, b"a\nb\n")
        host.wait_data(Channel.OUT, b"out 2\n", timeout=10)
        host.start_consuming(Channel.STDOUT)
        host.wait_data(Channel.STDOUT, b"spam done\n", timeout=30)
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0
        lines = host.text(Channel.STDOUT).splitlines()
        assert len(lines) == 20001
        assert lines[12345].startswith("line 12345 ")


def test_host_not_reading_log_never_holds_up_control(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import asyncio, threading

        def chatter(context):
            while True:
                context.logger.info("chatter " + "y" * 200)

        async def run(context, input):
            threading.Thread(target=chatter, args=(context,), daemon=True).start()
            context.on("ping", lambda m: context.emit("pong", m))
            while True:
                await asyncio.sleep(0.05)
    """)
    with TestHost(path, consume=(Channel.STDOUT, Channel.STDERR, Channel.OUT), window=32 * 1024) as host:
        host.wait_until(lambda: len(host.data[Channel.LOG]) >= 32 * 1024, what="LOG window filled")
        host.send(Code.MONITORING_RATE, {"monitoringRate": 10})
        count = len(host.messages(Code.MONITORING))
        host.wait_message(Code.MONITORING, count=count + 3, timeout=10)
        host.send(Code.EVENT, {"eventName": "ping", "message": 1})
        assert host.wait_message(Code.EVENT, timeout=10)["message"] == 1
        host.send(Code.STOP, {"timeout": 200, "canCallKeepalive": False})
        host.wait_message(Code.SEQUENCE_STOPPED)
        host.send(Code.KILL)
        assert host.finish(15)[0] == 138
        assert len(host.data[Channel.LOG]) <= 32 * 1024
