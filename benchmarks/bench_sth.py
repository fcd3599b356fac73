"""The pass-through benchmarks over the STH transport: host_bridge.sth.STHHost starts our
runner the way STH's process adapter does (nine TCP connections, raw bytes per channel)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from bench_e2e import _first_block_back, cpu_seconds, seq
from common import Hasher, Verifier

from host_bridge.sth import STHHost
from runner.protocol.sth import STHChannel


def host(cwd: str) -> STHHost:
    return STHHost(port=0, cwd=cwd)


async def pipe(
    sth_host: STHHost,
    name: str,
    content_type: str,
    blocks: Callable[[], Iterable[bytes]],
    total: int,
    checker: Hasher | Verifier,
) -> dict[str, Any]:
    """Like bench_e2e.pipe: the first block comes back before the clock starts."""
    with anyio.fail_after(30):
        inst = await sth_host.start(seq(name), app_config={}, args=[])
        await inst.wait_running()
    for channel in (STHChannel.STDOUT, STHChannel.STDERR, STHChannel.LOG):
        inst.discard(channel)
    cpu0 = cpu_seconds(inst.pid)

    source = iter(blocks())
    first = next(source)
    output = inst.output().__aiter__()
    start = await _first_block_back(inst.send_input(first, content_type), output, checker, len(first))

    async def write() -> None:
        send = inst.send_input
        for block in source:
            await send(block, content_type)
        await inst.end_input()

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
        raise AssertionError(f"STH {name}: {checker.nbytes} bytes out, {total} in")
    if code != 0:
        raise AssertionError(f"STH {name}: exit code {code}")
    runner_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    timed = total - len(first)
    return {
        "seconds": elapsed,
        "digest": digest,
        "bytes": total,
        "timed_bytes": timed,
        "runner_cpu_s": runner_cpu,
    }
