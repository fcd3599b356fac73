"""Events during a run (issue 14 item 11): ``--events-from FILE|FIFO|-`` sends NAME=JSON lines to
the running Sequence, and the events it emits are printed as they happen (child and inline)."""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import pytest
from cli_helpers import run_cli, sample

MODES = pytest.mark.parametrize("mode", [(), ("--inline",)], ids=["child", "inline"])

COLLECTOR = """\
import asyncio
import json


async def run(context, input):
    got = []
    done = asyncio.Event()

    def on_note(message):
        got.append(message)
        context.emit("seen", message)
        if len(got) == 3:
            done.set()

    context.on("note", on_note)
    await done.wait()
    return [json.dumps(got) + "\\n"]
"""


def write_fifo(path, text: str, timeout: float = 30.0) -> None:
    """One writer: open (once the command reads the FIFO), write, close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # no reader yet
    try:
        os.set_blocking(fd, True)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@MODES
def test_events_from_a_fifo_across_writers_with_replies_as_they_happen(mode, running, tmp_path):
    fifo = tmp_path / "events"
    os.mkfifo(fifo)
    run = running("run", *mode, sample("events"), "--events-from", str(fifo))
    write_fifo(fifo, 'ping="one"\n')
    run.wait_for('[event pong] "reply to one"')  # printed while the Sequence runs, before the next writer
    write_fifo(fifo, '# a comment\n\n=no name\nping={"n": 2}\n')
    run.wait_for('[event pong] "reply to {\'n\': 2}"')
    assert any("expected NAME=JSON, got '=no name'; skipped" in line
               for line in run.stderr_lines), run.stderr
    run.signal(signal.SIGINT)
    assert run.finish() == 138
    pongs = [line for line in run.stderr_lines if line.startswith("[event pong]")]
    assert len(pongs) == 2, run.stderr


@MODES
def test_events_from_a_file_and_from_stdin_while_the_input_comes_from_a_file(mode, tmp_path):
    seq = tmp_path / "collector.py"
    seq.write_text(COLLECTOR)
    (tmp_path / "input.txt").write_text("")
    (tmp_path / "events.txt").write_text('note="from the file"\n')
    proc = run_cli("run", *mode, str(seq), "--input", str(tmp_path / "input.txt"),
                   "--events-from", str(tmp_path / "events.txt"), "--events-from", "-",
                   input=b'note=1\nnote={"last": true}\n')
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, ["from the file", 1, {"last": True}]))
    seen = [line for line in proc.stderr.decode().splitlines() if line.startswith("[event seen]")]
    assert len(seen) == 3, proc.stderr
    assert seen.index('[event seen] 1') < seen.index('[event seen] {"last": true}')  # in the order sent


def test_events_from_stdin_needs_the_input_elsewhere(tmp_path):
    proc = run_cli("run", sample("events"), "--events-from", "-")
    assert proc.returncode == 2
    assert b"--events-from - reads this process's stdin, which already feeds the input" in proc.stderr
    proc = run_cli("run", sample("events"), "--events-from", str(tmp_path / "missing"))
    assert proc.returncode == 2 and b"missing: no such file or FIFO" in proc.stderr
