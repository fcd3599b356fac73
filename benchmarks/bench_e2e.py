"""End-to-end benchmarks through host_bridge and real ``python -m runner`` processes.

Each function runs one measurement (one run) and returns plain numbers; run.py
repeats them, interleaves them with their baselines and takes medians. The
Sequences are in benchmarks/sequences/.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio
from common import SEQUENCES, Hasher, Verifier, percentile, rss_bytes, slope

from host_bridge import Bridge, Instance

OCTET = "application/octet-stream"
TEXT = "text/plain"
NDJSON = "application/x-ndjson"

Checker = Hasher | Verifier


def seq(name: str) -> str:
    return str(SEQUENCES / name)


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of ``pid`` so far (None when it is gone)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


async def _spawn_ready(bridge: Bridge, name: str, **kwargs: Any) -> Instance:
    inst = await bridge.spawn(seq(name), **kwargs)
    with anyio.fail_after(30):
        if not await inst.wait_started():
            raise RuntimeError(f"{name}: runner did not start: {inst.info.error}")
    return inst


# -- 1, 2: pass-through ----------------------------------------------------------------------


async def pipe(
    bridge: Bridge,
    name: str,
    content_type: str,
    blocks: Callable[[], Iterable[bytes]],
    total: int,
    checker: Checker,
) -> dict[str, Any]:
    """Write ``blocks`` to a spawned identity Sequence and check what comes back.

    The first block goes alone and must come back before the clock starts, so the
    runner's start-up and the Sequence's import are not timed; then timed from the
    second block's first byte to the last output byte checked.
    """
    inst = await _spawn_ready(bridge, name)
    inst.discard("stdout", "stderr", "log")
    await inst.write_input(b"", content_type=content_type)
    cpu0 = cpu_seconds(inst.pid)

    source = iter(blocks())
    first = next(source)
    output = inst.output().__aiter__()
    start = await _first_block_back(inst.write_input(first), output, checker, len(first))

    async def write() -> None:
        write_input = inst.write_input
        for block in source:
            await write_input(block)
        await inst.end_input()

    return await finish_pipe(inst, name, write, output, checker, start, cpu0, total - len(first), total)


async def finish_pipe(
    inst: Any,
    name: str,
    write: Callable[[], Awaitable[None]],
    output: AsyncIterator[bytes],
    checker: Any,
    start: float,
    cpu0: float | None,
    timed: int,
    total: int,
) -> dict[str, Any]:
    """Run ``write`` while checking every output chunk, then wait for exit 0 and report.

    Shared by the native and the STH pass-through, which differ only in how they start
    an Instance and write input (``inst`` is a host_bridge or an STHHost Instance).
    """
    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        feed = checker.feed
        async for chunk in output:
            feed(chunk)
    digest = checker.finish()
    elapsed = time.perf_counter() - start
    cpu1 = cpu_seconds(inst.pid)
    with anyio.fail_after(30):
        code = await inst.wait()
    if checker.nbytes != total:
        raise AssertionError(f"{name}: {checker.nbytes} bytes out, {total} in")
    if code != 0:
        error = getattr(getattr(inst, "info", None), "error", None)  # host_bridge explains, STHHost not
        raise AssertionError(f"{name}: exit code {code}" + (f": {error}" if error else ""))
    runner_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return {
        "seconds": elapsed,
        "digest": digest,
        "bytes": total,
        "timed_bytes": timed,
        "runner_cpu_s": runner_cpu,
    }


async def _first_block_back(
    send: Awaitable[None], output: AsyncIterator[bytes], checker: Checker, size: int
) -> float:
    """Send the first block, wait for all of it to come back; returns the clock's start."""
    await send
    with anyio.fail_after(30):
        while checker.nbytes < size:
            checker.feed(await output.__anext__())
    return time.perf_counter()


# -- 3: event round trip ---------------------------------------------------------------------


async def _round_trips(inst: Instance, count: int) -> list[float]:
    samples = []
    with inst.events("pong") as pongs:
        for i in range(count):
            start = time.perf_counter()
            await inst.send_event("ping", i)
            while True:
                with anyio.fail_after(10):
                    event = await pongs.receive()
                if event is None:
                    raise RuntimeError("connection ended during the round trips")
                if event.message == i:
                    break
            samples.append(time.perf_counter() - start)
    return samples


