"""PING first (runner/hello.py): the PING written before the rest of the runner is imported is
the very frame the Connection (native) or the STH translator (STH mode) builds from the same
values, and little is imported before it."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sth_exit_file import run_sth_runner
from testhost import runner_env

from runner.config import Settings
from runner.hello import EarlyPingError, ping_fields, ping_frame, send_ping, sth_ping_line
from runner.protocol import Connection, Ping, Role
from runner.protocol.sth_translator import STHTranslator
from runner.transport.base import HandshakeFailed
from runner.transport.native import NativeTransport
from runner.transport.sth_connect import STHConfig

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3),
                           max_leaves=8)

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


@settings(max_examples=60, deadline=None)
@given(sequence_info=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4),
       connect_info=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4))
def test_early_sth_line_is_the_translators_line(sequence_info: dict[str, object],
                                                connect_info: dict[str, object]) -> None:
    cfg = STHConfig("127.0.0.1", 8000, "x" * 36, sequence_info, connect_info)
    fields = ping_fields(Settings(instance_id=cfg.instance_id))
    translator = STHTranslator(cfg.instance_id, cfg.sequence_info, cfg.connect_info, cfg.created_ms)
    assert sth_ping_line(cfg, fields) == translator.ping(Ping(**fields), fields["pid"], 0.0)  # type: ignore[arg-type]


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


def modules_before_ping(sender: str, argv: list[str], env: dict[str, str]) -> set[str]:
    """What ``python -m runner ARGV`` has imported when ``runner.hello.SENDER`` has built its PING
    (everything but the socket writes is done: the frame, and the STH connect module)."""
    build = {"send_ping": "hello.ping_frame(hello.ping_fields(args[0]))",
             "sth_connect_and_ping": "hello.sth_ping_line(*args); import runner.transport.sth_connect"}[sender]
    probe = textwrap.dedent(f"""
        import runpy, sys
        import runner.hello as hello
        def record(*args):
            {build}
            print(" ".join(sorted(sys.modules)), flush=True)
            raise hello.EarlyPingError("probe: stop here")
        hello.{sender} = record
        sys.argv = ["runner", *{argv!r}]
        runpy.run_module("runner", run_name="__main__")
    """)
    done = run_sth_runner([sys.executable, "-c", probe], env=runner_env(env))  # in STH mode it writes an exit file
    assert done.returncode == 20 and "probe: stop here" in done.stderr, done.stderr
    return set(done.stdout.split())


HEAVY = ("typing", "dataclasses", "inspect", "logging", "asyncio", "msgpack", "runner.protocol.connection",
         "runner.protocol.events", "runner.app", "runner.transport.native", "runner.transport.sth")


def test_before_ping_the_runner_imports_neither_typing_nor_the_connection() -> None:
    before_ping = modules_before_ping("send_ping", ["--fd", "0", "--instance-id", "i", "--sequence", "s"], {})
    assert "runner.protocol.framer" in before_ping  # the probe did stop at the PING
    for heavy in (*HEAVY, "json", "threading"):
        if heavy != "msgpack":  # the native PING's body is msgpack
            assert heavy not in before_ping, heavy


def test_before_the_sth_ping_the_runner_imports_neither_logging_nor_the_transport(tmp_path: Path) -> None:
    env = {"SEQUENCE_PATH": str(tmp_path), "INSTANCES_SERVER_HOST": "127.0.0.1", "INSTANCES_SERVER_PORT": "9",
           "INSTANCE_ID": "x" * 36, "SEQUENCE_INFO": "{}", "RUNNER_CONNECT_INFO": "{}"}
    before_ping = modules_before_ping("sth_connect_and_ping", [str(tmp_path / "startup.log")], env)
    assert "runner.transport.sth_connect" in before_ping  # the probe did stop at the PING
    for heavy in (*HEAVY, "threading"):  # the nine connections are polled, not one thread each
        assert heavy not in before_ping, heavy


def test_connect_all_names_the_host_when_nobody_listens() -> None:
    from runner.transport.sth_connect import connect_all

    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot connect to the STH host 127.0.0.1:{port}: .*refused"):
            connect_all("127.0.0.1", port, "x" * 36, 5.0)


def test_connect_all_opens_nine_connections_each_with_its_preamble() -> None:
    from runner.protocol import sth
    from runner.transport.sth_connect import connect_all

    with socket.create_server(("127.0.0.1", 0)) as server:
        socks = connect_all("localhost", server.getsockname()[1], "i" * 36, 5.0)
        try:
            preambles = set()
            for _ in range(9):
                conn, _ = server.accept()
                with conn:
                    preambles.add(conn.recv(64))
            assert preambles == {sth.encode_preamble("i" * 36, ch) for ch in range(9)}
            assert sorted(socks) == list(range(9)) and all(s.gettimeout() is None for s in socks.values())
        finally:
            for s in socks.values():
                s.close()
