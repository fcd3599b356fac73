"""``run --input FILE`` on bulk binary data: every byte out in order, the summary in bytes only, and
a reader of stdout that goes away early (``| head``) ends the run quietly (runner/cli/output.py)."""

from __future__ import annotations

import os
import subprocess
import sys
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
