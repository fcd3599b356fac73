"""Runners that connect in: unix and TCP listeners, per-instance tokens, refusals."""

from __future__ import annotations

import ast
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import anyio
import msgpack
import pytest
from hb_helpers import FAKE_RUNNER, ROOT, collect, real_runner_available, spawn_fake

from host_bridge import Bridge, Listener, Status
from host_bridge.link import SOCKET_BUFFER
from runner.protocol import Code, Ping, Role
from runner.protocol.connection import Connection

pytestmark = pytest.mark.anyio


@pytest.fixture
def sock_dir() -> object:
    with tempfile.TemporaryDirectory(prefix="hb-") as path:  # short: sun_path is 108 bytes
        yield Path(path)


async def _roundtrip(bridge: Bridge, listener: Listener) -> None:
    inst = await spawn_fake(bridge, listener=listener)
    assert await inst.wait_started()
    await inst.send_input("via listener\n")
    with anyio.fail_after(10):
        assert await collect(inst.output()) == b"via listener\n"
        assert await inst.wait() == 0
    assert inst.status is Status.COMPLETED


async def test_unix_listener(bridge: Bridge, sock_dir: Path) -> None:
    listener = await bridge.listen_unix(sock_dir / "hub.sock")
    assert listener.address == f"unix:{sock_dir / 'hub.sock'}"
    await _roundtrip(bridge, listener)


async def test_tcp_listener(bridge: Bridge) -> None:
    listener = await bridge.listen_tcp("127.0.0.1", 0)
    assert listener.address.startswith("tcp:127.0.0.1:")
    await _roundtrip(bridge, listener)


SEND_BUFFER_SEQUENCE = ROOT / "tests" / "containers" / "sequences" / "send-buffer"


@pytest.mark.skipif(not real_runner_available(), reason="python -m runner is not available")
async def test_a_runner_on_a_unix_listener_gets_the_wide_send_buffer_on_both_ends(
        bridge: Bridge, sock_dir: Path) -> None:
    """A runner that connects to a unix listener (a container's runner) gets the same 1 MiB
    SO_SNDBUF on both ends as a spawned runner's socketpair: with the ~208 KiB default, bulk
    through a docker-mode hub ran at 0.86x process mode (docs/deploy.md)."""
    assert SOCKET_BUFFER is not None
    listener = await bridge.listen_unix(sock_dir / "hub.sock")
    inst = await bridge.spawn(str(SEND_BUFFER_SEQUENCE), listener=listener)
    with anyio.fail_after(30):
        assert await inst.wait_started()
        assert inst._link is not None
        ours = inst._link.stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        theirs = ast.literal_eval((await collect(inst.output())).decode())  # the Sequence's "[bytes]\n"
        assert await inst.wait() == 0
    assert ours >= SOCKET_BUFFER  # Linux reports twice what was set (its bookkeeping overhead)
    assert len(theirs) == 1 and theirs[0] >= SOCKET_BUFFER  # the runner's own end (runner/transport/native.py)


def _raw_ping(address: str, instance_id: str, token: str) -> dict[str, object]:
    """A hand-made runner: PING, then the host's answer decoded (blocking; run in a thread)."""
    host, port = address[4:].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        conn = Connection(Role.RUNNER)
        conn.send(Ping(instance_id=instance_id, token=token, pid=os.getpid()))
        for buf in conn.data_to_send():
            sock.sendall(buf)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    # One MESSAGE frame: 93 ch cd code(2) c6 len(4) body
    assert data[0] == 0x93
    code = int.from_bytes(data[3:5], "big")
    body = msgpack.unpackb(data[10:])
    return {"code": code, **body}


async def test_unknown_duplicate_and_wrong_token_are_refused(bridge: Bridge) -> None:
    listener = await bridge.listen_tcp()
    expected = bridge.expect(handshake_timeout=20)

    answer = await anyio.to_thread.run_sync(_raw_ping, listener.address, "no-such-id", "x")
    assert answer == {"code": Code.REJECT, "reason": "unknown instance id 'no-such-id'"}

    answer = await anyio.to_thread.run_sync(_raw_ping, listener.address, expected.id, "bad")
    assert answer["code"] == Code.REJECT and answer["reason"] == f"wrong token for instance {expected.id}"
    assert expected.status is Status.STARTING  # a bad connection does not fail the Instance

    # The real runner of `expected` (started like a container would start it) connects.
    env = dict(os.environ, SEQUENCE_RUNNER_INSTANCE_ID=expected.id, SEQUENCE_RUNNER_TOKEN=expected.token)
    cmd = [sys.executable, FAKE_RUNNER, "--connect", listener.address, "--sequence", "x"]
    process = await anyio.open_process(cmd, env=env)
    try:
        assert await expected.wait_started()
        answer = await anyio.to_thread.run_sync(_raw_ping, listener.address, expected.id, expected.token)
        assert answer["code"] == Code.REJECT
        assert answer["reason"] == f"duplicate connection for instance {expected.id}"
        await expected.end_input()
        with anyio.fail_after(10):
            assert await expected.wait() == 0  # from EXITING: the bridge has no process to reap
        assert expected.status is Status.COMPLETED and expected.info.pid == process.pid
    finally:
        with anyio.fail_after(10):
            await process.wait()
        await process.aclose()
    reasons = [r.reason for r in bridge.refused]
    assert len(reasons) == 3 and "unknown instance id 'no-such-id'" in reasons


async def test_expected_runner_that_never_connects_fails(bridge: Bridge) -> None:
    inst = bridge.expect(handshake_timeout=0.3)
    started = time.monotonic()
    with anyio.fail_after(10):
        assert not await inst.wait_started()
        await inst.wait()
    assert time.monotonic() - started < 5
    assert inst.status is Status.ERRORED and inst.exit_code is None
    assert inst.info.error is not None and "no a connection" not in inst.info.error
    assert "handshake timeout" in inst.info.error
