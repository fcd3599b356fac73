"""Start-up, idle memory and completion latency, each beside a baseline measured the same way.

Every process here is started by the same code (host_bridge's ``start_process``: the same
flags, environment and inherited socketpair) and timed the same way: from just before the
spawn to the first byte it writes on its socket. For a runner that byte is its PING; for
the floors (``python -c pass``, ``python -c "import asyncio"``) it is one byte written
right after the interpreter (and asyncio) is up. So "runner / floor" compares like with
like, whatever the machine's load. Through a Bridge, one spawn gives two figures: the
handshake (PING/PONG, which the runner reaches before it imports asyncio, anyio or the
Sequence) and the first PANG (the Sequence is loaded): the latter is "ready".

Beside each time, the CPU the process's threads had used by then (``/proc/PID/task/*/schedstat``):
on this shared machine a spawn's wall time follows the other work, its CPU much less, so
"runner CPU / floor CPU" is the steadier comparison. For a floor that is the CPU up to its
byte (it sleeps after writing it); for a runner, up to the moment the host saw its PANG.

STH mode: ``sth_host.STHHost`` (tests/sth_host) starts our runner and, when a checkout of STH's own
Python runner is given (``run.py --sth-runner DIR --sth-python PY``), theirs too, in the
same rounds; ready is PING received ("established") for both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from common import SEQUENCES, cpu_seconds_all_threads, private_bytes, rss_bytes

from host_bridge import Bridge
from host_bridge.link import wait_readable
from host_bridge.process import SpawnOptions, signal_group, start_process

#: What the floors run: write one byte on the inherited socket (argv: -c, --fd, N, --sequence, S).
_SAY_READY = "import socket,sys;socket.socket(fileno=int(sys.argv[2])).send(b'!')"
FLOORS = {
    "interpreter": _SAY_READY,
    "import_asyncio": "import asyncio;" + _SAY_READY,
}
#: The floors for memory: the same code, then sleep (RSS read while it sleeps).
_SLEEP = ";import time;time.sleep(60)"


def seq(name: str) -> str:
    return str(SEQUENCES / name)


async def _spawn_until_first_byte(command: list[str] | None, sequence: str, keep: bool = False
                                  ) -> tuple[float, Any, socket.socket]:
    """Seconds from spawn to the first byte on the socket; the process (killed unless ``keep``)."""
    ours, theirs = socket.socketpair()
    spec = SpawnOptions(sequence=sequence, command=command, fd=theirs.fileno())
    env = spec.environment("bench-start", "bench-token")
    start = time.perf_counter()
    try:
        proc = await start_process(spec, env, [theirs.fileno()])
    finally:
        theirs.close()
    with anyio.fail_after(30):
        await wait_readable(ours)
    elapsed = time.perf_counter() - start
    if not ours.recv(1, socket.MSG_PEEK):
        raise RuntimeError(f"{command or 'runner'} closed its socket without writing")
    if not keep:
        await _end(proc)
        ours.close()
    return elapsed, proc, ours


async def _end(proc: Any) -> None:
    signal_group(proc.pid, signal.SIGKILL)
    with anyio.fail_after(30):
        await proc.wait()
    await proc.aclose()


async def cold_ready(kind: str) -> dict[str, float]:
    """Spawn -> first byte, and the CPU used by then: ``kind`` is "runner" (its PING) or a key of
    FLOORS (which then sleeps, so its CPU is read before it can do anything else)."""
    command = None if kind == "runner" else [sys.executable, "-c", FLOORS[kind] + _SLEEP]
    seconds, proc, ours = await _spawn_until_first_byte(command, seq("echo-events"), keep=True)
    cpu = cpu_seconds_all_threads(proc.pid)
    await _end(proc)
    ours.close()
    if cpu is None:
        raise RuntimeError(f"no CPU figure for {kind} (pid {proc.pid})")
    return {"ready": seconds, "cpu": cpu}


async def bridge_ready(bridge: Bridge) -> dict[str, float]:
    """One ``bridge.spawn()``, two figures: -> handshake done (``wait_started``, PING/PONG), and
    -> the first PANG (``requires`` announced: the Sequence is loaded), issue 13's "ready"; and the
    runner's CPU when the host saw that PANG."""
    start = time.perf_counter()
    inst = await bridge.spawn(seq("echo-events"))
    with anyio.fail_after(30):
        if not await inst.wait_started():
            raise RuntimeError(f"runner did not start: {inst.info.error}")
        handshake = time.perf_counter() - start
        state = await inst.wait_until(lambda s: s.requires is not None or s.done)
    pang = time.perf_counter() - start
    cpu = cpu_seconds_all_threads(inst.pid) if inst.pid else None
    if state.requires is None or cpu is None:
        raise RuntimeError(f"runner ended before its PANG: {inst.info.error or inst.info.exit_reason}")
    await inst.kill()
    with anyio.fail_after(30):
        await inst.wait()
    return {"handshake": handshake, "pang": pang, "pang_cpu": cpu}


