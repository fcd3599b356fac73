"""The hub in docker mode beside the hub in process mode, in the same run (issue 15's targets).

Two hubs run side by side, one ``--runtime process`` and one ``--runtime docker`` (defaults: 512 MiB,
no CPU limit), and every round measures both, alternating:

* start: ``POST /sequence/:id/start`` answered (the runner connected: a process spawned, or a
  container created and started by the engine, its runner up and authenticated);
* pass-through: bulk 64 KiB chunks and 100-byte lines through ``identity-*``, every byte checked
  (bench_hub.rest_pipe), as MB/s.

    python benchmarks/bench_hub_docker.py [--quick] [--runs N] [--bulk-mib N]   # or: benchmarks/run.py --only hub-docker

Each timed round also takes the hub process's CPU time (user + system) around each pass-through,
reported as CPU seconds per GiB moved: where a mode spends more per byte shows there even when
the machine is shared and the wall clock is noisy (docs/deploy.md). ``--bulk-mib`` sets the bulk
round's size (default 256; 1536 gives ~3 s rounds that a shared machine disturbs less).

``--cold`` adds a third hub, ``--runtime process --no-warm-starts``, to the same rounds: docker mode's
runners start cold, process mode's warm, and this tells the two apart (docs/deploy.md).

Needs a Docker engine and the runner image (scripts/build-image); without them the section is
skipped and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import psutil
from bench_hub import HubServer, client_for, rest_pipe, rest_start, upload
from common import MIB, Hasher, Verifier, bulk_chunks, bulk_pool, expected_digest, median, text_records

IMAGE = os.environ.get("SEQUENCE_RUNNER_IMAGE", "sequence-runner:local")
RUNTIMES = ("process", "docker")


def docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    found = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True, check=False)
    return None if found.returncode == 0 else f"no engine or no image {IMAGE}: {found.stderr.strip()[:200]}"


async def section(cfg: Any, say: Callable[..., None]) -> dict[str, Any]:
    why = docker_unavailable()
    if why:
        say(f"  hub-docker skipped: {why}")
        return {"skipped": why}
    out: dict[str, Any] = {}
    runtimes = RUNTIMES + (("process-cold",) if getattr(cfg, "cold", False) else ())
    hub_args = {"process": (), "docker": ("--runtime", "docker", "--runner-image", IMAGE),
                "process-cold": ("--no-warm-starts",)}  # docker mode's runners start cold too
    with contextlib.ExitStack() as hubs:
        servers = {rt: hubs.enter_context(HubServer(*hub_args[rt])) for rt in runtimes}
        async with contextlib.AsyncExitStack() as opened:
            clients = {rt: await opened.enter_async_context(client_for(hub)) for rt, hub in servers.items()}
            ids: dict[str, dict[str, str]] = {}
            for rt, c in clients.items():  # loops, not nested comprehensions: an await in one needs 3.11
                ids[rt] = {n: await upload(c, n) for n in ("hello-now", "identity-bytes", "identity-text")}
            starts: dict[str, list[float]] = {rt: [] for rt in runtimes}
            for rnd in range(cfg.startup_runs + 1):  # round 0 warms both up
                for rt, c in clients.items():
                    took = await rest_start(c, ids[rt]["hello-now"])
                    if rnd:
                        starts[rt].append(took)
            out["start"] = {f"{rt}_ms": median(v) * 1e3 for rt, v in starts.items()} | {"runs_s": starts}
            say("  hub-docker start -> running: " + ", ".join(f"{rt} {median(v) * 1e3:.1f} ms" for rt, v in starts.items()))
            pool = bulk_pool()
            bulk_total = (getattr(cfg, "bulk_mib", None) or (32 if cfg.quick else 256)) * MIB
            hub_procs = {rt: psutil.Process(hub.proc.pid) for rt, hub in servers.items() if hub.proc is not None}
            line_block = text_records(655, 100)
            line_blocks = 60 if cfg.quick else 400
            cases: tuple[tuple[str, str, str, bytes, Callable[[], Iterable[bytes]], int], ...] = (
                ("bulk", "identity-bytes", "application/octet-stream", b"".join(pool),
                 lambda: bulk_chunks(pool, bulk_total), bulk_total),
                ("lines", "identity-text", "text/plain", line_block, lambda: [line_block] * line_blocks,
                 len(line_block) * line_blocks),
            )
            for label, name, ctype, period, blocks, total in cases:
                digest = expected_digest(iter(blocks()), (hash(period), total))
                seconds: dict[str, list[float]] = {rt: [] for rt in runtimes}
                hub_cpu: dict[str, list[float]] = {rt: [] for rt in runtimes}
                loads: list[float] = []
                timed = 0
                for rnd in range(cfg.runs + 1):  # round 0: warm-up, checked by sha256
                    for rt, c in clients.items():
                        checker: Hasher | Verifier = Hasher() if rnd == 0 else Verifier(period)
                        cpu_before = _cpu_seconds(hub_procs[rt])
                        result = await rest_pipe(c, ids[rt][name], ctype, blocks, total, checker)
                        hub_cpu[rt].append(_cpu_seconds(hub_procs[rt]) - cpu_before)
                        if rnd == 0 and result["digest"] != digest:
                            raise AssertionError(f"hub-docker {label} {rt}: sha256 of output != sha256 of input")
                        if rnd:
                            seconds[rt].append(result["seconds"])
                            timed = result["timed_bytes"]
                        else:
                            hub_cpu[rt].clear()
                    if rnd:
                        loads.append(os.getloadavg()[0])
                        say(f"  hub-docker {label} round {rnd}/{cfg.runs} (load {loads[-1]:.1f}): "
                            + ", ".join(f"{rt} {s[-1]:.3f}s" for rt, s in seconds.items()))
                rates = {rt: timed / median(s) for rt, s in seconds.items()}
                cpu_per_gib = {rt: median(v) / (total / (1 << 30)) for rt, v in hub_cpu.items()}
                out[label] = {"bytes_per_s": rates, "docker_vs_process": rates["docker"] / rates["process"],
                              "runs_s": seconds, "timed_bytes": timed, "hub_cpu_s_per_gib": cpu_per_gib,
                              "hub_cpu_s": hub_cpu, "load": loads}
                if "process-cold" in rates:
                    out[label]["docker_vs_process_cold"] = rates["docker"] / rates["process-cold"]
    return out


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def rows(result: dict[str, Any]) -> list[str]:
    if "skipped" in result:
        return [f"hub-docker: skipped ({result['skipped']})"]
    s = result["start"]
    lines = ["| figure | process | docker | docker / process |", "|---|--:|--:|--:|",
             (f"| start → running (POST start answered) | {s['process_ms']:.1f} ms | {s['docker_ms']:.1f} ms | "
             f"{s['docker_ms'] / s['process_ms']:.2f}x |")]
    for key, label in (("bulk", "input → output, bulk 64 KiB chunks"), ("lines", "input → output, 100-byte lines")):
        r = result[key]["bytes_per_s"]
        lines.append(f"| {label} | {r['process'] / 1e6:.0f} MB/s | {r['docker'] / 1e6:.0f} MB/s | "
                     f"{result[key]['docker_vs_process']:.2f}x |")
        cpu = result[key].get("hub_cpu_s_per_gib")
        if cpu and key == "bulk":  # the hub's CPU per GiB, medians of the rounds (the start's share is
            # noise in a bulk round of seconds, not in a lines round of tens of ms)
            lines.append(f"| {label}: hub CPU per GiB | {cpu['process']:.2f} s | {cpu['docker']:.2f} s | "
                         f"{cpu['docker'] / cpu['process']:.2f}x |")
        if "process-cold" in r:  # --cold: the process hub with --no-warm-starts, in place of the warm one
            lines.append(f"| {label}, process cold (--no-warm-starts) | {r['process-cold'] / 1e6:.0f} MB/s | "
                         f"{r['docker'] / 1e6:.0f} MB/s | {result[key]['docker_vs_process_cold']:.2f}x |")
    return lines


def report_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of benchmarks/run.py's table (report.py); ratios are docker / process."""
    from report_start import row

    if "skipped" in result:
        return [row(f"9 hub docker mode: skipped ({result['skipped']})", None, "")]
    s = result["start"]
    out = [row("9 hub docker start -> running (container)", s["docker_ms"], "ms",
               f"process {s['process_ms']:.1f} ms", s["docker_ms"] / s["process_ms"], "", None, "{:.1f}")]
    for key, label in (("bulk", "9 hub docker input->output, bulk"), ("lines", "9 hub docker input->output, 100 B lines")):
        rate, ratio = result[key]["bytes_per_s"], result[key]["docker_vs_process"]
        out.append(row(label, rate["docker"] / 1e6, "MB/s", f"process {rate['process'] / 1e6:,.0f} MB/s", ratio,
                       ">= 0.9x process", ratio >= 0.9))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="32 MiB bulk, 3 rounds")
    parser.add_argument("--runs", type=int, default=None, help="timed rounds (default 5, --quick 3)")
    parser.add_argument("--cold", action="store_true",
                        help="a third hub, process mode with --no-warm-starts, in the same rounds")
    parser.add_argument("--bulk-mib", type=int, default=None,
                        help="MiB per bulk round (default 256, --quick 32)")
    parser.add_argument("--json", metavar="FILE", help="also write the result (every round's times) here")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    cfg = argparse.Namespace(quick=args.quick, runs=runs, startup_runs=runs * 3, cold=args.cold, bulk_mib=args.bulk_mib)
    result = anyio.run(section, cfg, lambda text: print(text, file=sys.stderr, flush=True))
    print("\n".join(rows(result)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
