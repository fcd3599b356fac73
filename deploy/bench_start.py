"""Start -> runner ready: a container of the runner image beside a plain process, in one run.

"Ready" is the moment host_bridge accepted the runner's PING (``instance.connected``): the
runner is up, connected and authenticated, about to load the Sequence. Process: Bridge.spawn
(``python -m runner --fd``). Container: ``docker run --detach`` of the image (no network, the
bridge's unix socket mounted in) started from the same event loop; its time includes the docker
CLI and the engine creating the container. Runs alternate so machine noise hits both alike.

    python deploy/bench_start.py [--runs 10] [--image sequence-runner:local]

Needs a Docker engine and the image (scripts/build-image). docs/deploy.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio

from host_bridge import Bridge, Instance

ROOT = Path(__file__).resolve().parents[1]


async def until_ready(inst: Instance, began: float) -> float:
    with anyio.fail_after(60):
        await inst.connected.wait()
    return time.perf_counter() - began


async def process_start(bridge: Bridge, sequence: Path) -> float:
    began = time.perf_counter()
    inst = await bridge.spawn(str(sequence))
    ready = await until_ready(inst, began)
    await inst.kill()
    await inst.wait()
    return ready


async def container_start(bridge: Bridge, address: str, sockets: Path, sequence: Path, image: str) -> float:
    inst = bridge.expect()
    name = f"sr-bench-{uuid.uuid4().hex[:10]}"
    argv = ["docker", "run", "--detach", "--name", name, "--network", "none", "--cap-drop", "ALL",
            "--volume", f"{sockets}:/run/hub", "--volume", f"{sequence}:/package:ro",
            "--env", f"SEQUENCE_RUNNER_CONNECT={address}", "--env", f"SEQUENCE_RUNNER_INSTANCE_ID={inst.id}",
            "--env", f"SEQUENCE_RUNNER_TOKEN={inst.token}", image]
    began = time.perf_counter()
    try:
        await anyio.run_process(argv)
        ready = await until_ready(inst, began)
        await inst.kill()
        await inst.wait()
    finally:
        await anyio.run_process(["docker", "rm", "--force", name], check=False)
    return ready


def summary(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return f"{name:10s} median {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f}   p90 {p90:7.1f}   n={len(ms)}"


async def main(runs: int, image: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sequence = Path(tmp) / "hello"
        shutil.copytree(ROOT / "sample_sequences" / "hello", sequence)
        sockets = Path(tmp) / "sockets"
        sockets.mkdir()
        for path in (Path(tmp), sequence, sockets, *sequence.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        async with Bridge() as bridge:
            await bridge.listen_unix(str(sockets / "hub.sock"))
            os.chmod(sockets / "hub.sock", 0o666)
            results: dict[str, list[float]] = {"process": [], "container": []}
            steps: dict[str, Callable[[], object]] = {
                "process": lambda: process_start(bridge, sequence),
                "container": lambda: container_start(bridge, "unix:/run/hub/hub.sock", sockets, sequence, image),
            }
            await process_start(bridge, sequence)  # warm the page cache for both
            await container_start(bridge, "unix:/run/hub/hub.sock", sockets, sequence, image)
            for _ in range(runs):
                for name, step in steps.items():
                    results[name].append(await step())  # type: ignore[misc]
        for name, times in results.items():
            print(summary(name, times))
        ratio = statistics.median(results["container"]) / statistics.median(results["process"])
        print(f"container / process (medians): {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image", default=os.environ.get("SEQUENCE_RUNNER_IMAGE", "sequence-runner:local"))
    options = parser.parse_args()
    anyio.run(main, options.runs, options.image)
