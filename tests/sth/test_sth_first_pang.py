"""STH's first PANG right after PONG (runner/hello.py): the bytes are the translator's, the CONTROL
bytes read while waiting for PONG are all kept, and nothing of the runner core is imported before it.

The PANG order a host sees, a failing Sequence, messages around PONG and topic routing are checked
against real runners in test_sth_runner_*.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sth_exit_file import run_sth_runner

from runner.hello import STH_FIRST_PANG, sth_pong_and_pang
from runner.protocol import Event, Pong, Stop
from runner.protocol.sth import STHCode, encode_host_message, encode_runner_message
from runner.protocol.sth_translator import FIRST_PANG, STHTranslator
from runner.transport.sth_connect import NoPong, read_until_pong

if TYPE_CHECKING:
    from typing import Self  # 3.11+; the tests run on 3.10 too

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
IID = "x" * 36


def test_hellos_first_pang_is_the_translators() -> None:
    translator = STHTranslator(IID, {}, {}, created_ms=1)
    assert STH_FIRST_PANG == FIRST_PANG
    assert encode_runner_message(STHCode.PANG, STH_FIRST_PANG) == translator.first_pang()


def test_the_bytes_read_until_pong_keep_what_came_before_and_with_it() -> None:
    """A bad line, an EVENT and half of PONG's line in one write, the rest of PONG and a STOP in the
    next: every byte up to PONG's chunk is returned, the rest stays in the socket, and the
    translator finds the EVENT, PONG and the STOP in them (the bad line skipped with a note)."""
    event = encode_host_message(STHCode.EVENT, {"eventName": "early", "message": 1})
    pong = encode_host_message(STHCode.PONG, {"appConfig": {"a": 1}})
    stop = encode_host_message(STHCode.STOP, {"timeout": 5})
    first, second, later = b"not json\n" + event + pong[:5], pong[5:] + stop, b'[4002,{}]\n'
    host, runner = socket.socketpair()
    with host, runner:
        host.sendall(first)

        def rest() -> None:
            time.sleep(0.05)  # PONG's line completed by a later chunk (if the reads do not join them)
            host.sendall(second)
            time.sleep(0.05)
            host.sendall(later)

        sender = threading.Thread(target=rest)
        sender.start()
        got = read_until_pong(runner, time.monotonic() + 10, 10)
        sender.join()
        assert runner.gettimeout() is None
        runner.settimeout(5)
        left = b""
        while len(got) + len(left) < len(first + second + later):
            left += runner.recv(65536)
    assert got + left == first + second + later
    assert got.startswith(first + second)  # all of PONG's chunk, the STOP with it
    tr = STHTranslator(IID, {}, {}, created_ms=1)
    messages, notes = tr.control(got)
    assert messages[:2] == [Event(name="early", message=1), Pong(app_config={"a": 1}, args=None)]
    assert Stop(timeout_ms=5.0, can_keep_alive=False) in messages
    assert len(notes) == 1 and "bad CONTROL line" in notes[0]


def test_no_pong_names_why() -> None:
    host, runner = socket.socketpair()
    with host, runner:
        host.sendall(encode_host_message(STHCode.MONITORING_REPLY, {}))
        with pytest.raises(NoPong, match=r"^no PONG from the STH host within 0\.2 s$"):
            read_until_pong(runner, time.monotonic() + 0.2, 0.2)
        host.shutdown(socket.SHUT_WR)
        with pytest.raises(NoPong, match="the STH host closed CONTROL during the handshake"):
            read_until_pong(runner, time.monotonic() + 10, 10)


class PongingHost:
    """Accepts one runner's nine connections and answers PONG on CONTROL (nothing else; or nothing)."""

    def __init__(self, pong: bool = True) -> None:
        self.pong = pong
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.server.settimeout(30)
        for _ in range(9):
            conn = self.server.accept()[0]
            self.conns.append(conn)
            preamble = b""
            while len(preamble) < 37:
                preamble += conn.recv(37 - len(preamble))
            if preamble[36:] == b"3" and self.pong:
                conn.sendall(encode_host_message(STHCode.PONG, {}))

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(30)
        for conn in self.conns:
            conn.close()
        self.server.close()


