"""Stop, keepalive, kill, host EOF, events and protocol errors against real runner processes."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

import pytest
from testhost import SAMPLES, TestHost

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(60)


def sequence(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent(code))
    return path


STOPPABLE = """
    import asyncio, sys

    async def run(context, input):
        async def on_stop(timeout, can_keep_alive):
            print(f"stopping {timeout} {can_keep_alive}", flush=True)
        context.set_stop_handler(on_stop)
        print("started", flush=True)
        while True:
            await asyncio.sleep(0.05)
"""


def test_stop_runs_handler_then_kill_exits_138(tmp_path: Path) -> None:
    with TestHost(sequence(tmp_path, STOPPABLE)) as host:
        host.wait_data(Channel.STDOUT, b"started\n")
        host.send(Code.STOP, {"timeout": 3000, "canCallKeepalive": False})
        stopped = host.wait_message(Code.SEQUENCE_STOPPED)
        assert stopped["sequenceError"] is None
        host.wait_data(Channel.STDOUT, b"stopping 3.0 False\n")
        assert host.proc.poll() is None  # waits for KILL
        host.send(Code.KILL)
        code, _ = host.finish()
        assert code == 138
        assert host.messages(Code.EXITING)[-1]["exitCode"] == 138


def test_run_ending_because_of_stop_waits_for_kill(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import asyncio

        async def run(context, input):
            stopping = asyncio.Event()
            context.set_stop_handler(lambda: stopping.set())
            yield "working\\n"
            await stopping.wait()
            yield "bye\\n"
    """)
    with TestHost(path) as host:
        host.wait_data(Channel.OUT, b"working\n")
        host.send(Code.STOP, {"timeout": 3000, "canCallKeepalive": False})
        host.wait_message(Code.SEQUENCE_STOPPED)
        host.wait_until(lambda: Channel.OUT in host.ended, what="END OUT")
        assert bytes(host.data[Channel.OUT]) == b"working\nbye\n"
        time.sleep(0.3)
        assert host.proc.poll() is None and not host.messages(Code.SEQUENCE_COMPLETED)
        host.send(Code.KILL)
        assert host.finish()[0] == 138


