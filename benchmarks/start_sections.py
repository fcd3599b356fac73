"""run.py's sections for start-up, idle memory, completion latency and the CLI path.

Each round runs the baseline and every contender one after the other (so the load of
this shared machine hits them alike); the figures are medians over the rounds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import bench_cli
import bench_e2e
import bench_start
from common import MIB, median

from host_bridge import Bridge

Say = Callable[..., None]


class Contenders:
    """The hosts a section measures with: native (cold, and warm when given), STH mode for our runner
    and, when a checkout of it was given, STH's own runner."""

    def __init__(self, bridge: Bridge, sth_ours: Any, sth_theirs: Any | None, warm: Bridge | None) -> None:
        self.bridge = bridge
        self.sth_ours = sth_ours
        self.sth_theirs = sth_theirs
        self.warm = warm


async def _rounds(runs: int, variants: dict[str, Callable[[], Awaitable[Any]]]) -> dict[str, list[Any]]:
    samples: dict[str, list[Any]] = {name: [] for name in variants}
    for name, run in variants.items():  # warm the page cache and the template (not kept)
        await run()
    for _ in range(runs):
        for name, run in variants.items():
            samples[name].append(await run())
    return samples


async def startup(cfg: Any, hosts: Contenders, say: Say) -> dict[str, Any]:
    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "interpreter": lambda: bench_start.cold_ready("interpreter"),
        "import_asyncio": lambda: bench_start.cold_ready("import_asyncio"),
        "runner_ping": lambda: bench_start.cold_ready("runner"),
        "cold": lambda: bench_start.bridge_ready(hosts.bridge),
        "sth_ours": lambda: bench_start.sth_ready(hosts.sth_ours),
    }
    if hosts.warm is not None:
        warm = hosts.warm
        variants["warm"] = lambda: bench_start.bridge_ready(warm)
    if hosts.sth_theirs is not None:
        theirs = hosts.sth_theirs
        variants["sth_theirs"] = lambda: bench_start.sth_ready(theirs)
    samples = await _rounds(cfg.startup_runs, variants)
    for name in ("interpreter", "import_asyncio", "runner_ping"):  # time to the first byte, and CPU
        spawns = samples.pop(name)
        samples[name] = [r["ready"] for r in spawns]
        samples[f"{name}_cpu"] = [r["cpu"] for r in spawns]
    for name in ("sth_ours", "sth_theirs"):  # one start, three figures: PING, the first PANG, run() called
        if name in samples:
            starts = samples.pop(name)
            samples[name] = [r["ping"] for r in starts]
            samples[f"{name}_pang"] = [r["pang"] for r in starts]
            samples[f"{name}_running"] = [r["ready"] for r in starts]
    for name in ("cold", "warm"):  # one spawn, two figures: handshake done, then the first PANG
        if name in samples:
            spawns = samples.pop(name)
            samples[f"{name}_handshake"] = [r["handshake"] for r in spawns]
            samples[f"{name}_pang"] = [r["pang"] for r in spawns]
            samples[f"{name}_pang_cpu"] = [r["pang_cpu"] for r in spawns]
    first = [(await bench_e2e.startup(hosts.bridge))["first_output_s"] for _ in range(cfg.runs)]
    out: dict[str, Any] = {f"{k}_ms": median(v) * 1e3 for k, v in samples.items()}
    out["first_output_ms"] = median(first) * 1e3
    out["runs_s"] = {**samples, "first_output": first}
    say("  startup: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items() if k.endswith("_ms")))
    return out


async def memory(cfg: Any, hosts: Contenders, say: Say) -> dict[str, Any]:
    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "interpreter": lambda: bench_start.floor_memory("interpreter"),
        "import_asyncio": lambda: bench_start.floor_memory("import_asyncio"),
        "native": lambda: bench_start.bridge_memory(hosts.bridge),
        "sth_ours": lambda: bench_start.sth_memory(hosts.sth_ours),
    }
    if hosts.warm is not None:
        warm = hosts.warm
        variants["warm"] = lambda: bench_start.bridge_memory(warm)
    if hosts.sth_theirs is not None:
        theirs = hosts.sth_theirs
        variants["sth_theirs"] = lambda: bench_start.sth_memory(theirs)
    samples = await _rounds(cfg.idle_rss_runs, variants)
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        out[f"{name}_rss_mib"] = median([r["rss"] for r in runs]) / MIB
        out[f"{name}_uss_mib"] = median([r["uss"] for r in runs]) / MIB
    out["runs"] = samples
    say("  idle memory (RSS/USS MiB): " + ", ".join(
        f"{n} {out[f'{n}_rss_mib']:.1f}/{out[f'{n}_uss_mib']:.1f}" for n in samples))
    return out


async def completion(cfg: Any, hosts: Contenders, say: Say) -> dict[str, Any]:
    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "native": lambda: bench_start.completion_native(hosts.bridge),
        "sth_ours": lambda: bench_start.completion_sth(hosts.sth_ours),
    }
    if hosts.sth_theirs is not None:
        theirs = hosts.sth_theirs
        variants["sth_theirs"] = lambda: bench_start.completion_sth(theirs)
    samples = await _rounds(cfg.runs, variants)
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        out[f"{name}_output_end_ms"] = median([r["output_end_s"] for r in runs]) * 1e3
        out[f"{name}_exit_ms"] = median([r["exit_s"] for r in runs]) * 1e3
    out["runs"] = samples
    say("  completion (input end -> output end / exit, ms): " + ", ".join(
        f"{n} {out[f'{n}_output_end_ms']:.1f}/{out[f'{n}_exit_ms']:.1f}" for n in samples))
    return out


async def cli(cfg: Any, hosts: Contenders, say: Say) -> dict[str, Any]:
    total = (64 if cfg.quick else 512) * MIB
    path, period = bench_cli.make_file(total)
    try:
        rates: dict[str, list[float]] = {"raw_copy": [], "cli": []}
        for rnd in range(cfg.runs):
            rates["raw_copy"].append(await anyio.to_thread.run_sync(bench_cli.raw_copy, path, period, total))
            rates["cli"].append(await anyio.to_thread.run_sync(bench_cli.cli_run, path, period, total))
            say(f"  cli round {rnd + 1}/{cfg.runs}: raw copy {rates['raw_copy'][-1] / 1e6:,.0f} MB/s, "
                f"run {rates['cli'][-1] / 1e6:,.0f} MB/s")
    finally:
        path.unlink()
    return {"bytes": total, "raw_copy_mb_s": median(rates["raw_copy"]) / 1e6,
            "cli_mb_s": median(rates["cli"]) / 1e6, "runs_bytes_per_s": rates}


async def many(cfg: Any, hosts: Contenders, say: Say) -> dict[str, Any]:
    """100 idle Instances at once (quick: 25), warm and cold, one after the other."""
    count = 25 if cfg.quick else 100
    out: dict[str, Any] = {"count": count}
    for name, bridge in (("warm", hosts.warm), ("cold", hosts.bridge)):
        if bridge is None:
            continue
        r = await bench_start.many_idle(bridge, count)
        out[name] = r
        say(f"  {count} idle, {name}: all ready in {r['all_ready_s']:.2f} s, USS sum {r['uss_sum'] / MIB:.0f} MiB "
            f"(median {r['uss_median'] / MIB:.1f}), RSS sum {r['rss_sum'] / MIB:.0f} MiB, "
            f"{r['answered']}/{count} answered an event")
    return out
