"""PING first (runner/hello.py): the PING written before the rest of the runner is imported is
the very frame the Connection builds from the same values, and little is imported before it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testhost import runner_env

from runner.config import Settings
from runner.hello import EarlyPingError, ping_fields, ping_frame, send_ping
from runner.protocol import Connection, Ping, Role
from runner.transport.base import HandshakeFailed
from runner.transport.native import NativeTransport

pytestmark = pytest.mark.timeout(60)


def connection_frame(fields: dict[str, object]) -> bytes:
    conn = Connection(Role.RUNNER)
    conn.send(Ping(**fields))  # type: ignore[arg-type]
    return b"".join(bytes(buf) for buf in conn.data_to_send())


@settings(max_examples=60, deadline=None)
@given(instance_id=st.text(min_size=1, max_size=80), token=st.text(max_size=80))
def test_early_frame_is_the_connections_frame(instance_id: str, token: str) -> None:
    fields = ping_fields(Settings(instance_id=instance_id, token=token))
    assert ping_frame(fields) == connection_frame(fields)


def test_the_host_reads_the_early_ping_as_the_runners_ping() -> None:
    fields = ping_fields(Settings(instance_id="inst-1", token="t0k"))
    host = Connection(Role.HOST)
    host.receive_data(ping_frame(fields))
    ping = host.next_event()
    assert isinstance(ping, Ping)
    assert (ping.instance_id, ping.token, ping.pid, ping.capabilities) == ("inst-1", "t0k", fields["pid"],
                                                                           fields["capabilities"])


def test_send_ping_writes_the_frame_and_leaves_the_fd_open() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sent = send_ping(Settings(fd=theirs.fileno(), instance_id="i", token=""))
        assert ours.recv(65536) == sent.frame
        theirs.send(b"x")  # the fd is still the socket (detached, not closed)
        assert ours.recv(1) == b"x"


def test_send_ping_on_a_pipe_names_the_fd() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(EarlyPingError, match=rf"cannot use the connection fd {write_end}: .*socket"):
            send_ping(Settings(fd=write_end, instance_id="i"))
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_ping_that_differs_from_the_connections_fails_the_handshake() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        transport = NativeTransport(theirs, sent_ping=b"not the frame")
        fields = ping_fields(Settings(instance_id="i"))
        with pytest.raises(HandshakeFailed, match="is not the one the Connection builds"):
            transport.handshake(Ping(**fields), 5.0)  # type: ignore[arg-type]
        theirs.close()


def test_before_ping_the_runner_imports_neither_typing_nor_the_connection() -> None:
    """What ``python -m runner --fd N`` has imported when it writes its PING."""
    probe = textwrap.dedent("""
        import runpy, sys
        import runner.hello as hello
        def record(settings):
            print(" ".join(sorted(sys.modules)))
            raise hello.EarlyPingError("probe: stop here")
        hello.send_ping = record
        sys.argv = ["runner", "--fd", "0", "--instance-id", "i", "--sequence", "s"]
        runpy.run_module("runner", run_name="__main__")
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                          env=runner_env(), check=False)
    assert done.returncode == 20 and "probe: stop here" in done.stderr, done.stderr
    before_ping = set(done.stdout.split())
    for heavy in ("typing", "dataclasses", "inspect", "json", "threading", "asyncio", "logging",
                  "runner.protocol.connection", "runner.protocol.events", "runner.app", "runner.transport.native"):
        assert heavy not in before_ping, heavy
