"""Issue 11 item 13: before the handshake only the handshake is accepted, on both sides.

An unauthenticated peer used to push CREDIT (and END) frames before PING/PONG: a
host's credit on IN reached 12.9 GB. Now a real runner and a real host_bridge
listener both drop such a peer at once with a handshake error, instead of waiting
for the handshake that never comes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest
from frame_bytes import credit, end

from host_bridge import Bridge
from runner.protocol import Channel

REPO = Path(__file__).resolve().parents[2]


def _recv_some(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b"<nothing>"


@pytest.mark.parametrize("frame", [credit(Channel.OUT, 0xFFFFFFFF), end(Channel.IN)], ids=["credit", "end"])
def test_runner_exits_20_on_a_frame_before_pong(frame: bytes) -> None:
    parent, child = socket.socketpair()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--fd", str(child.fileno()), "--instance-id", "i",
         "--connect-timeout", "60", "--sequence", str(REPO / "sample_sequences" / "hello")],
        pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=str(REPO),
    )
    child.close()
    try:
        assert _recv_some(parent, 20)[:1] == b"\x93"  # the runner's PING
        started = time.monotonic()
        parent.sendall(frame)  # instead of PONG
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 20, err.decode()
        assert "before the handshake" in err.decode()
        assert time.monotonic() - started < 10  # refused at once, not at the 60 s connect timeout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        parent.close()


@pytest.mark.parametrize("frame", [credit(Channel.IN, 0xFFFFFFFF), end(Channel.OUT)], ids=["credit", "end"])
def test_host_drops_a_peer_that_sends_a_frame_before_ping(frame: bytes) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="hs-") as tmp:  # short: sun_path is 108 bytes
            async with Bridge(handshake_timeout=30) as bridge:
                listener = await bridge.listen_unix(Path(tmp) / "hub.sock")
                path = listener.address.removeprefix("unix:")

                def attack() -> bytes:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                        sock.connect(path)
                        sock.sendall(frame * 100)
                        return _recv_some(sock, 10)

                with anyio.fail_after(10):  # not the 30 s handshake timeout
                    answer = await anyio.to_thread.run_sync(attack)
                    assert answer == b""  # the host closed the connection
                    while not bridge.refused:
                        await anyio.sleep(0.01)
                reasons = [refusal.reason for refusal in bridge.refused]
                assert len(reasons) == 1 and "before the handshake" in reasons[0], reasons

    anyio.run(main)
