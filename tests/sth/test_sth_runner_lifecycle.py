"""Ported STH scenarios (stop/keepalive, kill, flooding, errors), start-up errors, exit-code file, startup log.

All against the real runner started like STH's process adapter does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest
from sth_exit_file import run_sth_runner
from sth_host import STHInstanceGone, STHStartError
from test_sth_runner_support import ROOT, RUNNER_COMMAND, collect, new_host, read_until, seq, wait_for

from host_bridge.sth import runner_env, sequence_info_for
from runner.protocol import sth

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- stop / keepalive / kill ------------------------------------------------------------------------


async def test_e2e002_keepalive_then_final_stop(tmp_path: Path) -> None:
    """E2E-002 TC-001: stop(canCallKeepalive) is answered with ALIVE and no KILL; a later stop ends it (138)."""
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("stop-keepalive"), args=["SEND_KEEPALIVE"])
        out = inst.stdout()
        await inst.wait_running()
        await anyio.sleep(1.0)  # run() registers its stop handler (it prints nothing to wait for)
        assert await inst.stop(1500, True) is False  # ALIVE came: the host sends no KILL
        assert inst.keepalive_requested and not inst.exited
        await read_until(out, b"Keeping alive for 3000 ms\n")
        assert (await inst.health())["healthy"] is True
        assert await inst.stop(1000, False) is True
        assert await inst.wait() == 138
        assert b"Cleanup done.\n" in await collect(out)


async def test_e2e003_kill_busy_loop_promptly(tmp_path: Path) -> None:
    """E2E-003 TC-003: KILL ends a Sequence stuck in a sync busy loop (STH-Py could not), long before the
    host's 15 s watchdog would remove it."""
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("cpu-bound"))
        await read_until(inst.stdout(), b"Spinning.\n")
        assert (await inst.health())["processId"] == inst.pid
        started = time.monotonic()
        await inst.kill()
        assert await inst.wait() == 137
        assert inst.exit_code_from_file == 137  # the runner exited by itself and wrote its code
        assert time.monotonic() - started < 10


async def test_stop_timeout_passes_without_handler_finishing(tmp_path: Path) -> None:
    """A STOP the Sequence cannot act on (busy loop): the runner itself ends with 138 at the deadline."""
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("cpu-bound"))
        await read_until(inst.stdout(), b"Spinning.\n")
        await inst.stop(500, False)  # the runner's own deadline and the host's KILL race: 138 either way
        assert await inst.wait() == 138


# -- flooding (E2E-012) ----------------------------------------------------------------------------------


async def test_e2e012_unconsumed_11mb_stdin_does_not_block_events(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("events"))  # never reads stdin
        await inst.wait_running()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            block = b"z" * 65536
            try:
                for _ in range(11 * 16):  # 11 MiB
                    await inst.send_stdin(block)
                    sent += len(block)
            except STHInstanceGone:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            with anyio.fail_after(5):
                while sent < 1 << 20:  # the runner took (and buffers, bounded) some of it
                    await anyio.sleep(0.02)
            replies: list[object] = []

            async def reply() -> None:
                replies.append(await inst.once("test-response"))

            tg.start_soon(reply)
            await anyio.sleep(0.05)
            await inst.send_event("test-event", "flood")
            with anyio.fail_after(10):
                while not replies:
                    await anyio.sleep(0.02)
            assert replies == ["reply to flood"]
            # (the runner stops reading STDIN 1 MiB ahead of the Sequence; the kernel buffers the rest)
            await inst.kill()
            assert await inst.wait() == 137
            tg.cancel_scope.cancel()


