"""``run --input FILE`` on bulk binary data: every byte out in order, the summary in bytes only, and
a reader of stdout that goes away early (``| head``) ends the run quietly (runner/cli/output.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import REPO, RUN_TIMEOUT, cli_env, run_cli, sample

OCTET = "application/octet-stream"


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    return path, data


def test_bulk_file_comes_out_byte_for_byte_and_the_summary_counts_bytes(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 5 * (1 << 20) + 12345)  # several 1 MiB reads and a tail
    done = run_cli("run", sample("binary-passthrough"), "--input", str(path), "--content-type", OCTET, "-v")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == data
    summary = [line for line in done.stderr.decode().splitlines() if "done in" in line]
    assert summary and "in: 5.0 MiB" in summary[0] and "line" not in summary[0]


def test_text_input_still_counts_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"Alice\nBob\n")
    done = run_cli("run", sample("hello"), "--input", str(path), "-v")
    assert done.returncode == 0 and done.stdout == b"Hello Alice!\nHello Bob!\n"
    assert "in: 2 lines" in done.stderr.decode()


def test_stdout_reader_gone_ends_the_run_quietly(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 8 << 20)
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", sample("binary-passthrough"), "--input",
                             str(path), "--content-type", OCTET], stdin=subprocess.DEVNULL, stdout=write,
                            stderr=subprocess.PIPE, cwd=REPO, env=cli_env(), start_new_session=True)
    os.close(write)
    head = os.read(read, 10)
    os.close(read)  # the reader goes away with the run in full flow
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert head == data[: len(head)] and head
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def _run_into(tmp_path: Path, stdout: int, stdin: int = subprocess.DEVNULL, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runner", "run", sample("binary-passthrough"), *args,
                             "--content-type", OCTET], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                            cwd=REPO, env=cli_env(), start_new_session=True)


def _read_all(fd: int, pause_after: int = 0) -> bytes:
    """The pipe to its end; with ``pause_after``, a reader that stops for a second once it has that
    much (the runner's output splice must wait or go through memory, never reorder or lose)."""
    out = bytearray()
    paused = False
    while chunk := os.read(fd, 1 << 16):
        out += chunk
        if pause_after and not paused and len(out) >= pause_after:
            paused = True
            time.sleep(1.0)
    return bytes(out)


def test_bulk_through_pipes_keeps_every_byte_with_a_reader_that_pauses(tmp_path: Path) -> None:
    """stdout a pipe and --input a file: input goes by sendfile, output by splice (Linux), the
    rest through the ordinary paths; the bytes out are the bytes in (sha256), in order."""
    path, data = _file(tmp_path, 40 * (1 << 20) + 4099)
    read, write = os.pipe()
    proc = _run_into(tmp_path, write, subprocess.DEVNULL, "--input", str(path), "-v")
    os.close(write)
    try:
        out = _read_all(read, pause_after=6 << 20)
    finally:
        os.close(read)
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest() and len(out) == len(data)
    summary = [line for line in err.decode().splitlines() if "done in" in line]
    assert summary and "in: 40.0 MiB" in summary[0] and "out: 40.0 MiB" in summary[0]


def test_bulk_from_a_pipe_into_a_file_takes_the_ordinary_paths(tmp_path: Path) -> None:
    """Input from stdin (a pipe: no sendfile) and stdout a regular file (no splice): same bytes."""
    path, data = _file(tmp_path, 12 * (1 << 20) + 77)
    out_path = tmp_path / "out.bin"
    with open(path, "rb") as source, open(out_path, "wb") as sink:
        feeder = subprocess.Popen(["cat"], stdin=source, stdout=subprocess.PIPE)
        assert feeder.stdout is not None
        proc = _run_into(tmp_path, sink.fileno(), feeder.stdout.fileno())
        feeder.stdout.close()
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
        feeder.wait(RUN_TIMEOUT)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert hashlib.sha256(out_path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


MALLOC_PROBE = """\
import os


async def run(context, input):
    yield " ".join(os.environ.get(name, "-") for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
"""


def test_the_runner_gets_bulk_malloc_settings_unless_they_are_set(tmp_path: Path) -> None:
    """glibc's malloc thresholds for the runner (runner/cli/child.py RUNNER_MALLOC_ENV); the user's own win."""
    (tmp_path / "seq.py").write_text(MALLOC_PROBE)
    done = run_cli("run", str(tmp_path / "seq.py"))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == f"{8 << 20} {64 << 20}".encode()
    done = run_cli("run", str(tmp_path / "seq.py"), env={"MALLOC_TRIM_THRESHOLD_": "4096"})
    assert done.stdout == f"{8 << 20} 4096".encode()


def test_sigint_while_stdout_is_not_read_stops_the_run_and_keeps_order(tmp_path: Path) -> None:
    """STOP in the middle of a spliced bulk run whose stdout reader has stopped: the connection is
    not held up by the full pipe (the splice gives up after PIPE_STALL), the stop goes through,
    and once the reader drains the pipe the run ends 138 with a prefix of the input, in order."""
    path, data = _file(tmp_path, 64 << 20)
    read, write = os.pipe()
    proc = _run_into(tmp_path, write, subprocess.DEVNULL, "--input", str(path))
    os.close(write)
    try:
        first = os.read(read, 1 << 16)  # output is flowing; then nobody reads for a while
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        out = first + _read_all(read)
    finally:
        os.close(read)
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 138, err.decode()[-2000:]
    assert out == data[: len(out)] and len(out) >= len(first)