async def sth_ready(sth_host: Any) -> dict[str, float]:
    """One STHHost.start(), three figures, for whichever runner it starts: -> PING received (STH's
    "established"), -> the first PANG (STH's hub marks the Instance running) and -> the Sequence's
    "ready" event (its run() was called: the Sequence is loaded). Both runners send their first
    PANG (``{requires: "", contentType: ""}``) right after PONG, before they load the Sequence
    (ours from runner/hello.py, docs/sth-compat.md §3), so the last figure is the one that says
    how soon the Sequence runs."""
    start = time.perf_counter()
    with anyio.fail_after(30):
        inst = await sth_host.start(seq("echo-events"), app_config={}, args=[])
    ping = time.perf_counter() - start
    with anyio.fail_after(30):
        await inst.wait_running()
    pang = time.perf_counter() - start
    with anyio.fail_after(30):
        await inst.last_event("ready")
    ready = time.perf_counter() - start
    await inst.kill()
    with anyio.fail_after(30):
        await inst.wait()
    return {"ping": ping, "pang": pang, "ready": ready}


# -- idle memory -------------------------------------------------------------------------------


def _memory(pid: int | None) -> dict[str, int]:
    rss = rss_bytes(pid) if pid else None
    uss = private_bytes(pid) if pid else None
    if rss is None or uss is None:
        raise RuntimeError(f"no memory figures for pid {pid}")
    return {"rss": rss, "uss": uss}


async def floor_memory(kind: str, settle: float = 0.5) -> dict[str, int]:
    _, proc, ours = await _spawn_until_first_byte([sys.executable, "-c", FLOORS[kind] + _SLEEP],
                                                  seq("echo-events"), keep=True)
    try:
        await anyio.sleep(settle)
        return _memory(proc.pid)
    finally:
        await _end(proc)
        ours.close()


async def bridge_memory(bridge: Bridge, settle: float = 1.0) -> dict[str, int]:
    """A runner whose Sequence waits on events, ``settle`` s after it said "ready"."""
    inst = await bridge.spawn(seq("echo-events"))
    ready = inst.events("ready")
    await inst.wait_started()
    inst.discard("stdout", "stderr", "log")
    with anyio.fail_after(30):
        await ready.receive()
    await anyio.sleep(settle)
    try:
        return _memory(inst.pid)
    finally:
        await inst.kill()
        with anyio.fail_after(30):
            await inst.wait()


async def sth_memory(sth_host: Any, settle: float = 1.0) -> dict[str, int]:
    with anyio.fail_after(30):
        inst = await sth_host.start(seq("echo-events"), app_config={}, args=[])
        await inst.wait_running()
    await anyio.sleep(settle)
    try:
        return _memory(inst.pid)
    finally:
        await inst.kill()
        with anyio.fail_after(30):
            await inst.wait()


# -- completion latency ------------------------------------------------------------------------


