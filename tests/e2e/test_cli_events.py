"""Events during a run (issue 14 item 11): ``--events-from FILE|FIFO|-`` sends NAME=JSON lines to
the running Sequence, and the events it emits are printed as they happen (child and inline)."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
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


def test_a_fifo_writer_right_after_another_loses_nothing(tmp_path, monkeypatch):
    """The reader never closes the FIFO between writers: a writer that opened it while the reader
    was closing it after the previous one (here a reader thread slow to close, as on a busy machine)
    wrote into a pipe that was then discarded, and its lines were lost."""
    import asyncio
    import builtins

    from runner.cli import events_in

    class SlowToClose:
        def __init__(self, f):
            self.f = f

        def __iter__(self):
            return iter(self.f)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            time.sleep(0.3)  # the reader thread waits for a core between a writer's end and close()
            self.f.close()

    def slow_open(*args, **kwargs):
        return SlowToClose(builtins.open(*args, **kwargs))

    monkeypatch.setattr(events_in, "open", slow_open, raising=False)
    fifo = tmp_path / "events"
    os.mkfifo(fifo)

    async def two_writers() -> list[bytes]:
        lines: list[bytes] = []
        source = events_in.source_lines(str(fifo))
        first = asyncio.ensure_future(source.__anext__())  # the reader starts with the iteration
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, write_fifo, fifo, "one\n")
        lines.append(await asyncio.wait_for(first, 30))
        await asyncio.sleep(0.1)  # the first writer has closed: a reader that follows writers closes now
        await loop.run_in_executor(None, write_fifo, fifo, "two\n")
        lines.append(await asyncio.wait_for(source.__anext__(), 10))
        return lines

    assert asyncio.run(two_writers()) == [b"one\n", b"two\n"]
    # The reader thread still waits for lines: one more, with the loop gone, ends it (and its FIFO ends).
    readers = [t for t in threading.enumerate() if t.name == "runner-cli-events"]
    write_fifo(fifo, "bye\n")
    for reader in readers:
        reader.join(10)
        assert not reader.is_alive()


def test_events_from_stdin_needs_the_input_elsewhere(tmp_path):
    proc = run_cli("run", sample("events"), "--events-from", "-")
    assert proc.returncode == 2
    assert b"--events-from - reads this process's stdin, which already feeds the input" in proc.stderr
    proc = run_cli("run", sample("events"), "--events-from", str(tmp_path / "missing"))
    assert proc.returncode == 2 and b"missing: no such file or FIFO" in proc.stderr
