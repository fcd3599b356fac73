"""The pass-through benchmarks over the STH transport: sth_host.STHHost (tests/sth_host) starts our
runner the way STH's process adapter does (nine TCP connections, raw bytes per channel)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import anyio
from bench_e2e import _first_block_back, cpu_seconds, finish_pipe, seq
from common import Hasher, Verifier
from sth_host import STHHost

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

    return await finish_pipe(inst, f"STH {name}", write, output, checker, start, cpu0, total - len(first), total)