async def _completion(start: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
                      ) -> dict[str, float]:
    """identity-text: one line in and back (so run() is running, start-up is over), then the
    input ends: input end -> output end, and -> exit."""
    inst = await start()
    output = inst.output().__aiter__()
    await send(inst)
    got = b""
    with anyio.fail_after(30):
        while not got.endswith(b"done\n"):
            got += await output.__anext__()
    await inst.end_input()
    t0 = time.perf_counter()
    with anyio.fail_after(30):
        async for chunk in output:
            got += chunk
    t1 = time.perf_counter()
    with anyio.fail_after(30):
        code = await inst.wait()
    t2 = time.perf_counter()
    # STH's runner hands the IN header block to a Sequence that declares `requires` (its fault,
    # reference §6): the line must still come back, last.
    if not got.endswith(b"done\n") or code != 0:
        raise AssertionError(f"completion: output {got!r}, exit {code}")
    return {"output_end_s": t1 - t0, "exit_s": t2 - t0}


async def completion_native(bridge: Bridge) -> dict[str, float]:
    async def start() -> Any:
        inst = await bridge.spawn(seq("identity-text"))
        inst.discard("stdout", "stderr", "log")
        with anyio.fail_after(30):
            await inst.wait_started()
        return inst

    async def send(inst: Any) -> None:
        await inst.write_input(b"done\n")

    return await _completion(start, send)


async def completion_sth(sth_host: Any) -> dict[str, float]:
    from runner.protocol.sth import STHChannel

    async def start() -> Any:
        with anyio.fail_after(30):
            inst = await sth_host.start(seq("identity-text"), app_config={}, args=[])
            await inst.wait_running()
        for channel in (STHChannel.STDOUT, STHChannel.STDERR, STHChannel.LOG):
            inst.discard(channel)
        return inst

    async def send(inst: Any) -> None:
        await inst.send_input(b"done\n", "text/plain")

    return await _completion(start, send)


def sth_runner_host(runner_dir: str, python: str, cwd: str) -> Any:
    """An STHHost that starts STH's own Python runner (``DIR/runner.py`` on ``python``) as STH does."""
    from sth_host import STHHost

    return STHHost(port=0, cwd=cwd, python=python, runner_command=[os.path.join(runner_dir, "runner.py")],
                   runner_pythonpath=runner_dir)


def check_sth_runner(runner_dir: str, python: str) -> None:
    if not os.path.isfile(os.path.join(runner_dir, "runner.py")):
        raise SystemExit(f"--sth-runner: no runner.py in {runner_dir}")
    done = subprocess.run([python, "-c", "import pyee, scramjet"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"--sth-python {python}: cannot import pyee and scramjet (STH's runner needs them): "
                         f"{done.stderr.strip()[-300:]}")


async def many_idle(bridge: Bridge, count: int, settle: float = 2.0) -> dict[str, Any]:
    """``count`` Instances of echo-events at once: spawn -> all ready, then their memory while idle
    and whether every one still answers an event."""
    start = time.perf_counter()
    insts, readies = [], []
    for _ in range(count):
        inst = await bridge.spawn(seq("echo-events"))
        readies.append(inst.events("ready"))  # subscribed before the runner can have said it
        inst.discard("stdout", "stderr", "log")
        insts.append(inst)
    with anyio.fail_after(120):
        for ready in readies:
            await ready.receive()
    all_ready = time.perf_counter() - start
    await anyio.sleep(settle)
    memory = [_memory(inst.pid) for inst in insts]
    answered = 0
    with anyio.fail_after(60):
        for inst in insts:
            with inst.events("pong") as pongs:
                await inst.send_event("ping", inst.id)
                event = await pongs.receive()
                answered += event is not None and event.message == inst.id
    for inst in insts:
        await inst.kill()
    with anyio.fail_after(120):
        for inst in insts:
            await inst.wait()
    return {"count": count, "all_ready_s": all_ready, "answered": answered,
            "rss_sum": sum(m["rss"] for m in memory), "uss_sum": sum(m["uss"] for m in memory),
            "uss_median": sorted(m["uss"] for m in memory)[count // 2]}