def sth_env(sequence: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQUENCE_RUNNER_")}
    env.update({"PYTHONPATH": str(ROOT), "SEQUENCE_PATH": str(sequence), "INSTANCES_SERVER_HOST": "127.0.0.1",
                "INSTANCES_SERVER_PORT": str(port), "INSTANCE_ID": IID, "SEQUENCE_INFO": "{}",
                "RUNNER_CONNECT_INFO": "{}"})
    return env


HEAVY = ("typing", "dataclasses", "inspect", "logging", "asyncio", "msgpack", "threading",
         "runner.protocol.connection", "runner.protocol.events", "runner.protocol.sth_translator", "runner.app",
         "runner.transport.native", "runner.transport.sth", "runner.runtime")


def test_before_the_first_pang_the_runner_core_is_not_imported(tmp_path: Path) -> None:
    """``python -m runner`` in STH mode against a host that answers PONG: when the first PANG has been
    written, none of the runner core (nor logging, asyncio, threading) is imported yet."""
    probe = textwrap.dedent("""
        import runpy, sys
        import runner.hello as hello
        original = hello.sth_pong_and_pang
        def record(early, timeout):
            original(early, timeout)
            print(" ".join(sorted(sys.modules)), flush=True)
            print(early.pang.decode(), end="", flush=True)
            raise hello.EarlyPingError("probe: stop here")
        hello.sth_pong_and_pang = record
        sys.argv = ["runner", sys.argv[1]]
        runpy.run_module("runner", run_name="__main__")
    """)
    with PongingHost() as host:
        env = sth_env(tmp_path, host.port)
        done = run_sth_runner([sys.executable, "-c", probe, str(tmp_path / "startup.log")], env=env)
    assert done.returncode == 20 and "probe: stop here" in done.stderr, done.stderr
    modules, pang = done.stdout.split("\n", 1)
    assert json.loads(pang) == [STHCode.PANG, {"requires": "", "contentType": ""}]
    before_pang = set(modules.split())
    assert "runner.transport.sth_connect" in before_pang
    for heavy in HEAVY:
        assert heavy not in before_pang, heavy


def test_a_host_gone_before_pong_is_an_early_ping_error(tmp_path: Path) -> None:
    """The host ends CONTROL instead of answering: the runner's exit-20 reason, sockets closed."""
    from runner.hello import EarlyPingError, STHEarlyPing

    host, runner = socket.socketpair()
    monitoring_host, monitoring = socket.socketpair()
    with host, monitoring_host:
        early = STHEarlyPing({3: runner, 4: monitoring}, b"")
        host.shutdown(socket.SHUT_WR)
        with pytest.raises(EarlyPingError, match="the STH host closed CONTROL during the handshake"):
            sth_pong_and_pang(early, 5.0)
        assert runner.fileno() == -1 and monitoring.fileno() == -1
        assert early.pang == b""


def test_no_pong_within_the_connect_timeout_exits_20_with_the_exit_code_file(tmp_path: Path) -> None:
    from runner.protocol import sth

    with PongingHost(pong=False) as host:
        env = {**sth_env(tmp_path, host.port), "SEQUENCE_RUNNER_CONNECT_TIMEOUT": "0.5"}
        proc = subprocess.Popen([sys.executable, "-m", "runner", "./startup.log"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=30)
    exit_file = Path(sth.exit_code_file(proc.pid))
    try:
        assert proc.returncode == 20, err
        assert "no PONG from the STH host within 0.5 s" in err
        assert exit_file.read_text() == "20"
    finally:
        exit_file.unlink(missing_ok=True)
