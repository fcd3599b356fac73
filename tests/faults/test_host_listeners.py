"""Issue 11 items 5, 6, 16 and 18: what a flood of bad connections can cost a hub, and how
host_bridge's sockets are created.

5: refused connections are kept bounded by count and bytes, peer text cut (200 PINGs with
   1 MB instance ids took a hub from 26 to 450 MiB).
6: connections waiting for their PING are capped (300 idle ones used up 256 fds, then spawn
   failed); spawn keeps working under the flood.
16: spawn raises SpawnError, not a bare OSError, when file descriptors run out.
18: unix sockets are 0600 in a 0700 directory whatever the umask.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from host_fault_helpers import fd_limit, rss, spawn_fake

from host_bridge import Bridge, BridgeError, SpawnError, Status
from host_bridge.listeners import MAX_REFUSAL_BYTES, MAX_REFUSALS, PEER_TEXT
from runner.protocol import Ping, Role
from runner.protocol.connection import Connection

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _bogus_ping(path: str, instance_id: str) -> bytes:
    """Send a PING claiming ``instance_id`` and return the host's answer (blocking; run in a thread)."""
    conn = Connection(Role.RUNNER)
    conn.send(Ping(instance_id=instance_id, token="guess"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        for buf in conn.data_to_send():
            sock.sendall(buf)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


async def test_refusals_are_bounded_by_count_and_bytes(anyio_backend: str) -> None:
    count, id_size = 200, 1_000_000
    async with Bridge() as bridge:
        listener = await bridge.listen_unix()
        path = listener.address[len("unix:"):]
        before = rss()
        for i in range(count):
            answer = await anyio.to_thread.run_sync(_bogus_ping, path, f"{i:04d}" + "x" * id_size)
            assert b"unknown instance id" in answer
        grown = rss() - before
        assert bridge.refused_count == count
        assert len(bridge.refused) <= MAX_REFUSALS
        assert sum(len(r.reason) + len(r.instance_id or "") for r in bridge.refused) <= MAX_REFUSAL_BYTES
        newest = bridge.refused[-1]
        assert newest.instance_id is not None and newest.instance_id.startswith("'0199xxx")
        assert len(newest.instance_id) < PEER_TEXT + 40 and len(newest.reason) < PEER_TEXT + 80
        assert "(1000004 characters)" in newest.reason
    # Before: every reason kept the whole id (200 MB of text); the bound keeps it to kilobytes.
    assert grown < 64 << 20, f"the hub grew {grown >> 20} MiB"


_FLOOD = """
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
conns = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    conns.append(s)
print("connected", flush=True)
time.sleep(60)
"""


async def test_idle_connection_flood_is_capped_and_spawn_keeps_working(anyio_backend: str) -> None:
    flood_size, cap = 300, 32
    with fd_limit(160):  # 300 idle connections would exhaust the hub's descriptors without the cap
        async with Bridge(handshake_timeout=30, max_pending_handshakes=cap) as bridge:
            listener = await bridge.listen_unix()
            flood = await anyio.open_process(
                [sys.executable, "-c", _FLOOD, listener.address[len("unix:"):], str(flood_size)],
                stdout=subprocess.PIPE,
            )
            try:
                assert flood.stdout is not None
                with anyio.fail_after(30):
                    assert b"connected" in await flood.stdout.receive()
                    while bridge.refused_count < flood_size - cap:  # the listener turned the rest away
                        await anyio.sleep(0.01)
                assert bridge.pending_handshakes == cap
                inst = await spawn_fake(bridge)
                await inst.send_input("still spawning\n")
                with anyio.fail_after(20):
                    assert b"".join([c async for c in inst.output()]) == b"still spawning\n"
                    assert await inst.wait() == 0
                assert inst.status is Status.COMPLETED
                assert "waiting for their handshake" in bridge.refused[-1].reason
            finally:
                flood.kill()
                await flood.wait()


async def test_spawn_raises_spawn_error_when_descriptors_run_out(anyio_backend: str) -> None:
    async with Bridge() as bridge:
        with fd_limit(1), pytest.raises(SpawnError, match="Too many open files"):
            await spawn_fake(bridge)
        assert not bridge.instances  # nothing half-made is left behind
        inst = await spawn_fake(bridge)  # and with descriptors back, spawning works again
        await inst.send_input(b"")
        with anyio.fail_after(20):
            assert await inst.wait() == 0


async def test_unix_sockets_are_private_whatever_the_umask(anyio_backend: str, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        async with Bridge() as bridge:
            named = await bridge.listen_unix(tmp_path / "made" / "hub.sock")
            anonymous = await bridge.listen_unix()
            for listener in (named, anonymous):
                path = Path(listener.address[len("unix:"):])
                assert stat.S_ISSOCK(path.stat().st_mode)
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
            assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o700
            anonymous_dir = Path(anonymous.address[len("unix:"):]).parent
            assert stat.S_IMODE(anonymous_dir.stat().st_mode) == 0o700
            assert not [p for p in (tmp_path / "made").iterdir() if p.name != "hub.sock"]  # no temp dir left
            inst = await spawn_fake(bridge, listener=named)  # and runners still connect
            await inst.send_input("private\n")
            with anyio.fail_after(20):
                assert await inst.wait() == 0
        assert not anonymous_dir.exists() and not (tmp_path / "made" / "hub.sock").exists()
    finally:
        os.umask(old)


async def test_listen_unix_never_replaces_a_file_that_is_not_a_socket(anyio_backend: str, tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    async with Bridge() as bridge:
        with pytest.raises(BridgeError, match="not a socket"):
            await bridge.listen_unix(precious)
    assert precious.read_text() == "keep me"
