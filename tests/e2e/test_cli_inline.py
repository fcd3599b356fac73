"""``python -m runner run --inline``: the Sequence in the CLI process, same behaviour."""

from __future__ import annotations

import signal

import pytest
from cli_helpers import run_cli, sample


def test_hello_inline():
    proc = run_cli("run", "--inline", sample("hello"), input=b"python runner\nworld\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello python runner!\nHello world!\n"
    assert proc.stderr == b""


def test_counter_inline_with_args():
    proc = run_cli("run", sample("counter"), "--inline", "3", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"1\n2\n3\n"


def test_binary_and_ndjson_inline():
    data = bytes(range(256)) * 1000
    proc = run_cli("run", "--inline", sample("binary-passthrough"), "-t", "application/octet-stream", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    proc = run_cli("run", "--inline", sample("ndjson-transform"), "-t", "application/x-ndjson", input=b"7\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b'{"value": 7, "seen": true, "n": 1}\n'


def test_failing_inline_23():
    proc = run_cli("run", "--inline", sample("failing"))
    assert proc.returncode == 23
    assert proc.stdout == b"about to fail\n"
    assert b"[stderr] sequence_failing.TestException: This exception should appear on stderr" in proc.stderr \
        or b"TestException: This exception should appear on stderr" in proc.stderr


def test_print_goes_to_stderr_not_output(tmp_path):
    seq = tmp_path / "seq.py"
    seq.write_text(
        "import os, sys\n"
        "async def run(context, input):\n"
        "    print('printed')\n"
        "    os.write(1, b'raw fd 1\\n')\n"
        "    print('err', file=sys.stderr)\n"
        "    context.emit('e', 1)\n"
        "    context.logger.info('logged')\n"
        "    yield 'the output\\n'\n"
    )
    proc = run_cli("run", "--inline", str(seq))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"the output\n"
    lines = proc.stderr.decode().splitlines()
    assert "[stdout] printed" in lines
    assert "raw fd 1" in lines  # fd 1 points at stderr inline
    assert "[stderr] err" in lines
    assert "[event e] 1" in lines
    assert "[log INFO] logged" in lines


def test_stdinout_inline(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"python runner\n")
    proc = run_cli("run", "--inline", sample("stdinout"), "--stdin", str(lines))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"[stdout] Got on stdin: python runner\n"


def test_bad_path_and_syntax_error_inline(tmp_path):
    proc = run_cli("run", "--inline", "no/such/sequence")
    assert proc.returncode == 21 and b"no/such/sequence" in proc.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("def run(context, input)\n")
    proc = run_cli("run", "--inline", str(bad))
    assert proc.returncode == 22 and b"SyntaxError" in proc.stderr


def test_events_inline_then_sigint(running):
    r = running("run", "--inline", sample("events"), "--event", "ping=hi")
    r.wait_for('[event pong] "reply to hi"')
    r.signal(signal.SIGINT)
    assert r.finish() == 138


def test_keepalive_inline(running):
    r = running("run", "--inline", "-v", sample("stop-keepalive"), "SEND_KEEPALIVE")
    r.wait_for("[run] the Sequence is running")
    r.signal(signal.SIGINT)
    r.wait_for("asked to keep running (keepalive 3000 ms)")  # after ALIVE, not just the print before it
    r.signal(signal.SIGINT)
    assert r.finish() == 138
    assert "[stdout] Cleanup done." in r.stderr.splitlines()


def test_cpu_bound_inline_killed_by_second_sigint(running):
    r = running("run", "--inline", sample("cpu-bound"), "--stop-timeout", "60000")
    r.wait_for("[stdout] Spinning.")
    r.signal(signal.SIGINT)
    r.wait_for("SIGINT: stopping")
    r.signal(signal.SIGINT)
    assert r.finish() == 138


def test_cpu_bound_inline_stop_timeout(running):
    r = running("run", "--inline", sample("cpu-bound"), "--stop-timeout", "300")
    r.wait_for("[stdout] Spinning.")
    r.signal(signal.SIGTERM)
    assert r.finish() == 138


def test_breakpoint_inline_without_terminal_does_not_hang(tmp_path):
    # No terminal (CI): the breakpoint is skipped with a note instead of pdb failing on EOF.
    seq = tmp_path / "seq.py"
    seq.write_text("async def run(context, input):\n    breakpoint()\n    yield 'after\\n'\n")
    proc = run_cli("run", "--inline", str(seq), timeout=30)
    assert proc.stdout == b"after\n"
    assert proc.returncode == 0, proc.stderr
    assert b"breakpoint() ignored: no terminal" in proc.stderr


AFTER_THE_RUN = """
import asyncio, atexit, os, signal, threading, time

async def run(context, input):
    loop = asyncio.get_running_loop()

    def after_the_run():
        while not loop.is_closed():
            time.sleep(0.01)
        {late}
        time.sleep(0.2)  # the main thread, joining us, handles a signal meanwhile

    thread = threading.Thread(target=after_the_run, daemon=True)
    thread.start()
    atexit.register(thread.join, 10)  # the CLI has returned: its loop is closed
    return "done\\n"
"""


@pytest.mark.parametrize("late", ["context.end()", "os.kill(os.getpid(), signal.SIGTERM)"])
def test_inline_end_or_signal_after_the_loop_closed_changes_nothing(tmp_path, late):
    """The two hops from other threads (or a signal handler) to inline's loop drop the work once
    the run is over, as the runner's LoopBridge does, instead of raising 'Event loop is closed'."""
    seq = tmp_path / "late.py"
    seq.write_text(AFTER_THE_RUN.replace("{late}", late))
    proc = run_cli("run", "--inline", str(seq))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"done\n"
    assert b"Event loop is closed" not in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr
    assert b"stopping the Sequence" not in proc.stderr, proc.stderr  # no stop begun: the run is over
