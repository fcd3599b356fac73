"""The table (text and Markdown), the targets and the chart, from run.py's results document."""

from __future__ import annotations

from typing import Any

import report_start
from chart import chart
from report_start import row as _row

#: STH 1.0.1's own Python runner, as measured by the founders on this machine class
#: (Python 3.10, its own protocol, median of 5). Source: issue 6, "What to beat".
STH_REFERENCE: dict[str, Any] = {
    "source": "issue 6 'What to beat': STH 1.0.1 Python runner, founders' measurement, "
    "this machine class, Python 3.10, its own protocol, median of 5",
    "lines_per_s": 10_000,
    "lines_mb_s": 1.0,
    "bulk_mb_s": 83.0,
    "ready_ms": 61.0,
    "idle_rss_mib": 19.0,
    "rtt_idle_p50_ms": 0.41,
    "rtt_idle_p99_ms": 0.57,
    "rtt_flood_p99_ms": 4.2,
    "kill_cpu_bound": "never (only SIGTERM ends it)",
    "flood_slope_mib_s": 4.0,
}

MB = 1e6
__all__ = ["STH_REFERENCE", "chart", "markdown", "rows", "table"]


def rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    res = doc["results"]
    ref = STH_REFERENCE
    out: list[dict[str, Any]] = []
    if "bulk" in res:
        v = res["bulk"]["variants"]
        raw, nat = v["raw"]["bytes_per_s"] / MB, v["native"]["bytes_per_s"] / MB
        out.append(_row("1 bulk 64 KiB, raw echo (baseline)", raw, "MB/s"))
        ok = nat >= 0.5 * raw and nat >= 10 * ref["bulk_mb_s"]
        out.append(
            _row(
                "1 bulk 64 KiB, native",
                nat,
                "MB/s",
                f"vs raw echo {raw:,.0f}",
                nat / raw,
                f">= 50% raw and >= {10 * ref['bulk_mb_s']:.0f}",
                ok,
            )
        )
        if "sth" in v:
            sth = v["sth"]["bytes_per_s"] / MB
            out.append(_row("8 bulk 64 KiB, STH transport", sth, "MB/s", f"vs native {nat:,.0f}", sth / nat))
        out.append(
            _row(
                "8 bulk, STH's runner (reference)",
                ref["bulk_mb_s"],
                "MB/s",
                "cited",
                nat / ref["bulk_mb_s"],
                "native / STH",
            )
        )
    if "records" in res:
        for kind, label in (("text", "100 B text lines"), ("ndjson", "100 B ndjson records")):
            if kind not in res["records"]:
                continue
            v = res["records"][kind]["variants"]
            raw, nat = v["raw"]["records_per_s"], v["native"]["records_per_s"]
            out.append(_row(f"2 {label}, raw echo (baseline)", raw, "rec/s"))
            if kind == "text":
                out.append(
                    _row(
                        f"2 {label}, native",
                        nat,
                        "lines/s",
                        f"vs raw echo {raw:,.0f}",
                        nat / raw,
                        ">= 500,000",
                        nat >= 500_000,
                    )
                )
            else:
                out.append(_row(f"2 {label}, native", nat, "rec/s", f"vs raw echo {raw:,.0f}", nat / raw))
            if "sth" in v:
                sth = v["sth"]["records_per_s"]
                out.append(
                    _row(f"8 {label}, STH transport", sth, "lines/s", f"vs native {nat:,.0f}", sth / nat)
                )
        if "text" in res["records"]:
            nat = res["records"]["text"]["variants"]["native"]["records_per_s"]
            out.append(
                _row(
                    "8 100 B text lines, STH's runner (reference)",
                    ref["lines_per_s"],
                    "lines/s",
                    "cited",
                    nat / ref["lines_per_s"],
                    "native / STH",
                )
            )
    if "events" in res:
        e = res["events"]
        f2 = "{:.3f}"
        if "raw" in e:
            out.append(_row("3 raw ping-pong RTT p50 (floor)", e["raw"]["p50_ms"], "ms", fmt=f2))
            out.append(_row("3 raw ping-pong RTT p99 (floor)", e["raw"]["p99_ms"], "ms", fmt=f2))
        out.append(
            _row(
                "3 event RTT idle p50",
                e["idle"]["p50_ms"],
                "ms",
                f"STH {ref['rtt_idle_p50_ms']}",
                e["idle"]["p50_ms"] / ref["rtt_idle_p50_ms"],
                fmt=f2,
            )
        )
        out.append(
            _row(
                "3 event RTT idle p99",
                e["idle"]["p99_ms"],
                "ms",
                f"STH {ref['rtt_idle_p99_ms']}",
                e["idle"]["p99_ms"] / ref["rtt_idle_p99_ms"],
                "<= 0.5",
                e["idle"]["p99_ms"] <= 0.5,
                f2,
            )
        )
        out.append(
            _row(
                "3 event RTT, unread stdout flood, p50",
                e["flood"]["p50_ms"],
                "ms",
                f"vs idle {e['idle']['p50_ms']:.3f}",
                e["flood"]["p50_ms"] / e["idle"]["p50_ms"],
                fmt=f2,
            )
        )
        out.append(
            _row(
                "3 event RTT, unread stdout flood, p99",
                e["flood"]["p99_ms"],
                "ms",
                f"STH {ref['rtt_flood_p99_ms']}",
                e["flood"]["p99_ms"] / ref["rtt_flood_p99_ms"],
                "<= 2",
                e["flood"]["p99_ms"] <= 2.0,
                f2,
            )
        )
    if "startup" in res:
        out.extend(report_start.startup_rows(res["startup"]))
    if "completion" in res:
        out.extend(report_start.completion_rows(res["completion"]))
    if "kill" in res:
        k = res["kill"]
        f1 = "{:.1f}"
        out.append(
            _row(
                "5 KILL -> exit, CPU-bound Sequence",
                k["kill_cpu_bound_ms"],
                "ms",
                "STH: never",
                None,
                "<= 100",
                k["kill_cpu_bound_ms"] <= 100 and not k["kill_needed_signal"],
                f1,
            )
        )
        out.append(_row("5 STOP -> stop handler done (at host)", k["stop_handler_ms"], "ms", fmt=f1))
        out.append(_row("5 STOP -> exit (KILL when handler done)", k["stop_then_kill_exit_ms"], "ms", fmt=f1))
    if "memory" in res:
        m = res["memory"]
        out.extend(report_start.memory_rows(m))
        out.append(
            _row(
                f"6 RSS slope, stdout unread {m['flood_seconds']:.0f} s",
                m["flood_slope_mib_s"],
                "MiB/s",
                f"STH +{ref['flood_slope_mib_s']:.0f}",
                None,
                "flat (<= 0.05 in 2nd half)",
                m["flood_slope_second_half_mib_s"] <= 0.05,
                "{:+.3f}",
            )
        )
        out.append(
            _row(
                "6 RSS max under unread flood",
                m["flood_max_mib"],
                "MiB",
                f"start {m['flood_start_mib']:.1f}",
                None,
                fmt="{:.1f}",
            )
        )
    if "many" in res:
        out.extend(report_start.many_rows(res["many"]))
    if "cli" in res:
        out.extend(report_start.cli_rows(res["cli"]))
    if "hub" in res:
        out.extend(hub_rows(res["hub"]))
    if "hub-docker" in res:
        import bench_hub_docker

        out.extend(bench_hub_docker.report_rows(res["hub-docker"]))
    for r in res.get("framer", []):
        if r["unit"] == "frames/s":
            value, unit, fmt = r["rate"] / 1e6, "M frames/s", "{:.2f}"
        else:
            value, unit, fmt = r["rate"], "GB/s", "{:.2f}"
        out.append(
            _row(
                f"7 framer {r['workload']} {r['op']}, {r['impl']}",
                value,
                unit,
                "vs msgpack",
                r["vs_msgpack"],
                fmt=fmt,
            )
        )
    return out


