"""What already held on the runner side when issue 11 attacked it, kept held (docs/reliability.md).

Scaled down so the suite stays fast (CI runs it twice on 2 cores); the full-size figures in
docs/reliability.md come from one-off runs of the same checks with the sizes in ``FULL_SIZE``.

* framing garbage and a 4 GB frame header from the host are refused before any payload is read;
* bytes through the CLI come out byte-exact (sha256);
* lines through a pass-through Sequence across a STOP: the output is exactly a prefix of the
  input, no line lost in the middle, none doubled, and all of it reaches the host.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_fault_helpers import REPO, SAMPLES, TestHost, runner_env, sequence_file

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(120)

#: The sizes of the one-off runs behind the figures in docs/reliability.md.
FULL_SIZE = {"cli_bytes": 1 << 30, "stop_lines": 1_500_000}
CLI_BYTES = int(os.environ.get("FAULTS_CLI_BYTES", str(32 << 20)))
STOP_LINES = int(os.environ.get("FAULTS_STOP_LINES", "150000"))

WAITING = """
import asyncio
async def run(context, input):
    print("started", flush=True)
    await asyncio.sleep(60)
"""


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.parametrize(("name", "frame"), [
    ("garbage", b"\xc1\xff\x00garbage" * 10),
    # DATA on IN announcing 4 GiB - 1 of payload: 0x92, channel, bin32 marker, length
    ("4 GB header", b"\x92\x05\xc6" + struct.pack(">I", 0xFFFFFFFF) + b"x" * 1000),
])
def test_garbage_and_huge_headers_are_refused_before_any_payload(tmp_path: Path, name: str, frame: bytes) -> None:
    with TestHost(sequence_file(tmp_path, WAITING)) as host:
        host.wait_data(Channel.STDOUT, b"started\n")
        rss_before = _rss_kib(host.proc.pid)
        sent = time.monotonic()
        host.sock.sendall(frame)
        code, err = host.finish(timeout=10)
        took = time.monotonic() - sent
    assert code == 137, err
    assert took < 5  # refused at the header: nothing waits for 4 GB that never comes
    assert "frame" in err.lower() or "malformed" in err.lower(), err
    assert rss_before < 200_000


def test_bytes_through_the_cli_are_byte_exact(tmp_path: Path) -> None:
    data = os.urandom(1 << 20) * (CLI_BYTES >> 20)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    target = tmp_path / "out.bin"
    with open(source, "rb") as stdin, open(target, "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "runner", "run", str(SAMPLES / "binary-passthrough"),
                               "-t", "application/octet-stream"], stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, env=runner_env(), cwd=str(REPO), timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_lines_across_a_stop_have_no_gap(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
async def run(context, input):
    async for line in input:
        yield line
""")
    lines = [f"{i:09d}\n".encode() for i in range(STOP_LINES)]
    with TestHost(path) as host:
        half = len(lines) // 2
        host.send_data(Channel.IN, b"".join(lines[:half]), timeout=60)
        host.wait_until(lambda: len(host.data[Channel.OUT]) > 0, what="output flowing")
        host.send(Code.STOP, {"timeout": 5000, "canCallKeepalive": False})
        host.send_data(Channel.IN, b"".join(lines[half:]), timeout=60)  # still flowing during the stop
        host.wait_message(Code.SEQUENCE_STOPPED)
        host.send(Code.KILL)
        code, err = host.finish(timeout=60)
    assert code == 138, err
    out = bytes(host.data[Channel.OUT])
    assert out.endswith(b"\n")
    got = out.count(b"\n")
    assert got > 0
    assert out == b"".join(lines[:got])  # exactly a prefix: no gap, no duplicate, nothing cut