def test_stop_handler_error_is_reported(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import asyncio

        async def run(context, input):
            def on_stop():
                raise RuntimeError("cannot stop nicely")
            context.set_stop_handler(on_stop)
            print("ready", flush=True)
            while True:
                await asyncio.sleep(0.05)
    """)
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"ready\n")
        host.send(Code.STOP, {"timeout": 3000, "canCallKeepalive": False})
        error = host.wait_message(Code.SEQUENCE_STOPPED)["sequenceError"]
        assert "cannot stop nicely" in error["message"] and "RuntimeError" in error["stack"]
        host.send(Code.KILL)
        assert host.finish()[0] == 138


def test_stop_with_keepalive_keeps_running(tmp_path: Path) -> None:
    with TestHost(SAMPLES / "stop-keepalive", args=["SEND_KEEPALIVE"]) as host:
        host.wait_running()  # run() has registered its stop handler
        # The handler must reach keep_alive() within the timeout, also on a loaded machine.
        timeout_s = 2.0
        sent = time.monotonic()
        host.send(Code.STOP, {"timeout": int(timeout_s * 1000), "canCallKeepalive": True})
        alive = host.wait_message(Code.ALIVE)
        assert alive["keepAlive"] == 3000
        time.sleep(max(0.0, sent + timeout_s + 0.5 - time.monotonic()))  # past the stop timeout
        assert host.proc.poll() is None
        assert not host.messages(Code.SEQUENCE_STOPPED)
        beats = len(host.messages(Code.MONITORING))
        host.wait_message(Code.MONITORING, count=beats + 1)
        # the second stop is not kept alive (a generous timeout: the handler's answer, not the deadline)
        host.send(Code.STOP, {"timeout": 20000, "canCallKeepalive": True})
        assert host.wait_message(Code.SEQUENCE_STOPPED).get("sequenceError") is None
        host.send(Code.KILL)
        assert host.finish()[0] == 138
        assert "Cleanup done." in host.text(Channel.STDOUT)


@pytest.mark.parametrize("stuck", ["time.sleep(30)", "while True: pass"])
def test_stop_deadline_with_stuck_handler_exits_138(tmp_path: Path, stuck: str) -> None:
    path = sequence(tmp_path, f"""
        import asyncio, time

        async def run(context, input):
            def on_stop():
                print("handler stuck", flush=True)
                {stuck}
            context.set_stop_handler(on_stop)
            print("ready", flush=True)
            while True:
                await asyncio.sleep(0.05)
    """)
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"ready\n")
        sent = time.monotonic()
        host.send(Code.STOP, {"timeout": 500, "canCallKeepalive": False})
        code, _ = host.finish(15)
        assert code == 138
        assert time.monotonic() - sent < 10
        error = host.messages(Code.SEQUENCE_STOPPED)[0]["sequenceError"]
        assert "did not finish" in error["message"]
        assert "handler stuck" in host.text(Channel.STDOUT)


def test_kill_of_cpu_bound_sequence_exits_137_and_flushes_stdout() -> None:
    with TestHost(SAMPLES / "cpu-bound") as host:
        host.wait_data(Channel.STDOUT, b"Spinning.\n")
        time.sleep(0.3)
        sent = time.monotonic()
        host.send(Code.KILL)
        code, _ = host.finish(15)
        assert code == 137
        assert time.monotonic() - sent < 5
        assert host.messages(Code.EXITING)[-1]["exitCode"] == 137


FLOOD_EVERY_CHANNEL = """
    import os, threading

    async def run(context, input):
        def forever(write):
            def loop():
                while True:
                    write()
            threading.Thread(target=loop, daemon=True).start()
        forever(lambda: print("o" * 1000))
        forever(lambda: os.write(2, b"e" * 4096))
        forever(lambda: context.logger.info("x" * 1000))
        while True:
            yield "y" * 65536
"""


def test_kill_with_every_outbound_channel_blocked_exits_well_under_a_second(tmp_path: Path) -> None:
    """A host that reads none of OUT, STDOUT, STDERR and LOG: the runner waits for the credit it
    withholds only within one exit budget (0.5 s), not per flush step (4 s before)."""
    with TestHost(sequence(tmp_path, FLOOD_EVERY_CHANNEL), consume=()) as host:
        window = host.conn.window
        host.wait_until(lambda: all(len(host.data[ch]) >= min(window, 32768)
                                    for ch in (Channel.OUT, Channel.STDOUT, Channel.STDERR, Channel.LOG)),
                        what="every channel's window used")
        time.sleep(0.5)  # every queue in front of the credit fills
        sent = time.monotonic()
        host.send(Code.KILL)
        code = host.wait_exit()
        waited = time.monotonic() - sent
        assert code == 137
        assert waited < 1.2, f"KILL took {waited:.2f} s with every channel blocked"
        host.wait_closed()
        assert host.messages(Code.EXITING)[-1]["exitCode"] == 137  # control is not held up by credit


def test_kill_sends_everything_the_host_can_take(tmp_path: Path) -> None:
    """Output queued when KILL comes goes out in full when the host reads (it only takes credit)."""
    path = sequence(tmp_path, """
        import os, sys

        async def run(context, input):
            sys.stdout.write("s" * 3_000_000 + "\\n")
            os.write(1, b"f" * 60_000)
            context.emit("queued", None)
            while True:
                pass
            yield
    """)
    with TestHost(path) as host:
        host.wait_message(Code.EVENT)
        host.send(Code.KILL)
        assert host.finish()[0] == 137
        out = host.text(Channel.STDOUT)
        assert out.count("s") == 3_000_000 and out.count("f") == 60_000


def test_kill_keeps_sending_while_the_host_reads_slowly(tmp_path: Path) -> None:
    """A host still granting credit (slowly, past the exit budget) gets all the output: only
    credit the host withholds ends the wait."""
    path = sequence(tmp_path, """
        import sys

        async def run(context, input):
            sys.stdout.write("s" * 1_000_000 + "\\n")
            context.emit("queued", None)
            while True:
                pass
            yield
    """)
    with TestHost(path, consume=(Channel.OUT, Channel.STDERR, Channel.LOG), window=65536) as host:
        host.wait_message(Code.EVENT)
        sent = time.monotonic()
        host.send(Code.KILL)
        granted = len(host.data[Channel.STDOUT])
        with host.lock:
            host.conn.consumed(Channel.STDOUT, granted)
        while host.proc.poll() is None and time.monotonic() - sent < 10:
            time.sleep(0.04)
            with host.lock:  # at most 64 KiB of credit every 40 ms: about 0.6 s for 1 MB
                step = min(65536, len(host.data[Channel.STDOUT]) - granted)
                if step > 0:
                    host.conn.consumed(Channel.STDOUT, step)
                    granted += step
                    host._flush_locked()
        assert host.finish()[0] == 137
        assert time.monotonic() - sent > 0.5  # the exit budget alone would have cut it short
        assert host.text(Channel.STDOUT).count("s") == 1_000_000


def test_stop_then_kill_while_the_loop_is_blocked_exits_138() -> None:
    with TestHost(SAMPLES / "cpu-bound") as host:
        host.wait_data(Channel.STDOUT, b"Spinning.\n")
        host.send(Code.STOP, {"timeout": 20000, "canCallKeepalive": False})
        time.sleep(0.2)
        sent = time.monotonic()
        host.send(Code.KILL)
        assert host.finish(15)[0] == 138
        assert time.monotonic() - sent < 5


def test_kill_runs_kill_handlers_and_flushes_unflushed_print(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    path = sequence(tmp_path, f"""
        import asyncio, sys

        async def run(context, input):
            context.add_kill_handler(lambda: open({str(marker)!r}, "w").write("yes"))
            sys.stdout.write("partial line without newline")
            print("done printing", flush=True)
            sys.stdout.write("tail")
            while True:
                await asyncio.sleep(0.05)
    """)
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"done printing\n")
        host.send(Code.KILL)
        assert host.finish()[0] == 137
        assert host.text(Channel.STDOUT).endswith("tail")
        assert marker.read_text() == "yes"


def test_host_eof_exits_137(tmp_path: Path) -> None:
    with TestHost(sequence(tmp_path, STOPPABLE)) as host:
        host.wait_data(Channel.STDOUT, b"started\n")
        host.close()
        assert host.wait_exit() == 137


def test_malformed_frame_from_host_exits_with_message(tmp_path: Path) -> None:
    with TestHost(sequence(tmp_path, STOPPABLE)) as host:
        host.wait_data(Channel.STDOUT, b"started\n")
        host.sock.sendall(b"\x94\x00\x00\x00")  # lead byte 0x94 is not a frame
        code, err = host.finish()
        assert code == 137
        assert "Malformed" in err or "malformed" in err or "frame" in err


def test_events_round_trip() -> None:
    with TestHost(SAMPLES / "events") as host:
        host.wait_message(Code.PANG, count=1)
        host.send(Code.EVENT, {"eventName": "test-event", "message": "foo"})
        reply = host.wait_message(Code.EVENT)
        assert reply == {"eventName": "test-response", "message": "reply to foo"}
        host.send(Code.EVENT, {"eventName": "ping", "message": {"n": 1}})
        assert host.wait_message(Code.EVENT, count=2) == {"eventName": "pong", "message": "reply to {'n': 1}"}
        assert any("Got 'ping'" in rec["msg"] and rec["from"] == "Sequence" for rec in host.log_records())
        host.send(Code.KILL)
        assert host.finish()[0] == 137


def test_end_sends_sequence_stopped_and_waits_for_kill(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        import asyncio

        async def run(context, input):
            context.end()
            await asyncio.sleep(0.2)
            yield "after end\\n"
    """)
    with TestHost(path) as host:
        assert host.wait_message(Code.SEQUENCE_STOPPED).get("sequenceError") is None
        host.wait_until(lambda: Channel.OUT in host.ended, what="END OUT")
        assert host.proc.poll() is None
        host.send(Code.KILL)
        assert host.finish()[0] == 137
        assert bytes(host.data[Channel.OUT]) == b"after end\n"


def test_sigterm_stops_gracefully(tmp_path: Path) -> None:
    with TestHost(sequence(tmp_path, STOPPABLE)) as host:
        host.wait_data(Channel.STDOUT, b"started\n")
        host.proc.send_signal(signal.SIGTERM)
        code, _ = host.finish()
        assert code == 138
        assert host.messages(Code.SEQUENCE_STOPPED)
        assert "stopping" in host.text(Channel.STDOUT)
