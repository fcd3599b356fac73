"""python -m runner as a process: start-up, config errors, load errors, data in and out."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from sth_exit_file import run_sth_runner
from testhost import SAMPLES, TestHost, runner_cmd, runner_env

from runner.protocol import Channel, Code, ConnectionClosed, EndOfStream, Exiting, SequenceCompleted

pytestmark = pytest.mark.timeout(60)


def sequence(tmp_path: Path, code: str, name: str = "seq.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(runner_cmd(*args), check=False, capture_output=True, text=True, env=runner_env(env), timeout=30,
                          stdin=subprocess.DEVNULL)


# -- start-up and configuration ---------------------------------------------------------
def test_version_is_one_line_with_protocol_and_framer() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"sequence-runner \S+ \(protocol 1, framer (cython|python)\)\n", done.stdout)


def test_help_lists_env_vars_and_exit_codes() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for needle in ("SEQUENCE_RUNNER_FD", "SEQUENCE_RUNNER_TOKEN", "--connect", "137", "138", "exit codes"):
        assert needle in done.stdout


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ((), {"SEQUENCE_RUNNER_INSTANCE_ID": "i"}, "--fd"),  # no words and no host setting: the CLI's usage
        (("--fd", "3", "--sequence", "x"), {}, "--instance-id"),
        (("--fd", "3", "--instance-id", "i"), {}, "--sequence"),
        (("--fd", "x", "--instance-id", "i", "--sequence", "s"), {}, "--fd"),
        (("--connect", "ftp:x", "--instance-id", "i", "--sequence", "s"), {}, "--connect"),
        (("--fd", "3", "--instance-id", "i", "--sequence", "s", "--args", "{"), {}, "--args"),
        (("--fd", "3", "--instance-id", "i", "--sequence", "s"), {"SEQUENCE_RUNNER_CONFIG": "[1]"},
         "SEQUENCE_RUNNER_CONFIG"),
        (("--fd", "3", "--bogus"), {}, "--bogus"),  # alone, with no host setting, a person's typo: exit 2
    ],
)
def test_bad_settings_exit_20_naming_the_setting(argv: tuple[str, ...], env: dict[str, str], named: str) -> None:
    done = run_cli(*argv, env=env)
    assert done.returncode == 20, done.stderr
    assert named in done.stderr


def test_env_settings_work_and_argv_wins(tmp_path: Path) -> None:
    # a closed fd from env is a connection error (20), argv --fd wins over a bad env value
    done = run_cli("--fd", "97", env={"SEQUENCE_RUNNER_FD": "nope", "SEQUENCE_RUNNER_INSTANCE_ID": "i",
                                      "SEQUENCE_RUNNER_SEQUENCE": "x"})
    assert done.returncode == 20
    assert "fd 97" in done.stderr


def test_sth_mode_is_a_clear_hook() -> None:
    # STH mode (runner.sth_mode, tests/sth/test_sth_runner_*) names what STH's environment lacks
    done = run_sth_runner(runner_cmd(), env=runner_env({"INSTANCES_SERVER_PORT": "8001"}))
    assert done.returncode == 20
    assert "missing environment variable(s): SEQUENCE_PATH" in done.stderr


def test_handshake_timeout_exits_20() -> None:
    import socket

    parent, child = socket.socketpair()
    with parent:
        done = subprocess.run(runner_cmd("--fd", str(child.fileno()), "--instance-id", "i", "--sequence", "s",
                                         "--connect-timeout", "0.5"),
                              pass_fds=[child.fileno()], check=False, capture_output=True, text=True, env=runner_env(),
                              timeout=30)
        child.close()
    assert done.returncode == 20
    assert "PONG" in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_before_the_handshake_exits_138_at_once(tmp_path: Path, signum: int) -> None:
    """A host (or a container runtime) that signals a runner still waiting for PONG ends it at
    once: 138, a stop before the Sequence ran (docs/runner.md "Signals")."""
    import socket

    parent, child = socket.socketpair()
    with parent:
        proc = subprocess.Popen(runner_cmd("--fd", str(child.fileno()), "--instance-id", "i", "--sequence",
                                           str(tmp_path), "--connect-timeout", "30"),
                                pass_fds=[child.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=runner_env())
        child.close()
        parent.settimeout(20)
        assert parent.recv(65536)  # PING: the runner now waits for PONG
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
        waited = time.monotonic() - sent
    assert proc.returncode == 138, err
    assert waited < 2
    assert f"{signal.Signals(signum).name} before the handshake completed" in err
    assert "Traceback" not in err


# -- load errors -------------------------------------------------------------------------------
def test_missing_sequence_path_exits_21(tmp_path: Path) -> None:
    with TestHost(tmp_path / "nowhere") as host:
        code, _ = host.finish()
        assert code == 21
        error = host.messages(Code.ERROR)[0]
        assert error["exitCode"] == 21
        assert host.messages(Code.EXITING)[-1]["exitCode"] == 21


def test_import_error_exits_22_with_traceback_on_stderr_and_log(tmp_path: Path) -> None:
    path = sequence(tmp_path, "import no_such_module_here\n\ndef run(context, input):\n    pass\n")
    with TestHost(path) as host:
        code, real_stderr = host.finish()
        assert code == 22, host.summary()
        assert "runner: Sequence failed on start: " in real_stderr and "no_such_module_here" in real_stderr
        assert "no_such_module_here" in host.text(Channel.STDERR)
        assert "Traceback" in host.text(Channel.STDERR)
        assert any("no_such_module_here" in rec.get("exc", "") for rec in host.log_records())
        assert host.messages(Code.ERROR)[0]["exitCode"] == 22
        lifecycle = [c for c in host.codes() if c != Code.MONITORING]  # heartbeats may come any time
        assert lifecycle[-2:] == [Code.ERROR, Code.EXITING]


# -- data ---------------------------------------------------------------------------------------
def test_hello_text_in_out_exact_and_message_order() -> None:
    with TestHost(SAMPLES / "hello") as host:
        host.wait_message(Code.PANG)
        host.send_data(Channel.IN, "python runner\nżółw\n".encode())
        host.send_end(Channel.IN)
        code, _ = host.finish()
        host.wait_closed()
        assert code == 0
        assert bytes(host.data[Channel.OUT]) == "Hello python runner!\nHello żółw!\n".encode()
        codes = [c for c in host.codes() if c != Code.MONITORING]  # heartbeats may come any time
        assert codes[0] == Code.PING and codes[1] == Code.PANG
        assert codes[-2:] == [Code.SEQUENCE_COMPLETED, Code.EXITING]
        assert host.messages(Code.EXITING)[0]["exitCode"] == 0
        events = host.events
        out_end = next(i for i, e in enumerate(events) if isinstance(e, EndOfStream) and e.channel == Channel.OUT)
        completed = next(i for i, e in enumerate(events) if isinstance(e, SequenceCompleted))
        exiting = next(i for i, e in enumerate(events) if isinstance(e, Exiting))
        assert out_end < completed < exiting
        for ch in (Channel.STDOUT, Channel.STDERR, Channel.LOG):
            end = next(i for i, e in enumerate(events) if isinstance(e, EndOfStream) and e.channel == ch)
            assert end < exiting
        assert isinstance(events[-1], ConnectionClosed)


def test_binary_passthrough_exact_bytes() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with TestHost(SAMPLES / "binary-passthrough") as host:
        host.wait_message(Code.PANG)
        host.send(Code.INPUT_CONTENT_TYPE, {"contentType": "application/octet-stream"})
        host.send_data(Channel.IN, payload)
        host.send_end(Channel.IN)
        code, _ = host.finish(60)
        assert code == 0, host.summary()
        out = bytes(host.data[Channel.OUT])
        assert len(out) == len(payload)
        assert hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
        pang = host.messages(Code.PANG)[-1]
        assert pang["contentType"] == "application/octet-stream"


def test_ndjson_in_and_out() -> None:
    with TestHost(SAMPLES / "ndjson-transform") as host:
        host.wait_message(Code.PANG)
        host.send(Code.INPUT_CONTENT_TYPE, {"contentType": "application/x-ndjson"})
        host.send_data(Channel.IN, b'{"a": 1}\n[2]\n')
        host.send_end(Channel.IN)
        code, _ = host.finish()
        assert code == 0, host.summary()
        lines = [json.loads(x) for x in bytes(host.data[Channel.OUT]).splitlines()]
        assert lines == [{"a": 1, "seen": True, "n": 1}, {"value": [2], "seen": True, "n": 2}]


def test_args_precedence_pong_over_cli_over_package_json() -> None:
    with TestHost(SAMPLES / "counter") as host:
        assert host.finish()[0] == 0
        assert bytes(host.data[Channel.OUT]) == b"1\n2\n3\n4\n5\n"
    with TestHost(SAMPLES / "counter", argv=("--args", '["3"]')) as host:
        assert host.finish()[0] == 0
        assert bytes(host.data[Channel.OUT]) == b"1\n2\n3\n"
    with TestHost(SAMPLES / "counter", argv=("--args", '["3"]'), args=["2"]) as host:
        assert host.finish()[0] == 0
        assert bytes(host.data[Channel.OUT]) == b"1\n2\n"


def test_app_config_from_pong(tmp_path: Path) -> None:
    path = sequence(tmp_path, """
        async def run(context, input):
            yield repr(sorted(context.config.items())) + "\\n"
    """)
    with TestHost(path, argv=("--config", '{"cli": 1}')) as host:
        assert host.finish()[0] == 0
        assert bytes(host.data[Channel.OUT]) == b"[('cli', 1)]\n"
    with TestHost(path, argv=("--config", '{"cli": 1}'), app_config={"pong": 2}) as host:
        assert host.finish()[0] == 0
        assert bytes(host.data[Channel.OUT]) == b"[('pong', 2)]\n"


def test_exception_exits_23_after_output_with_traceback_and_error() -> None:
    with TestHost(SAMPLES / "failing") as host:
        code, real_stderr = host.finish()
        assert code == 23
        # the exit reason reaches the real stderr too (host_bridge keeps its tail for crash reports)
        assert "runner: Sequence failed during execution: TestException: " in real_stderr
        assert bytes(host.data[Channel.OUT]) == b"about to fail\n"
        assert "This exception should appear on stderr" in host.text(Channel.STDERR)
        assert "Traceback" in host.text(Channel.STDERR)
        error = host.messages(Code.ERROR)[0]
        assert error["exitCode"] == 23
        assert "TestException" in error["message"] and "Traceback" in error["stack"]
        assert any("TestException" in rec.get("exc", "") for rec in host.log_records())
        assert host.messages(Code.EXITING)[-1]["exitCode"] == 23


def test_run_and_pack_are_handed_to_runner_cli() -> None:
    pytest.importorskip("runner.cli")
    done = run_cli("run", "--help")
    assert done.returncode == 0
    assert "usage: python -m runner run" in done.stdout


def test_the_runner_is_started_the_way_this_pass_says() -> None:
    """Under HOST_BRIDGE_WARM=1 (.ci/run's warm pass) TestHost's runners are forked from a
    warm-start template, so every test of this suite checks warm starts too; else cold."""
    from warm_popen import WarmPopen, warm_enabled

    with TestHost(SAMPLES / "hello") as host:
        host.send_end(Channel.IN)
        assert host.wait_exit() == 0
        assert isinstance(host.proc, WarmPopen) == warm_enabled()