async def event_rtt(bridge: Bridge, count: int, flood: bool, flood_settle: float = 0.5) -> dict[str, Any]:
    """``count`` sequential ping -> pong round trips; with ``flood`` the Sequence floods stdout
    from a thread while the host never reads stdout (not discarded either)."""
    name = "stdout-flood" if flood else "echo-events"
    ready = None
    inst = await bridge.spawn(seq(name))
    ready = inst.events("ready")
    await inst.wait_started()
    inst.discard("stderr", "log")
    with anyio.fail_after(30):
        await ready.receive()
    if flood:
        await anyio.sleep(flood_settle)  # the unread stdout window fills and the printer blocks
    await _round_trips(inst, min(50, count))  # warm-up
    samples = await _round_trips(inst, count)
    flood_bytes = inst.buffered("stdout") if flood else 0
    await inst.kill()
    with anyio.fail_after(30):
        await inst.wait()
    return {
        "p50_ms": percentile(samples, 50) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "max_ms": max(samples) * 1e3,
        "count": count,
        "unread_stdout_bytes": flood_bytes,
    }


# -- 4: start-up -------------------------------------------------------------------------------


async def startup(bridge: Bridge) -> dict[str, float]:
    """spawn() -> handshake done (ready) and spawn() -> first output byte of hello-now."""
    start = time.perf_counter()
    inst = await bridge.spawn(seq("hello-now"))
    await inst.wait_started()
    ready = time.perf_counter() - start
    async for _chunk in inst.output():
        break
    first = time.perf_counter() - start
    with anyio.fail_after(30):
        await inst.wait()
    return {"ready_s": ready, "first_output_s": first}


# -- 5: kill and stop -------------------------------------------------------------------------


async def kill_cpu_bound(bridge: Bridge) -> dict[str, Any]:
    """KILL -> process reaped, for a Sequence spinning in a synchronous loop."""
    inst = await _spawn_ready(bridge, "cpu-spin")
    inst.discard("stderr", "log")
    async for chunk in inst.stdout():
        if b"spinning" in chunk:
            break
    await anyio.sleep(0.05)  # well inside the busy loop
    start = time.perf_counter()
    await inst.kill()
    with anyio.fail_after(30):
        await inst.wait()
    elapsed = time.perf_counter() - start
    # exit_signal is set only when the host had to escalate to signals: KILL alone did not work
    return {"seconds": elapsed, "exit_code": inst.exit_code, "signal": inst.info.exit_signal}


async def stop_latency(bridge: Bridge) -> dict[str, float]:
    """STOP -> the stop handler's event at the host, and STOP -> exit when the host KILLs at that event."""
    inst = await bridge.spawn(seq("stop-fast"))
    ready = inst.events("ready")
    stopped = inst.events("stopped")
    await inst.wait_started()
    inst.discard("stdout", "stderr", "log")
    with anyio.fail_after(30):
        await ready.receive()
    start = time.perf_counter()
    await inst.stop(timeout_ms=5000)
    with anyio.fail_after(10):
        await stopped.receive()
    handled = time.perf_counter() - start
    await inst.kill()
    with anyio.fail_after(30):
        code = await inst.wait()
    exited = time.perf_counter() - start
    return {"handler_s": handled, "exit_s": exited, "exit_code": code}


# -- 6: memory ----------------------------------------------------------------------------------


async def rss_unread_flood(bridge: Bridge, seconds: float, interval: float = 0.25) -> dict[str, Any]:
    """Sample the runner's RSS while it floods stdout and the host reads nothing."""
    inst = await bridge.spawn(seq("stdout-flood"))
    ready = inst.events("ready")
    await inst.wait_started()
    inst.discard("stderr", "log")
    with anyio.fail_after(30):
        await ready.receive()
    assert inst.pid is not None
    points: list[tuple[float, float]] = []
    start = time.perf_counter()
    while (now := time.perf_counter() - start) < seconds:
        rss = rss_bytes(inst.pid)
        if rss is not None:
            points.append((now, rss / 2**20))
        await anyio.sleep(interval)
    unread = inst.buffered("stdout")
    await inst.kill()
    with anyio.fail_after(30):
        await inst.wait()
    half = [p for p in points if p[0] >= seconds / 2]
    return {
        "samples": points,
        "start_mib": points[0][1],
        "end_mib": points[-1][1],
        "max_mib": max(y for _, y in points),
        "slope_mib_s": slope(points),
        "slope_second_half_mib_s": slope(half),
        "unread_stdout_bytes": unread,
    }