async def test_e2e012_stdout_flood_events_still_delivered(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("stdout-flood"))
        total = 0

        async def drain() -> None:
            nonlocal total
            async for chunk in inst.stdout():
                total += len(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            with anyio.fail_after(10):
                while total < 2 << 20:
                    await anyio.sleep(0.02)
            for i in range(3):
                replies: list[object] = []

                async def reply() -> None:
                    replies.append(await inst.once("test-response"))  # noqa: B023

                tg.start_soon(reply)
                await anyio.sleep(0.05)
                await inst.send_event("test-event", f"n{i}")
                with anyio.fail_after(10):
                    while not replies:
                        await anyio.sleep(0.02)
                assert replies == [f"reply to n{i}"]
            await inst.kill()
            assert await inst.wait() == 137


async def test_host_not_reading_out_blocks_nothing_else(tmp_path: Path) -> None:
    """OUT is its own socket with its own writer: unread OUT stops only OUT; heartbeats and KILL go on."""
    async with new_host(tmp_path, buffer_bytes=1 << 18) as host:
        inst = await host.start(seq("out-flood"))
        await inst.wait_running()
        await anyio.sleep(1.0)  # OUT is full by now (the test never reads it)
        await inst.set_monitoring_rate(10)  # CONTROL still reaches the runner ...
        beats = inst.heartbeats
        with anyio.fail_after(10):
            while inst.heartbeats < beats + 5:  # ... and MONITORING still reaches the host, 10 a second
                await anyio.sleep(0.02)
        await inst.kill()
        with anyio.fail_after(10):
            assert await inst.wait() == 137


# -- errors and start-up ---------------------------------------------------------------------------------


async def test_e2e016_bad_main_exits_21_before_ping(tmp_path: Path) -> None:
    pkg = tmp_path / "bad-main"
    pkg.mkdir()
    (pkg / "package.json").write_text(json.dumps({"name": "bad", "main": "app.py", "engines": {"python3": "3"}}))
    async with new_host(tmp_path) as host:
        with pytest.raises(STHStartError) as info:
            await host.start(pkg)
        assert info.value.exit_code == 21  # read from /tmp/runner-<pid>
        assert "app.py" in info.value.crash_log and "does not exist" in info.value.crash_log


async def test_sequence_failing_on_import_exits_22(tmp_path: Path) -> None:
    """STH's hub supervises an Instance's exit only after its first PANG (ref §3.2): the runner sends
    it right after PONG, so a Sequence that fails to load ends "errored" (22), not half-initialized."""
    bad = tmp_path / "broken.py"
    bad.write_text("raise ImportError('no such thing')\n")
    async with new_host(tmp_path) as host:
        inst = await host.start(bad)
        with anyio.fail_after(10):
            await inst.wait_running()  # the first PANG, before the import that fails
        stderr = await collect(inst.stderr())
        assert b"ImportError: no such thing" in stderr
        assert await inst.wait() == 22
        assert inst.status == "errored" and inst.exit_code_from_file == 22
        await wait_for(lambda: b"runner: Sequence failed on start: " in inst.crash_log)  # STH's crash log
        assert b"ImportError: no such thing" in bytes(inst.crash_log)
        assert inst.reports[sth.STHCode.ERROR]["errorCode"] == 22
        assert inst.pangs == [{"requires": "", "contentType": ""}]
        pang, error = inst.received.index(sth.STHCode.PANG), inst.received.index(sth.STHCode.ERROR)
        assert inst.received[0] == sth.STHCode.PING and pang < error


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"RUNNER_CONNECT_INFO": "{not json"}, "RUNNER_CONNECT_INFO is not JSON"),
        ({"SEQUENCE_INFO": "[1]"}, "SEQUENCE_INFO is not a JSON object"),
        ({"INSTANCES_SERVER_PORT": "80a"}, "is not a port number"),
        ({"INSTANCE_ID": "too-short"}, "is not 36 ASCII characters"),
        ({"SEQUENCE_INFO": None}, "missing environment variable(s): SEQUENCE_INFO"),
        ({"SEQUENCE_PATH": "/nonexistent/main.py"}, "does not exist"),
    ],
)
def test_bad_environment_exit_codes_and_exit_code_file(
    tmp_path: Path, changes: dict[str, str | None], needle: str
) -> None:
    seq_path, info = sequence_info_for(seq("hello"), str(uuid.uuid4()))
    env = runner_env(sequence_path=seq_path, instance_id=str(uuid.uuid4()), port=1, sequence_info=info,
                     connect_info={"args": []}, runner_pythonpath=str(ROOT))
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    # the pid is only known once started: a tiny wrapper reports it before exec'ing the runner
    wrapper = ("import os, sys; print(os.getpid(), flush=True); "
               "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    proc = subprocess.run([sys.executable, "-c", wrapper, *RUNNER_COMMAND, "./startup.log"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    expected = 21 if "SEQUENCE_PATH" in changes else 20
    assert proc.returncode == expected, proc.stderr
    assert needle in proc.stderr
    pid = int(proc.stdout.split()[0])
    exit_file = Path(sth.exit_code_file(pid))
    try:
        assert exit_file.read_text() == str(expected)
    finally:
        exit_file.unlink(missing_ok=True)
    log = (tmp_path / "startup.log").read_text()
    assert needle in log  # the startup log gets it too (before LOG is connected)


def test_no_host_listening_exits_20(tmp_path: Path) -> None:
    with socket_port() as port:
        seq_path, info = sequence_info_for(seq("hello"), str(uuid.uuid4()))
        env = runner_env(sequence_path=seq_path, instance_id=str(uuid.uuid4()), port=port, sequence_info=info,
                         connect_info={}, runner_pythonpath=str(ROOT))
        env["SEQUENCE_RUNNER_CONNECT_TIMEOUT"] = "2"
        proc = run_sth_runner([sys.executable, *RUNNER_COMMAND], env=env, cwd=tmp_path)
    assert proc.returncode == 20, proc.stderr
    assert "cannot connect to the STH host" in proc.stderr


class socket_port:
    """A local port nobody listens on."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port: int = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        pass


async def test_startup_log_argument_does_not_leak_and_exit_timeout_default(tmp_path: Path) -> None:
    async with new_host(tmp_path, runner_envs={"SEQUENCE_RUNNER_STH_EXIT_TIMEOUT_MS": ""}) as host:
        inst = await host.start(seq("argv-check"), app_config={"k": "v"})
        report = json.loads(await collect(inst.output()))
        started = time.monotonic()
        assert await inst.wait() == 0
        waited = time.monotonic() - started
        assert report["argv"] == []  # STH-Py left "./python-runner-startup.log" for argparse to find
        assert report["config"] == {"k": "v"}
        assert Path(report["cwd"]) == seq("argv-check")
        assert waited >= 0.8  # SEQUENCE_COMPLETED {timeout: 1000}: the host drains before the exit
    log = (tmp_path / "python-runner-startup.log").read_text()
    assert "STH mode: instance" in log


async def test_ping_fields_and_exit_code_file_on_success(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("hello"))
        ping = inst.ping
        assert ping is not None
        assert ping["id"] == inst.id and ping["status"] == "starting" and ping["inputHeadersSent"] is False
        assert isinstance(ping["created"], int) and abs(ping["created"] / 1000 - time.time()) < 60
        assert ping["payload"]["system"] == {"processPID": str(inst.pid)}
        assert ping["sequenceInfo"]["config"]["name"] == "hello"
        await inst.end_input()
        assert await collect(inst.output()) == b""
        assert await inst.wait() == 0
        assert inst.exit_code_from_file == 0
        assert not os.path.exists(sth.exit_code_file(inst.pid or 0))  # the host consumed it


def test_a_stale_exit_code_file_of_a_reused_pid_is_removed_at_start() -> None:
    """A file left by an earlier process with the same PID must not stand for this runner's exit."""
    import subprocess
    import sys

    from runner.protocol import sth

    code = (
        "import os, sys; from runner.protocol import sth; "
        "open(sth.exit_code_file(os.getpid()), 'w').write('0'); "
        "sys.argv = ['runner', './startup.log']; "
        "import runner.sth_mode as m, logging; "
        "m._remove_stale_exit_code_file(logging.getLogger('t')); "
        "print(os.path.exists(sth.exit_code_file(os.getpid())))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert sth.exit_code_file(1).startswith("/tmp/runner-")
