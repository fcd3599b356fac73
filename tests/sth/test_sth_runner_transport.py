"""The STH transport itself against the real runner: reconnect (ref §3.8g), nine connections on every
Python 3.10-3.13 found, channel hygiene, and PID-1 behaviour (the Docker image has no init)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_sth_runner_support import RUNNER_COMMAND, collect, new_host, read_until, seq, wait_for

from runner.protocol.sth import STHCode

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

FAST_RECONNECT = {"SEQUENCE_RUNNER_STH_RECONNECT_DELAY": "0.3"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- reconnect ----------------------------------------------------------------------------------------


async def test_reconnect_after_the_host_drops_the_connections(tmp_path: Path) -> None:
    """The host closes all nine (a restart): the runner reconnects, PINGs with inputHeadersSent and its
    status, re-sends its PANGs, and the Sequence goes on with the same input and output streams."""
    async with new_host(tmp_path, runner_envs=FAST_RECONNECT) as host:
        inst = await host.start(seq("hello"))
        out = inst.output()
        await inst.send_input(b"before\n")
        assert await read_until(out, b"Hello before!\n") == b"Hello before!\n"
        pangs = len(inst.pangs)
        session = inst._session
        assert session is not None and session.scope is not None
        session.scope.cancel()  # the host goes away: every connection closes
        await wait_for(lambda: inst.pings >= 2, 10)
        assert inst.reconnects == 1
        assert inst.ping is not None
        assert inst.ping["inputHeadersSent"] is True and inst.ping["status"] == "running"
        assert inst.ping["payload"]["system"]["processPID"] == str(inst.pid)
        await wait_for(lambda: len(inst.pangs) >= pangs + 1, 5)
        assert inst.pangs[pangs] == inst.pangs[0]  # {requires: "", contentType: ""} again
        await inst.send_input(b"after\n")  # no second header block (the PING said it was sent)
        await inst.end_input()
        assert await collect(out) == b"Hello after!\n"
        assert await inst.wait() == 0


async def test_missing_monitoring_reply_is_a_disconnect(tmp_path: Path) -> None:
    """No CONTROL line within 1 s of a heartbeat: the runner drops all nine and reconnects."""
    async with new_host(tmp_path, runner_envs=FAST_RECONNECT) as host:
        inst = await host.start(seq("events"))
        await inst.wait_running()
        await inst.health()
        inst.reply_to_heartbeats = False
        await wait_for(lambda: not inst.connected, 10)
        inst.reply_to_heartbeats = True
        await wait_for(lambda: inst.pings >= 2 and inst.connected, 10)
        assert inst.reconnects == 1
        assert inst.ping is not None and inst.ping["inputHeadersSent"] is False
        replies: list[object] = []

        async def wait_reply() -> None:
            replies.append(await inst.once("test-response"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_reply)
            await anyio.sleep(0.05)
            await inst.send_event("test-event", "again")
        assert replies == ["reply to again"]
        await inst.kill()
        assert await inst.wait() == 137


# -- the handshake ------------------------------------------------------------------------------------


async def test_control_messages_around_pong_are_delivered_after_it(tmp_path: Path) -> None:
    """Ref §3.2: a runner that waits for PONG must tolerate other messages first. The host writes an
    EVENT before PONG and one after it, in PONG's write: runner/hello.py reads them while it waits for
    PONG (and writes the first PANG), and the Sequence still gets both, each once."""
    before = [(STHCode.EVENT, {"eventName": "test-event", "message": "before", "source": "api"})]
    after = [(STHCode.EVENT, {"eventName": "ping", "message": "after", "source": "api"})]
    async with new_host(tmp_path, around_pong=(before, after)) as host:
        inst = await host.start(seq("events"))
        logs = inst.log()
        with anyio.fail_after(10):
            assert await inst.last_event("test-response") == "reply to before"
            assert await inst.last_event("pong") == "reply to after"
        assert inst.pangs == [{"requires": "", "contentType": ""}]
        await inst.kill()
        assert await inst.wait() == 137
        log = await collect(logs)
    assert log.count(b"Got 'test-event' with 'before'") == 1 and log.count(b"Got 'ping' with 'after'") == 1


async def test_kill_before_pong_ends_the_instance_after_its_first_pang(tmp_path: Path) -> None:
    """A KILL that came before PONG is acted on right after it: the Instance was "running" (first
    PANG) and ends killed (137, which STH reports as completed)."""
    async with new_host(tmp_path, around_pong=([(STHCode.KILL, {})], [])) as host:
        inst = await host.start(seq("events"))
        assert await inst.wait() == 137
        assert inst.exit_code_from_file == 137 and inst.status == "completed"
        assert inst.pangs == [{"requires": "", "contentType": ""}]


# -- every interpreter ----------------------------------------------------------------------------------


def _interpreters() -> list[Any]:
    """Python 3.10-3.13 from pyenv or PATH that can import the runner's dependencies."""
    found: list[Any] = []
    for minor in (10, 11, 12, 13):
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}*/bin/python")))
        which = shutil.which(f"python3.{minor}")
        if which:
            candidates.append(which)
        if sys.version_info[:2] == (3, minor):
            candidates.insert(0, sys.executable)
        exe = None
        for cand in candidates:
            try:
                ok = subprocess.run([cand, "-c", "import msgpack, anyio"], check=False, capture_output=True,
                                    timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                exe = cand
                break
        mark = pytest.mark.skipif(exe is None, reason=f"no python3.{minor} with msgpack and anyio")
        found.append(pytest.param(exe, id=f"py3.{minor}", marks=mark))
    return found


@pytest.mark.parametrize("python", _interpreters())
async def test_nine_connection_handshake_on_each_python(tmp_path: Path, python: str) -> None:
    """STH's own runner fails this handshake from Python 3.11.7 on (it half-closes what it reads)."""
    async with new_host(tmp_path, python=python) as host:
        inst = await host.start(seq("hello"))
        await inst.wait_running()
        assert (await inst.health())["healthy"] is True
        assert len(host.refused) == 0
        await inst.send_input(b"3.x\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"Hello 3.x!\n"
        assert await inst.wait() == 0
        assert inst.protocol_errors == []


async def test_runner_never_half_closes_what_it_reads(tmp_path: Path) -> None:
    """The host can still write STDIN, CONTROL, IN and PACKAGE long after the handshake; PACKAGE is drained."""
    async with new_host(tmp_path) as host:
        inst = await host.start(seq("events"))
        await inst.wait_running()
        session = inst._session
        assert session is not None
        await session.streams[8].send(b"\x00" * 300_000)  # BPMux frames nobody reads would fill the buffer
        await inst.send_stdin(b"ignored\n")
        await inst.send_event("test-event", "still open")
        assert await inst.once("test-response") == "reply to still open"
        await inst.kill()
        assert await inst.wait() == 137


# -- PID 1 (the Docker image runs `python -m runner` as the container's init) ----------------------------


def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, "--pid", "--fork", "--kill-child", sys.executable, "-c",
                               "import os, sys; sys.exit(0 if os.getpid() == 1 else 1)"],
                              capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_pid_namespace = pytest.mark.skipif(not _unshare_works(), reason="cannot create a PID namespace here")


def _pid1_host(tmp_path: Path, **kw: Any) -> Any:
    unshare = shutil.which("unshare")
    assert unshare is not None
    return new_host(tmp_path, python=unshare, exit_code_source="process",
                    runner_command=["--pid", "--fork", "--kill-child", sys.executable, *RUNNER_COMMAND], **kw)


@needs_pid_namespace
async def test_pid1_reaps_orphans(tmp_path: Path) -> None:
    async with _pid1_host(tmp_path) as host:
        inst = await host.start(seq("zombie-maker"), args=["6.5"])
        assert inst.ping is not None and inst.ping["payload"]["system"]["processPID"] == "1"
        out = (await collect(inst.output())).decode()
        assert out.startswith("pid=1 ")
        assert "zombies_before=1" in out  # the orphan became our child and exited
        assert "zombies_after=0" in out  # and the runner, as init, reaped it
        assert await inst.wait() == 0
    Path("/tmp/runner-1").unlink(missing_ok=True)


@needs_pid_namespace
async def test_pid1_handles_sigterm(tmp_path: Path) -> None:
    """PID 1 ignores signals it has no handler for: the runner handles SIGTERM (stop, then exit 138)."""
    async with _pid1_host(tmp_path) as host:
        inst = await host.start(seq("stop-handler"))
        await read_until(inst.stdout(), b"started\n")
        proc = inst._process
        assert proc is not None
        runner_pid = _only_child(proc.pid)
        os.kill(runner_pid, signal.SIGTERM)
        with anyio.fail_after(15):
            assert await inst.wait() == 138
        assert inst.reports == {} or STHCode.ERROR not in inst.reports
    Path("/tmp/runner-1").unlink(missing_ok=True)


def _only_child(pid: int) -> int:
    children: list[str] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += f.read().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.parametrize("pid1", [False, pytest.param(True, marks=needs_pid_namespace)], ids=["child", "pid1"])
def test_sigterm_before_the_handshake_exits_138_with_the_exit_code_file(tmp_path: Path, pid1: bool) -> None:
    """SIGTERM while the runner waits for PONG (a hub that stops an instance still starting, or
    `docker stop` of a PID 1 runner) ends it at once, with the code in /tmp/runner-<pid>."""
    import socket
    import time
    import uuid

    from host_bridge.sth import runner_env, sequence_info_for
    from runner.protocol import sth

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the nine connections complete in the backlog; nobody ever sends PONG
    conns: list[socket.socket] = []
    seq_path, info = sequence_info_for(seq("hello"), str(uuid.uuid4()))
    env = runner_env(sequence_path=seq_path, instance_id=str(uuid.uuid4()), port=server.getsockname()[1],
                     sequence_info=info, connect_info={}, runner_pythonpath=str(Path(__file__).parents[2]))
    env["SEQUENCE_RUNNER_CONNECT_TIMEOUT"] = "30"
    prefix = [shutil.which("unshare") or "unshare", "--pid", "--fork", "--kill-child"] if pid1 else []
    proc = subprocess.Popen([*prefix, sys.executable, *RUNNER_COMMAND, "./startup.log"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server.settimeout(20)
        while len(conns) < sth.CHANNEL_COUNT:
            conns.append(server.accept()[0])
        deadline = time.monotonic() + 20
        got = {c: b"" for c in conns}
        while not any(b'"id"' in data for data in got.values()):  # the PING line on MONITORING
            assert time.monotonic() < deadline, "no PING"
            for c in conns:
                c.settimeout(0.05)
                try:
                    got[c] += c.recv(65536)
                except TimeoutError:
                    pass
        runner_pid = _only_child(proc.pid) if pid1 else proc.pid
        sent = time.monotonic()
        os.kill(runner_pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in conns:
            c.close()
        server.close()
    exit_file = Path(sth.exit_code_file(1 if pid1 else proc.pid))
    try:
        assert proc.returncode == 138, err
        assert waited < 2
        assert "SIGTERM before the handshake completed" in err  # the hub's crash log
        assert exit_file.read_text() == "138"
    finally:
        exit_file.unlink(missing_ok=True)
    assert "stopped by a signal before the handshake" in (tmp_path / "startup.log").read_text()
