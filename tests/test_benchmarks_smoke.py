"""The benchmark modules import, and the smallest end-to-end pass-through gives bytes out == bytes in.

Timing belongs in benchmarks/ (python benchmarks/run.py), not in the test suite:
this only checks that the harness still works against the current runner and host_bridge.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_baseline
import bench_cli
import bench_e2e
import bench_framer  # noqa: F401
import bench_start
import bench_sth  # noqa: F401
import chart  # noqa: F401
import report  # noqa: F401
import report_start  # noqa: F401
import run  # noqa: F401
import start_sections  # noqa: F401
from common import MIB, Hasher, Verifier, bulk_chunks, bulk_pool, expected_digest

from host_bridge import Bridge

pytestmark = pytest.mark.timeout(30)


def test_bulk_pass_through_hash_and_compare() -> None:
    pool = bulk_pool()
    total = 4 * MIB

    def blocks() -> Iterator[bytes]:
        return bulk_chunks(pool, total)

    digest = expected_digest(iter(blocks()), (0xB0, total))

    async def main() -> tuple[dict[str, object], dict[str, object]]:
        async with Bridge() as bridge:
            hashed = await bench_e2e.pipe(bridge, "identity-bytes", bench_e2e.OCTET, blocks, total, Hasher())
            compared = await bench_e2e.pipe(
                bridge, "identity-bytes", bench_e2e.OCTET, blocks, total, Verifier(b"".join(pool))
            )
            return hashed, compared

    hashed, compared = anyio.run(main)
    assert hashed["digest"] == digest and hashed["bytes"] == total
    assert compared["digest"] == "compared"
    _, raw_digest, raw_bytes = bench_baseline.raw_echo(blocks, total)
    assert (raw_digest, raw_bytes) == (digest, total)


def test_verifier_catches_a_lost_byte() -> None:
    verifier = Verifier(b"abcdefgh")
    verifier.feed(b"abcdefghab")
    with pytest.raises(AssertionError):
        verifier.feed(b"defgh")


def test_start_floor_and_runner_first_byte() -> None:
    """The start-up rows' harness: a floor process and a runner both say something on their socket."""

    async def main() -> tuple[dict[str, float], dict[str, float]]:
        return await bench_start.cold_ready("import_asyncio"), await bench_start.cold_ready("runner")

    floor, runner = anyio.run(main)
    assert floor["ready"] > 0 and runner["ready"] > 0
    assert 0 < floor["cpu"] and 0 < runner["cpu"]  # CPU of the process's threads, read while it lives


def test_bridge_spawn_reaches_the_handshake_then_the_first_pang() -> None:
    """The "ready" rows' harness: one spawn, the handshake first, the Sequence's PANG after it."""

    async def main() -> dict[str, float]:
        async with Bridge() as bridge:
            return await bench_start.bridge_ready(bridge)

    times = anyio.run(main)
    assert 0 < times["handshake"] <= times["pang"]
    assert 0 < times["pang_cpu"]


def test_cli_bulk_and_raw_copy_give_every_byte_back() -> None:
    path, period = bench_cli.make_file(2 * MIB)
    try:
        assert bench_cli.raw_copy(path, period, 2 * MIB) > 0
        assert bench_cli.cli_run(path, period, 2 * MIB) > 0
    finally:
        path.unlink()
