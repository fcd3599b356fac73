"""Where docker mode's bulk cost goes: suspects changed one at a time, hubs in alternating rounds.

Each variant is its own hub (``deploy/bulk_suspects/hub_variant.py``: ``python -m hub`` with one
thing changed in-process, nothing on disk). Every round passes the same bulk bytes through each
hub's ``identity-bytes`` (REST input -> output, every byte checked), in alternating order, and
takes per variant: the wall time, the hub process's CPU and the runner's CPU (the container's
process seen from the host, or the runner process), as CPU seconds per GiB. On a shared machine
the CPU per GiB says where a mode spends more per byte when the wall clock is noise.

    python deploy/bench_bulk_suspects.py [--runs 4] [--mib 1024] [--image-python PATH] [VARIANT ...]

Variants: process, docker (as shipped); docker-default-sndbuf (both ends of the runner's unix
connection at the kernel's default send buffer, as before e938246); docker-seccomp-unconfined
(diagnostic only, never shipped); docker-no-memory-limit; process-image-python (process mode with
the runner run by --image-python, e.g. a venv of the image's Debian python3 with the image's
wheels). Needs a Docker engine and the image (scripts/build-image). docs/deploy.md has figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_hub import HubServer, RawStream, _start, _wait_ended, client_for, upload
from common import MIB, Verifier, bulk_chunks, bulk_pool, median

IMAGE = os.environ.get("SEQUENCE_RUNNER_IMAGE", "sequence-runner:local")
DOCKER = ("--runtime", "docker", "--runner-image", IMAGE)
VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "process": ({}, ()),
    "docker": ({}, DOCKER),
    "docker-default-sndbuf": ({"BULK_SUSPECTS_DEFAULT_SNDBUF": "1"}, DOCKER),
    "docker-seccomp-unconfined": ({"BULK_SUSPECTS_SECURITY_OPT": "seccomp=unconfined"}, DOCKER),
    "docker-no-memory-limit": ({"BULK_SUSPECTS_NO_MEMORY_LIMIT": "1"}, DOCKER),
    "process-image-python": ({}, ()),  # BULK_SUSPECTS_RUNNER_PYTHON from --image-python
}
LAUNCHER = ROOT / "deploy" / "bulk_suspects" / "hub_variant.py"


class VariantHub(HubServer):
    """A hub started by the launcher, which changes one suspect in-process (``env`` says which)."""

    command = (str(LAUNCHER),)
    max_instances = 50


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class RunnerCPU:
    """The runner's CPU seconds from a starting point, sampled every 20 ms until it ends (the last
    sample before it exits counts: a runner that ended has no CPU times left to read)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.last = cpu_seconds(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.last = cpu_seconds(self.pid)
            except psutil.Error:
                return

    def used(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.last - self.start


async def runner_pid(client: httpx.AsyncClient, inst: str, docker: bool) -> int:
    if docker:  # the container's process as the host sees it
        found = await anyio.run_process(["docker", "inspect", "-f", "{{.State.Pid}}", f"sequence-{inst}"])
        return int(found.stdout.decode().strip())
    return int((await client.get(f"/instance/{inst}")).json()["pid"])


async def bulk_round(client: httpx.AsyncClient, seq_id: str, pool: list[bytes], total: int,
                     docker: bool) -> tuple[float, float]:
    """(wall seconds, runner CPU seconds) of one pass-through, timed from the first block's return."""
    inst = await _start(client, seq_id)
    pid = await runner_pid(client, inst, docker)
    source = bulk_chunks(pool, total)
    first = next(source)
    checker = Verifier(b"".join(pool))
    url = str(client.base_url)
    reader = RawStream(url)
    await reader.open("GET", f"/instance/{inst}/output", {})
    output = reader.body().__aiter__()
    await client.post(f"/instance/{inst}/input", content=first,
                      headers={"content-type": "application/octet-stream", "x-end-stream": "false"})
    with anyio.fail_after(30):
        while checker.nbytes < len(first):
            checker.feed(await output.__anext__())
    runner = RunnerCPU(pid)
    started = time.perf_counter()

    async def write() -> None:
        writer = RawStream(url)
        await writer.open("POST", f"/instance/{inst}/input",
                          {"content-type": "application/octet-stream", "transfer-encoding": "chunked"})
        if await writer.send_chunks(source) != 200:
            raise AssertionError("POST input did not answer 200")

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        async for chunk in output:
            checker.feed(chunk)
    wall = time.perf_counter() - started
    await reader.aclose()
    checker.finish()
    ended = await _wait_ended(client, inst)
    if checker.nbytes != total or ended["exitCode"] != 0:
        raise AssertionError(f"{checker.nbytes} bytes of {total}, exit {ended['exitCode']}")
    return wall, runner.used()


async def measure(variants: list[str], runs: int, total: int, say: Any) -> dict[str, dict[str, list[float]]]:
    pool = bulk_pool()
    out: dict[str, dict[str, list[float]]] = {v: {"wall_s": [], "hub_cpu_s": [], "runner_cpu_s": [], "load": []}
                                              for v in variants}
    with contextlib.ExitStack() as hubs:
        servers = {v: hubs.enter_context(VariantHub(*VARIANTS[v][1], env=VARIANTS[v][0])) for v in variants}
        async with contextlib.AsyncExitStack() as opened:
            clients = {v: await opened.enter_async_context(client_for(s)) for v, s in servers.items()}
            ids = {v: await upload(c, "identity-bytes") for v, c in clients.items()}
            for rnd in range(runs + 1):  # round 0 warms every hub up
                order = variants if rnd % 2 else variants[::-1]
                for v in order:
                    proc = servers[v].proc
                    assert proc is not None
                    hub_pid = proc.pid
                    hub_before = cpu_seconds(hub_pid)
                    wall, runner = await bulk_round(clients[v], ids[v], pool, total, "--runtime" in VARIANTS[v][1])
                    if rnd:
                        rec = out[v]
                        rec["wall_s"].append(wall)
                        rec["hub_cpu_s"].append(cpu_seconds(hub_pid) - hub_before)
                        rec["runner_cpu_s"].append(runner)
                        rec["load"].append(os.getloadavg()[0])
                if rnd:
                    say(f"round {rnd}/{runs} (load {os.getloadavg()[0]:.1f}): "
                        + ", ".join(f"{v} {out[v]['wall_s'][-1]:.2f}s" for v in variants))
    return out


def table(result: dict[str, dict[str, list[float]]], total: int) -> list[str]:
    gib = total / (1 << 30)
    base = result.get("docker") or next(iter(result.values()))
    lines = ["| variant | MB/s | vs docker (wall) | hub CPU s/GiB | runner CPU s/GiB |", "|---|--:|--:|--:|--:|"]
    for v, rec in result.items():
        lines.append(f"| {v} | {total / median(rec['wall_s']) / 1e6:.0f} | "
                     f"{median(base['wall_s']) / median(rec['wall_s']):.2f}x | "
                     f"{median(rec['hub_cpu_s']) / gib:.2f} | {median(rec['runner_cpu_s']) / gib:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", metavar="VARIANT")
    parser.add_argument("--runs", type=int, default=4, help="timed rounds (default 4)")
    parser.add_argument("--mib", type=int, default=1024, help="MiB per bulk round (default 1024)")
    parser.add_argument("--image-python", help="the interpreter of variant process-image-python")
    parser.add_argument("--json", metavar="FILE", help="also write every round's figures here")
    args = parser.parse_args(argv)
    variants = args.variants or ["process", "docker", "docker-default-sndbuf", "docker-seccomp-unconfined",
                                 "docker-no-memory-limit"] + (["process-image-python"] if args.image_python else [])
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    if "process-image-python" in variants:
        if not args.image_python:
            parser.error("process-image-python needs --image-python PATH")
        VARIANTS["process-image-python"] = ({"BULK_SUSPECTS_RUNNER_PYTHON": args.image_python}, ())
    total = args.mib * MIB
    result = anyio.run(measure, variants, args.runs, total, lambda text: print(text, file=sys.stderr, flush=True))
    print("\n".join(table(result, total)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"bytes": total, "variants": result}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
