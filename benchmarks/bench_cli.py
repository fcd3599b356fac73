"""`python -m runner run` on a bulk file, beside a raw two-process Python copy of the same file.

CLI: ``python -m runner run identity-bytes --input FILE --content-type application/octet-stream``
with stdout a pipe this process reads. Raw copy: ``python _copy.py FILE | python _copy.py -``,
two plain processes piping the same file, the second one's stdout the same kind of pipe.
Both are timed the same way, from the first output byte to the last (so neither's Python
start-up counts), and every output byte is compared with the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import HERE, SEQUENCES, Verifier, bulk_chunks, bulk_pool

COPY = str(HERE / "_copy.py")
OCTET = "application/octet-stream"


def make_file(total: int) -> tuple[Path, bytes]:
    """A temporary file of ``total`` bytes cycling through the bulk pool; its period."""
    pool = bulk_pool()
    fd, name = tempfile.mkstemp(prefix="bench-cli-", suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        for chunk in bulk_chunks(pool, total):
            f.write(chunk)
    return Path(name), b"".join(pool)


def _drain(stdout: Any, period: bytes, total: int) -> float:
    """Read the pipe to its end, checking every byte; bytes/s after the first read (the clock's start)."""
    verifier = Verifier(period)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    fd = stdout.fileno()
    start, first = 0.0, 0
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        if not first:
            start, first = time.perf_counter(), n
        verifier.feed(bytes(view[:n]))
    end = time.perf_counter()
    if verifier.nbytes != total:
        raise AssertionError(f"{verifier.nbytes} bytes out, {total} in")
    return (total - first) / (end - start)


def cli_run(path: Path, period: bytes, total: int) -> float:
    """Bytes/s through ``python -m runner run`` (first output byte to the last)."""
    argv = [sys.executable, "-m", "runner", "run", str(SEQUENCES / "identity-bytes"), "--input", str(path),
            "--content-type", OCTET]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        rate = _drain(proc.stdout, period, total)
    finally:
        _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"run exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return rate


def raw_copy(path: Path, period: bytes, total: int) -> float:
    """Bytes/s through two plain Python processes piping the file (first output byte to the last)."""
    first = subprocess.Popen([sys.executable, COPY, str(path)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert first.stdout is not None
    second = subprocess.Popen([sys.executable, COPY, "-"], stdin=first.stdout, stdout=subprocess.PIPE)
    first.stdout.close()
    try:
        assert second.stdout is not None
        rate = _drain(second.stdout, period, total)
    finally:
        second.wait(60)
        first.wait(60)
    if first.returncode or second.returncode:
        raise AssertionError(f"raw copy exited {first.returncode}, {second.returncode}")
    return rate
