"""sequence-runner benchmarks: one command, one table, a JSON file and a chart.

    python benchmarks/run.py [--quick] [--runs N] [--json FILE] [--png FILE] [--md FILE] [--uvloop]
                             [--only NAMES]

Every figure is the median of several runs (5, --quick 3; start-up 15/7) and every
comparison is measured side by side in the same run: each round runs the baseline
and the contenders one after the other, so noise on this shared machine hits them
alike, and the table shows the ratio of the medians. What each row means, the
targets and the machine are in docs/benchmarks.md.

Sections (--only takes a comma-separated subset): bulk, records, events, startup, completion,
kill, memory, many (100 idle Instances warm and cold), cli, hub (the REST hub beside host_bridge direct: bench_hub.py), hub-docker (the hub
with --runtime docker beside --runtime process: bench_hub_docker.py; skipped without an engine), framer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_baseline
import bench_e2e
import bench_hub
import bench_hub_docker
import bench_start
import bench_sth
import report
import start_sections
from common import (
    CHUNK,
    HERE,
    MIB,
    ROOT,
    Hasher,
    Verifier,
    bulk_chunks,
    bulk_pool,
    expected_digest,
    machine,
    median,
    ndjson_records,
    percentile,
    text_records,
)

from host_bridge import Bridge

SECTIONS = ("bulk", "records", "events", "startup", "completion", "kill", "memory", "many", "cli", "hub",
            "hub-docker", "framer")
RECORD = 100
RECORDS_PER_BLOCK = CHUNK // RECORD  # 655 records: one 65 500-byte write


class Config:
    def __init__(self, quick: bool, runs: int | None) -> None:
        self.quick = quick
        self.runs = runs or (3 if quick else 5)
        self.bulk_bytes = (128 if quick else 1024) * MIB
        self.record_blocks = 300 if quick else 1600  # x 655 records: ~196k / ~1.05M records
        self.rtt_count = 300 if quick else 2000
        self.startup_runs = 7 if quick else 15
        self.idle_rss_runs = 3
        self.flood_seconds = 5.0 if quick else 30.0
        self.flood_runs = 1 if quick else 3

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- pass-through: raw echo, native transport, STH transport, side by side -------------------


async def pass_through(
    cfg: Config,
    label: str,
    name: str,
    content_type: str,
    period: bytes,
    blocks: Callable[[], Iterable[bytes]],
    total: int,
    with_sth: bool,
    with_raw: bool,
    bridge: Bridge,
    sth_host: Any,
) -> dict[str, Any]:
    """Round-robin the variants; round 0 is a warm-up checked by sha256, the others by exact compare."""
    digest = expected_digest(iter(blocks()), (hash(period), total))
    variants: dict[str, Callable[[Hasher | Verifier], Any]] = {}
    if with_raw:

        async def raw(checker: Hasher | Verifier) -> dict[str, Any]:
            seconds, got, _ = await anyio.to_thread.run_sync(bench_baseline.raw_echo, blocks, total, checker)
            return {"seconds": seconds, "digest": got, "timed_bytes": total - len(next(iter(blocks())))}

        variants["raw"] = raw
    variants["native"] = lambda c: bench_e2e.pipe(bridge, name, content_type, blocks, total, c)
    if with_sth:
        variants["sth"] = lambda c: bench_sth.pipe(sth_host, name, content_type, blocks, total, c)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    hashed: dict[str, float] = {}
    for rnd in range(cfg.runs + 1):
        for variant, run in variants.items():
            checker: Hasher | Verifier = Hasher() if rnd == 0 else Verifier(period)
            result = await run(checker)
            if rnd == 0:
                if result["digest"] != digest:
                    raise AssertionError(f"{label} {variant}: sha256 of output != sha256 of input")
                hashed[variant] = result["seconds"]
            else:
                samples[variant].append(result["seconds"])
                timed_bytes = result["timed_bytes"]
                if result.get("runner_cpu_s") is not None:
                    cpu[variant].append(result["runner_cpu_s"])
        if rnd == 0:
            say(
                f"  {label} warm-up, sha256 of output == sha256 of input: "
                + ", ".join(f"{v} {s:.3f}s" for v, s in hashed.items())
            )
        else:
            say(
                f"  {label} round {rnd}/{cfg.runs}: "
                + ", ".join(f"{v} {samples[v][-1]:.3f}s" for v in samples)
            )
    out: dict[str, Any] = {
        "bytes": total,
        "timed_bytes": timed_bytes,
        "sha256": digest,
        "hashed_warmup_s": hashed,
        "variants": {},
    }
    for variant, secs in samples.items():
        m = median(secs)
        out["variants"][variant] = {
            "runs_s": secs,
            "median_s": m,
            "bytes_per_s": timed_bytes / m,
            "runner_cpu_s": median(cpu[variant]) if cpu[variant] else None,
        }
    return out


async def bench_bulk(cfg: Config, bridge: Bridge, sth_host: Any) -> dict[str, Any]:
    pool = bulk_pool()
    total = cfg.bulk_bytes
    return await pass_through(
        cfg,
        "bulk",
        "identity-bytes",
        bench_e2e.OCTET,
        b"".join(pool),
        lambda: bulk_chunks(pool, total),
        total,
        True,
        True,
        bridge,
        sth_host,
    )


async def bench_records(cfg: Config, bridge: Bridge, sth_host: Any) -> dict[str, Any]:
    out = {}
    for kind, name, ctype, make, with_sth in (
        ("text", "identity-text", bench_e2e.TEXT, text_records, True),
        ("ndjson", "identity-ndjson", bench_e2e.NDJSON, ndjson_records, False),
    ):
        block = make(RECORDS_PER_BLOCK, RECORD)
        n = cfg.record_blocks
        res = await pass_through(
            cfg,
            kind,
            name,
            ctype,
            block,
            lambda b=block, n=n: [b] * n,
            len(block) * n,
            with_sth,
            True,
            bridge,
            sth_host,
        )
        res["records"] = RECORDS_PER_BLOCK * n
        res["timed_records"] = RECORDS_PER_BLOCK * (n - 1)  # the first block is the untimed warm-up
        for v in res["variants"].values():
            v["records_per_s"] = res["timed_records"] / v["median_s"]
        out[kind] = res
    return out


async def bench_events(cfg: Config, bridge: Bridge) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "idle": [], "flood": []}
    for rnd in range(cfg.runs):
        for kind, kind_runs in runs.items():
            if kind == "raw":
                samples = await anyio.to_thread.run_sync(bench_baseline.raw_ping_pong, cfg.rtt_count)
                kind_runs.append(
                    {
                        "p50_ms": percentile(samples, 50) * 1e3,
                        "p99_ms": percentile(samples, 99) * 1e3,
                        "max_ms": max(samples) * 1e3,
                    }
                )
            else:
                kind_runs.append(await bench_e2e.event_rtt(bridge, cfg.rtt_count, kind == "flood"))
        say(
            f"  events round {rnd + 1}/{cfg.runs}: "
            + ", ".join(
                f"{k} p50 {v[-1]['p50_ms']:.3f} p99 {v[-1]['p99_ms']:.3f} ms" for k, v in runs.items()
            )
        )
    return {
        kind: {
            "p50_ms": median([r["p50_ms"] for r in rs]),
            "p99_ms": median([r["p99_ms"] for r in rs]),
            "max_ms": median([r["max_ms"] for r in rs]),
            "round_trips_per_run": cfg.rtt_count,
            "runs": rs,
        }
        for kind, rs in runs.items()
    }


async def bench_kill(cfg: Config, bridge: Bridge) -> dict[str, Any]:
    kills, handler, exits = [], [], []
    for _ in range(cfg.runs):
        kills.append(await bench_e2e.kill_cpu_bound(bridge))
        s = await bench_e2e.stop_latency(bridge)
        handler.append(s["handler_s"])
        exits.append(s["exit_s"])
    say(
        f"  kill {median([k['seconds'] for k in kills]) * 1e3:.1f} ms, stop handler {median(handler) * 1e3:.1f} ms"
    )
    return {
        "kill_cpu_bound_ms": median([k["seconds"] for k in kills]) * 1e3,
        "kill_needed_signal": any(k["signal"] is not None for k in kills),
        "kill_exit_codes": [k["exit_code"] for k in kills],
        "stop_handler_ms": median(handler) * 1e3,
        "stop_then_kill_exit_ms": median(exits) * 1e3,
        "runs": {"kill": kills, "stop_handler_s": handler, "stop_exit_s": exits},
    }


async def bench_memory(cfg: Config, hosts: start_sections.Contenders) -> dict[str, Any]:
    idle = await start_sections.memory(cfg, hosts, say)
    bridge = hosts.bridge
    floods = []
    for _ in range(cfg.flood_runs):
        floods.append(await bench_e2e.rss_unread_flood(bridge, cfg.flood_seconds))
        f = floods[-1]
        say(
            f"  unread flood: {f['start_mib']:.1f} -> {f['end_mib']:.1f} MiB, slope {f['slope_mib_s']:+.3f} MiB/s"
        )
    return {
        **idle,
        "flood_seconds": cfg.flood_seconds,
        "flood_slope_mib_s": median([f["slope_mib_s"] for f in floods]),
        "flood_slope_second_half_mib_s": median([f["slope_second_half_mib_s"] for f in floods]),
        "flood_max_mib": median([f["max_mib"] for f in floods]),
        "flood_start_mib": median([f["start_mib"] for f in floods]),
        "flood_unread_stdout_bytes": floods[-1]["unread_stdout_bytes"],
        "flood_samples": floods[len(floods) // 2]["samples"],
        "runs": [{k: v for k, v in f.items() if k != "samples"} for f in floods],
    }


def bench_framer_rows(cfg: Config) -> list[dict[str, Any]]:
    import bench_framer

    args = argparse.Namespace(
        quick=cfg.quick,
        runs=cfg.runs,
        chunk=256 * 1024,
        small_frames=20_000 if cfg.quick else 200_000,
        large_frames=64 if cfg.quick else 512,
        json=None,
    )
    return bench_framer.bench(args)


async def run_all(cfg: Config, only: set[str], sth_runner: tuple[str, str] | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sth-") as sth_cwd:
        async with contextlib.AsyncExitStack() as stack:
            bridge = await stack.enter_async_context(Bridge())
            sth_host = await stack.enter_async_context(bench_sth.host(sth_cwd))
            theirs = None
            if sth_runner is not None:
                theirs = await stack.enter_async_context(bench_start.sth_runner_host(*sth_runner, sth_cwd))
            warm = await stack.enter_async_context(Bridge(warm=True))
            assert warm.warm is not None
            if await warm.warm.ready() is None:
                raise SystemExit(f"warm starts unavailable: {warm.warm.error}")
            hosts = start_sections.Contenders(bridge, sth_host, theirs, warm)
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("bulk", lambda: bench_bulk(cfg, bridge, sth_host)),
                ("records", lambda: bench_records(cfg, bridge, sth_host)),
                ("events", lambda: bench_events(cfg, bridge)),
                ("startup", lambda: start_sections.startup(cfg, hosts, say)),
                ("completion", lambda: start_sections.completion(cfg, hosts, say)),
                ("kill", lambda: bench_kill(cfg, bridge)),
                ("memory", lambda: bench_memory(cfg, hosts)),
                ("many", lambda: start_sections.many(cfg, hosts, say)),
                ("cli", lambda: start_sections.cli(cfg, hosts, say)),
                ("hub", lambda: bench_hub.section(cfg, bridge, say)),
                ("hub-docker", lambda: bench_hub_docker.section(cfg, say)),  # skipped, saying why, without docker
            ]
            for section, step in steps:
                if section in only:
                    say(f"{section} ...")
                    start = time.perf_counter()
                    results[section] = await step()
                    results[section]["section_s"] = time.perf_counter() - start
    if "framer" in only:
        say("framer ...")
        results["framer"] = await anyio.to_thread.run_sync(bench_framer_rows, cfg)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer runs (about a minute)")
    parser.add_argument("--runs", type=int, default=None, help="timed rounds per figure (default 5, quick 3)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json", metavar="FILE")
    parser.add_argument("--png", type=Path, default=HERE / "results" / "latest.png", metavar="FILE")
    parser.add_argument(
        "--uvloop", action="store_true", help="run the host side (host_bridge, STHHost) on uvloop"
    )
    parser.add_argument(
        "--md", type=Path, default=None, metavar="FILE", help="also write the table as Markdown"
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--sth-runner", default=None, metavar="DIR",
        help="a checkout of STH's Python runner (DIR/runner.py): measured beside ours in start-up, "
        "memory and completion (see docs/benchmarks.md)",
    )
    parser.add_argument("--sth-python", default="python3", metavar="PY",
                        help="the interpreter for --sth-runner (with pyee and scramjet-framework-py)")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    cfg = Config(args.quick, args.runs)
    sth_runner = None
    if args.sth_runner:
        bench_start.check_sth_runner(args.sth_runner, args.sth_python)
        sth_runner = (args.sth_runner, args.sth_python)
    compile_sources()
    started, load_before = time.perf_counter(), os.getloadavg()
    results = anyio.run(run_all, cfg, only, sth_runner, backend_options={"use_uvloop": args.uvloop})
    doc = {
        "meta": {
            **machine(),
            "config": cfg.as_dict(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "wall_s": time.perf_counter() - started,
            "host_backend": ("uvloop" if args.uvloop else "asyncio") + " (anyio), in its own process",
            "sth_runner": {"dir": args.sth_runner, "python": args.sth_python} if args.sth_runner else None,
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "results": results,
        "reference_sth": report.STH_REFERENCE,
    }
    table = report.table(doc)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1))
    say(f"results: {args.json}")
    if args.md:
        args.md.write_text(report.markdown(doc) + "\n")
    if args.png and args.png.name:  # --png "" skips the chart
        message = report.chart(doc, args.png)
        say(message)
    return 0


def compile_sources() -> None:
    """Bring the project's bytecode caches up to date first: with PYTHONDONTWRITEBYTECODE set (or a
    read-only checkout) an edited module is compiled from source by every process that imports it,
    and the start-up rows would time the compiler (a few ms per module) instead of the runner."""
    import compileall

    for package in ("runner", "host_bridge", "hub"):
        if (ROOT / package).is_dir():
            compileall.compile_dir(ROOT / package, quiet=1)


if __name__ == "__main__":
    sys.exit(main())
