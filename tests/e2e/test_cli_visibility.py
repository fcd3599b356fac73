"""What ``run`` shows about a run (issue 14 item 10): the one-line summary at the end (with -v,
or when stderr is a terminal) and live stats (``--stats SECONDS``, SIGUSR1), in a runner child
and inline."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys

import pytest
from cli_helpers import REPO, cli_env, run_cli, sample

MODES = pytest.mark.parametrize("mode", [(), ("--inline",)], ids=["child", "inline"])
SUMMARY = re.compile(r"\[run\] done in \d+\.\d\d s; in: (?P<in>[^;]+); out: (?P<out>[^;]+); (?P<exit>exit .*)")
STATS = re.compile(r"\[stats\] rss \d+\.\d MiB, cpu \d+%, (loop lag \d+\.\d ms|loop not running), "
                   r"in \d+ items(/s)?, out \d+ items(/s| so far)")


def summary_of(stderr: bytes) -> re.Match[str]:
    lines = stderr.decode("utf-8", "replace").splitlines()
    assert lines, "no stderr at all"
    match = SUMMARY.fullmatch(lines[-1])
    assert match, f"the last stderr line is no summary: {lines}"
    return match


@MODES
def test_summary_with_verbose_counts_lines_and_bytes(mode):
    proc = run_cli("run", *mode, "-v", sample("hello"), input=b"a\nb\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello a!\nHello b!\n"
    got = summary_of(proc.stderr)
    assert got["in"] == "2 lines, 4 B" and got["out"] == "2 lines, 18 B"
    assert got["exit"] == "exit 0 (completed)"


@MODES
def test_summary_of_binary_data_and_of_a_failure(mode):
    data = os.urandom(3000)
    proc = run_cli("run", *mode, "-v", sample("binary-passthrough"), "-t", "application/octet-stream", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    got = summary_of(proc.stderr)
    assert got["in"] == "2.9 KiB" and got["out"] == "2.9 KiB"

    failed = run_cli("run", *mode, "-v", sample("failing"))
    assert failed.returncode == 23
    assert summary_of(failed.stderr)["exit"] == "exit 23 (the Sequence failed during execution)"


def test_no_summary_when_stderr_is_a_pipe_without_verbose():
    proc = run_cli("run", sample("hello"), input=b"a\n")
    assert proc.returncode == 0 and proc.stderr == b""


@MODES
def test_summary_when_stderr_is_a_terminal(mode, tmp_path):
    names = tmp_path / "names.txt"
    names.write_bytes(b"tty\n")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "runner", "run", *mode, sample("hello"), "--input", str(names)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, cwd=REPO,
                              env=cli_env({"NO_COLOR": "1"}), timeout=60, check=False)
        os.close(terminal)
        terminal = -1
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0 and proc.stdout == b"Hello tty!\n"
    got = summary_of(seen.replace(b"\r\n", b"\n"))
    assert got["in"] == "1 line, 4 B" and got["out"] == "1 line, 11 B"


def test_summary_record_in_json():
    proc = run_cli("run", "-v", "--log-format", "json", sample("hello"), input=b"x\ny")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [r["type"] for r in records[-2:]] == ["exit", "summary"]
    summary = records[-1]
    assert summary["in"] == {"bytes": 3, "lines": 2} and summary["out"] == {"bytes": 18, "lines": 2}
    assert summary["code"] == 0 and summary["durationMs"] > 0 and isinstance(summary["ts"], int)


@MODES
def test_stats_every_interval(mode, running):
    # A Sequence that outlives the wait (a line every 0.1 s for 10000 s): the lines are awaited, however
    # long a loaded machine takes to produce them, instead of counted within a run of fixed length.
    run = running("run", *mode, "--stats", "0.3", sample("counter"), "100000", "100")
    # a rate needs two samples from the running loop, and comes on a later line than the first one
    run.wait_for(lambda line: line.startswith("[stats]") and "items/s" in line and "loop lag" in line)
    run.signal(signal.SIGINT)
    assert run.finish() == 138
    assert run.stdout.startswith(b"1\n")
    lines = [line.rstrip("\n") for line in run.stderr_lines if line.startswith("[stats]")]
    early = "[stats] no numbers yet (the runner has not sent a heartbeat)"  # before the first heartbeat
    while lines and lines[0] == early:
        lines.pop(0)
    assert len(lines) >= 2, run.stderr
    assert all(STATS.fullmatch(line) for line in lines), lines


@MODES
def test_sigusr1_prints_stats_once_and_the_run_goes_on(mode, running):
    run = running("run", *mode, "-v", sample("events"))
    run.wait_for("the Sequence is running")  # a heartbeat from the running loop came (child mode)
    run.signal(signal.SIGUSR1)
    run.wait_for(lambda line: line.startswith("[stats] rss"))
    assert run.proc.poll() is None, "SIGUSR1 ended the command"
    run.signal(signal.SIGINT)
    assert run.finish() == 138
    assert STATS.fullmatch(next(line.rstrip("\n") for line in run.stderr_lines if line.startswith("[stats]")))


def test_stats_must_be_positive():
    proc = run_cli("run", sample("hello"), "--stats", "0")
    assert proc.returncode == 2 and b"--stats must be a positive number of seconds" in proc.stderr


@MODES
def test_verbose_keeps_the_runner_frames_in_tracebacks(mode):
    quiet = run_cli("run", *mode, sample("failing"))
    loud = run_cli("run", *mode, "-v", sample("failing"))
    assert quiet.returncode == loud.returncode == 23
    assert b"TestException" in quiet.stderr and b"TestException" in loud.stderr
    assert b"sequence/shapes.py" not in quiet.stderr, quiet.stderr
    assert b"sequence/shapes.py" in loud.stderr, loud.stderr


def test_an_exit_0_without_exiting_is_no_success(tmp_path):
    """The runner process ended with 0 behind the runner's back (os._exit(0)): host_bridge calls that
    no clean completion (its output may be cut short), and so does the command's exit status."""
    seq = tmp_path / "quits.py"
    seq.write_text("import os\n\n\nasync def run(context, input):\n    os._exit(0)\n")
    proc = run_cli("run", "-v", str(seq))
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.decode()
    assert "[run] exit 1 (failed): " in err and "without EXITING" in err
    assert summary_of(proc.stderr)["exit"] == "exit 1 (failed)"
