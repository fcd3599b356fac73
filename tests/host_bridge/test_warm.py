"""Warm starts (host_bridge.zygote): a forked runner is a fresh process that looks like a cold one.

The rest of tests/host_bridge and tests/runner run in warm mode too (HOST_BRIDGE_WARM=1, .ci/run):
these tests check what only a comparison can show, side by side with a cold start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from hb_helpers import SAMPLES, collect

from host_bridge import Bridge, Status
from host_bridge.zygote import Zygote, decode_status, template_environment

pytestmark = pytest.mark.anyio

#: Reports what the process looks like from inside run() (the runner's threads are up by then).
PROBE = '''
import json, os, random, signal, socket, stat, sys, threading

def _fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        kind = ("socket" if stat.S_ISSOCK(mode) else "pipe" if stat.S_ISFIFO(mode) else
                "chr" if stat.S_ISCHR(mode) else "file" if stat.S_ISREG(mode) else "other")
        out[fd] = kind
    return out

async def run(context, input):
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP, signal.SIGUSR1):
        h = signal.getsignal(sig)
        handlers[sig.name] = h if isinstance(h, int) else "python"
    facts = {
        "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
        "fds": _fds(), "fd0": os.readlink("/proc/self/fd/0"),
        "signals": handlers, "wakeup_fd": signal.set_wakeup_fd(-1),
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "threads": sorted(t.name for t in threading.enumerate()),
        "random": random.random(), "urandom": os.urandom(8).hex(),
        "env": os.environ.get("PROBE_VALUE"), "bridge_only": os.environ.get("PROBE_BRIDGE_ONLY"),
        "cwd": os.getcwd(), "argv0": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
        "path": sys.path, "main": getattr(sys.modules["__main__"], "__spec__").name,
        "name": __name__,
        "cgroup_v2": [line[3:] for line in open("/proc/self/cgroup").read().splitlines() if line.startswith("0::")],
        "modules": sorted(sys.modules),
    }
    yield json.dumps(facts) + "\\n"
'''


@pytest.fixture
def probe(tmp_path: Path) -> str:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return str(path)


async def _facts(bridge: Bridge, probe: str, **spawn: Any) -> dict[str, Any]:
    inst = await bridge.spawn(probe, **spawn)
    inst.discard("stdout", "stderr", "log")
    await inst.end_input()
    with anyio.fail_after(30):
        out = await collect(inst.output())
        assert await inst.wait() == 0, inst.info.error
    assert inst.status is Status.COMPLETED
    facts: dict[str, Any] = json.loads(out)
    facts["instance_pid"] = inst.pid
    facts["info_cgroup"] = inst.info.cgroup
    return facts


async def test_a_forked_runner_is_a_fresh_process_like_a_cold_one(probe: str, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    spawn: dict[str, Any] = {"env": {"PROBE_VALUE": "per instance"}, "cwd": str(workdir)}
    async with Bridge(warm=False) as cold_bridge:
        cold = await _facts(cold_bridge, probe, **spawn)
    async with Bridge(warm=True) as bridge:
        assert bridge.warm is not None
        zygote = await bridge.warm.ready()
        assert zygote is not None, bridge.warm.error
        first = await _facts(bridge, probe, **spawn)
        second = await _facts(bridge, probe, **spawn)
    for warm in (first, second):
        assert warm["ppid"] == zygote.pid  # really forked from the template
        assert warm["pid"] == warm["instance_pid"] == warm["pgid"] == warm["sid"]  # own session and group
        # the same fds of the same kinds (the connection's number differs: --fd 3 instead of the host's)
        assert sorted(warm["fds"].values()) == sorted(cold["fds"].values())
        assert [warm["fds"][n] for n in "012"] == [cold["fds"][n] for n in "012"] == ["chr", "pipe", "pipe"]
        assert (warm["wakeup_fd"] >= 0) == (cold["wakeup_fd"] >= 0)  # the loop's, whatever its number
        for key in ("fd0", "signals", "blocked", "threads", "env", "cwd", "argv0", "main", "name"):
            assert warm[key] == cold[key], key
        assert warm["argv"][0] == cold["argv"][0] == "--fd" and warm["argv"][2:] == cold["argv"][2:]
        assert warm["path"] == cold["path"]  # the Sequence's root, cwd, PYTHONPATH, then the interpreter's
        assert str(workdir) in warm["path"]
        # the template imported what a cold runner imports, the way it imports it (asyncio without
        # ssl, no anyio): only the template's own modules come extra (ctypes: its clone3 call; its
        # compiled loop between forks)
        template_own = {"gc", "mmap", "resource", "runner.warm", "runner.warm_startup", "runner.warm_codes",
                        "runner.warm_functions",
                        "ctypes", "_ctypes", "ctypes._endian", "runner._warm_serve_c"}
        assert set(warm["modules"]) - set(cold["modules"]) <= template_own
    assert cold["ppid"] == os.getpid() and cold["pid"] == cold["sid"]
    for facts in (cold, first, second):  # in its own cgroup when the system lets host_bridge make one
        if facts["info_cgroup"]:  # (a warm one is born there: clone3 CLONE_INTO_CGROUP)
            assert facts["cgroup_v2"] and facts["info_cgroup"].endswith(facts["cgroup_v2"][0])
    assert first["pid"] != second["pid"]
    assert first["random"] != second["random"] and first["urandom"] != second["urandom"]  # reseeded


async def test_environment_read_at_start_up_makes_a_cold_start(probe: str) -> None:
    """A PYTHON* variable the template did not start with cannot reach a fork: that Instance
    starts cold (and still works)."""
    async with Bridge(warm=True) as bridge:
        assert bridge.warm is not None
        zygote = await bridge.warm.ready()
        assert zygote is not None
        facts = await _facts(bridge, probe, env={"PYTHONWARNINGS": "ignore", "PROBE_VALUE": "x"})
        assert facts["ppid"] == os.getpid() and facts["env"] == "x"
        custom = await _facts(bridge, probe, command=[zygote.python, "-m", "runner"])
        assert custom["ppid"] == os.getpid()


async def test_warm_runners_end_and_report_like_cold_ones() -> None:
    async with Bridge(warm=True) as bridge:
        hello = await bridge.spawn(str(SAMPLES / "hello"))
        failing = await bridge.spawn(str(SAMPLES / "failing"))
        await hello.send_input(["Alice\n"])
        with anyio.fail_after(30):
            assert await collect(hello.output()) == b"Hello Alice!\n"
            assert await hello.wait() == 0
            code = await failing.wait()
        assert failing.status is Status.ERRORED and code not in (0, None)
        spinner = await bridge.spawn(str(SAMPLES / "cpu-bound"))
        assert await spinner.wait_started()
        await spinner.kill()
        with anyio.fail_after(30):
            assert await spinner.wait() == 137


def _zygote(loop: str) -> Zygote:
    """A started template serving with its compiled loop (runner/_warm_serve_c.pyx) or its Python one."""
    env = template_environment()
    env["SEQUENCE_RUNNER_PURE_PYTHON"] = "1" if loop == "python" else "0"
    if loop == "python":  # CI's first pass requires the extensions; the two settings exclude each other
        env["SEQUENCE_RUNNER_REQUIRE_EXTENSION"] = "0"
    if loop == "compiled":
        pytest.importorskip("runner._warm_serve_c", reason="the compiled template loop is not built")
    zygote = Zygote(env=env)
    zygote.start()
    try:
        # the compiled loop reads SIGCHLD from a signalfd: blocked in the template (not in its forks)
        with open(f"/proc/{zygote.pid}/status") as f:
            blocked = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
        assert bool(blocked & 1 << (signal.SIGCHLD - 1)) == (loop == "compiled")
    except BaseException:
        zygote.close()
        raise
    return zygote


@pytest.mark.parametrize("loop", ["compiled", "python"])
def test_a_fork_that_fails_is_reported_and_the_template_keeps_serving(tmp_path: Path, loop: str) -> None:
    zygote = _zygote(loop)
    try:
        for cwd, expected in ((str(tmp_path / "missing"), 70), (str(tmp_path), 20)):
            out_r, out_w = os.pipe()
            conn = os.open(os.devnull, os.O_RDWR)
            _, status = zygote.fork(["--fd", "3"], {"PATH": os.environ.get("PATH", "")}, cwd, None,
                                      conn, out_w, out_w)
            os.close(out_w)
            os.close(conn)
            status.settimeout(30)
            with os.fdopen(out_r, "rb") as out:
                text = out.read().decode()
            assert decode_status(status.recv(4)) == expected, text
            status.close()
            if expected == 70:  # the child could not become a runner: its traceback, as a cold start's
                assert "FileNotFoundError" in text
            else:  # a runner started without its settings: exit 20 naming the first one missing
                assert text.startswith("runner: missing instance id")
    finally:
        zygote.close()
    assert not zygote.alive


@pytest.mark.parametrize("loop", ["compiled", "python"])
def test_a_request_the_template_cannot_read_is_answered_and_it_keeps_serving(tmp_path: Path, loop: str) -> None:
    zygote = _zygote(loop)
    try:
        status_ours, status_theirs = socket.socketpair()
        fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
        try:
            control = zygote._send(b'{"args": []}', [*fds, status_theirs.fileno()])  # no cgroup part
            reply = json.loads(control.recv(1 << 16))
        finally:
            for fd in fds:
                os.close(fd)
            status_theirs.close()
        assert reply == {"error": "ValueError: a fork request starts with the cgroup directory (or nothing) "
                                  "and a NUL byte"}
        assert status_ours.recv(4) == b""  # the template closed the status socket it was given
        status_ours.close()
        status_ours, status_theirs = socket.socketpair()
        fds = [os.open(os.devnull, os.O_RDWR) for _ in range(4)]
        try:  # one fd more than a request has: refused, not cut short by the kernel
            control = zygote._send(b"\0{}", [*fds, status_theirs.fileno()])
            reply = json.loads(control.recv(1 << 16))
        finally:
            for fd in fds:
                os.close(fd)
            status_theirs.close()
        assert reply == {"error": "ValueError: a fork request is at most 1048576 bytes and 4 fds"}
        status_ours.close()
        out_r, out_w = os.pipe()
        conn = os.open(os.devnull, os.O_RDWR)
        _, status = zygote.fork(["--fd", "3"], {"PATH": os.environ.get("PATH", "")}, str(tmp_path), None,
                                conn, out_w, out_w)
        os.close(out_w)
        os.close(conn)
        status.settimeout(30)
        with os.fdopen(out_r, "rb") as out:
            assert out.read().decode().startswith("runner: missing instance id")
        assert decode_status(status.recv(4)) == 20
        status.close()
    finally:
        zygote.close()


async def test_concurrent_warm_spawns_each_get_their_own_fork(probe: str, tmp_path: Path) -> None:
    """Fork requests from the event loop and from a thread at once: each reply (the pid) is the
    fork made for that request, so every Instance watches its own runner."""
    async with Bridge(warm=True) as bridge:
        assert bridge.warm is not None
        zygote = await bridge.warm.ready()
        assert zygote is not None

        def fork_from_a_thread() -> int:
            out_r, out_w = os.pipe()
            conn = os.open(os.devnull, os.O_RDWR)
            try:
                _, status = zygote.fork(["--fd", "3"], {"PATH": os.environ.get("PATH", "")}, str(tmp_path),
                                        None, conn, out_w, out_w)
            finally:
                os.close(out_w)
                os.close(conn)
            with os.fdopen(out_r, "rb") as out:
                out.read()
            status.settimeout(30)
            code = decode_status(status.recv(4))
            status.close()
            assert code is not None
            return code

        facts: list[dict[str, Any]] = []
        codes: list[int] = []

        async def one() -> None:
            facts.append(await _facts(bridge, probe))

        async def threaded() -> None:
            codes.append(await anyio.to_thread.run_sync(fork_from_a_thread))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(threaded)
                tg.start_soon(one)
                tg.start_soon(one)
    assert codes == [20, 20, 20]  # no settings: "missing instance id", exit 20
    assert len(facts) == 6
    assert all(f["pid"] == f["instance_pid"] and f["ppid"] == zygote.pid for f in facts), facts
    assert len({f["pid"] for f in facts}) == 6