def hub_rows(h: dict[str, Any]) -> list[dict[str, Any]]:
    """The REST hub beside host_bridge direct (bench_hub.py); ratios are hub / direct."""
    out: list[dict[str, Any]] = []
    if "start" in h:
        s = h["start"]
        out.append(_row("8 hub REST start -> running", s["rest_ms"], "ms", f"spawn->ready {s['direct_ms']:.1f} ms",
                        s["rest_ms"] / s["direct_ms"], "<= spawn->ready + 10 ms",
                        s["rest_ms"] <= s["direct_ms"] + 10, "{:.1f}"))
    for key, label in (("bulk", "8 hub REST input->output, bulk"), ("lines", "8 hub REST input->output, 100 B lines")):
        if key in h:
            rate = h[key]["bytes_per_s"]
            ratio = h[key]["rest_vs_direct"]
            target = ">= 0.5x direct" if key == "bulk" else ""
            out.append(_row(label, rate["rest"] / MB, "MB/s", f"direct {rate['direct'] / MB:,.0f} MB/s", ratio,
                            target, ratio >= 0.5 if key == "bulk" else None))
    if "many" in h:
        m = h["many"]
        out.append(_row(f"8 hub {m['instances']} Instances at once, {m['bytes_each'] >> 10} KiB each", m["rest_s"],
                        "s", f"direct {m['direct_s']:.2f} s", m["direct_s"] / m["rest_s"], "every byte back", True,
                        "{:.2f}"))
    return out


def _met(m: bool | None) -> str:
    return "" if m is None else ("met" if m else "MISSED")


def table(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    lines = [
        f"sequence-runner benchmarks: {meta['nproc']} CPUs ({meta['cpu']}), Python {meta['python']}, "
        f"framer {meta['framer']}, median of {meta['config']['runs']} runs"
        + (" (--quick)" if meta["config"]["quick"] else ""),
    ]
    header = f"{'figure':<46} {'value':>12} {'unit':<10} {'compared with':<22} {'ratio':>7}  {'target':<26} {'':<6}"
    lines += [header, "-" * len(header)]
    for r in rows(doc):
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(
            f"{r['figure']:<46} {r['text']:>12} {r['unit']:<10} {r['compare']:<22} {ratio:>7}  "
            f"{r['target']:<26} {_met(r['met']):<6}"
        )
    lines.append(f"STH reference: {STH_REFERENCE['source']}")
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    out = [
        "| # | figure | value | unit | compared with | ratio | target | |",
        "|---|---|--:|---|---|--:|---|---|",
    ]
    for r in rows(doc):
        num, _, fig = r["figure"].partition(" ")
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        met = {None: "", True: "met", False: "**missed**"}[r["met"]]
        out.append(
            f"| {num} | {fig} | {r['text']} | {r['unit']} | {r['compare']} | {ratio} | {r['target']} | {met} |"
        )
    return "\n".join(out)
