"""benchmarks/bench_hub.py still works against the hub (timing belongs in benchmarks/run.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_hub
from common import MIB, Hasher, bulk_chunks, bulk_pool, expected_digest

from host_bridge import Bridge


def test_rest_pipe_start_and_many_account_for_every_byte() -> None:
    pool = bulk_pool()
    total = 2 * MIB

    def blocks() -> object:
        return bulk_chunks(pool, total)

    async def main() -> dict[str, object]:
        with bench_hub.HubServer() as server:
            async with bench_hub.client_for(server) as client, Bridge() as bridge:
                seq = await bench_hub.upload(client, "identity-bytes")
                hello = await bench_hub.upload(client, "hello-now")
                piped = await bench_hub.rest_pipe(client, seq, "application/octet-stream", blocks, total, Hasher())
                assert await bench_hub.rest_start(client, hello) > 0
                assert await bench_hub.rest_many(client, seq, 3, 100_000) > 0
                assert await bench_hub.direct_many(bridge, 3, 100_000) > 0
                return piped

    piped = anyio.run(main)
    assert piped["digest"] == expected_digest(iter(bulk_chunks(pool, total)), (0, total))


@pytest.mark.parametrize("size", [0, 5])
def test_payloads_differ_per_instance(size: int) -> None:
    assert len(bench_hub._payload(7, size)) == size
    assert bench_hub._payload(1, 8) != bench_hub._payload(2, 8)


@pytest.mark.docker
def test_the_docker_mode_section_runs_both_hubs_and_reports_ratios() -> None:
    """benchmarks/bench_hub_docker.py: both hubs, every byte checked (small inputs, one round)."""
    import argparse

    import bench_hub_docker
    from docker_engine import IMAGE, require_docker

    require_docker((IMAGE,))
    cfg = argparse.Namespace(quick=True, runs=1, startup_runs=1)
    result = anyio.run(bench_hub_docker.section, cfg, lambda *_: None)
    assert result["start"]["docker_ms"] > 0 and result["start"]["process_ms"] > 0
    assert result["bulk"]["timed_bytes"] > 0 and result["lines"]["docker_vs_process"] > 0
    rows = bench_hub_docker.report_rows(result)
    assert rows[0]["figure"] == "9 hub docker start -> running (container)" and len(rows) == 3
