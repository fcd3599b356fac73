"""Table rows for start-up, completion latency, idle memory and the CLI path (issue 13).

Every ratio here is of two figures measured in the same rounds of the same run.
"""

from __future__ import annotations

from typing import Any

F1 = "{:.1f}"


def row(
    figure: str,
    value: float | None,
    unit: str,
    compare: str = "",
    ratio: float | None = None,
    target: str = "",
    met: bool | None = None,
    fmt: str = "{:,.0f}",
) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "text": "-" if value is None else fmt.format(value),
        "unit": unit,
        "compare": compare,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def startup_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    floor = s["import_asyncio_ms"]
    vs_floor = f"vs import asyncio {floor:.1f}"
    out = [
        row("4 python -c pass, spawn -> first byte (floor)", s["interpreter_ms"], "ms", fmt=F1),
        row("4 python -c 'import asyncio', spawn -> first byte (floor)", floor, "ms",
            f"vs python -c pass {s['interpreter_ms']:.1f}", floor / s["interpreter_ms"], fmt=F1),
        row("4 runner, spawn -> PING (cold)", s["runner_ping_ms"], "ms", vs_floor, s["runner_ping_ms"] / floor, fmt=F1),
    ]
    # The handshake is not "ready": since PING first the runner answers it before importing asyncio,
    # anyio or the Sequence. Issue 13's "ready" is the first PANG (the Sequence is loaded).
    for kind, label, target in (("cold", "cold", 50), ("warm", "warm (zygote)", 10)):
        if f"{kind}_pang_ms" not in s:
            continue
        handshake, pang = s[f"{kind}_handshake_ms"], s[f"{kind}_pang_ms"]
        out.append(row(f"4 spawn -> handshake (PING/PONG), {label}", handshake, "ms", vs_floor, handshake / floor,
                       fmt=F1))
        out.append(row(f"4 spawn -> PANG (Sequence loaded), {label}", pang, "ms", vs_floor, pang / floor,
                       f"<= {target}", pang <= target, F1))
        if kind == "cold" and "cold_pang_cpu_ms" in s:  # CPU: steadier than wall time on a loaded machine
            floor_cpu = s["import_asyncio_cpu_ms"]
            out.append(row("4 CPU until PANG, cold (all threads)", s["cold_pang_cpu_ms"], "ms",
                           f"vs import asyncio's CPU {floor_cpu:.1f}", s["cold_pang_cpu_ms"] / floor_cpu, fmt=F1))
    theirs = s.get("sth_theirs_ms")
    ours = s["sth_ours_ms"]
    out.append(row("4 STH mode, start -> PING, our runner", ours, "ms",
                   f"STH's runner {theirs:.1f}" if theirs else "", ours / theirs if theirs else None,
                   "<= 0.6x STH's" if theirs else "", ours <= 0.6 * theirs if theirs else None, F1))
    if theirs:
        out.append(row("4 STH mode, start -> PING, STH's runner", theirs, "ms", f"vs import asyncio {floor:.1f}",
                       theirs / floor, fmt=F1))
    ours_pang, theirs_pang = s.get("sth_ours_pang_ms"), s.get("sth_theirs_pang_ms")
    if ours_pang is not None:  # STH's hub marks an Instance running at its first PANG
        out.append(row("4 STH mode, start -> first PANG, our runner (right after PONG)", ours_pang, "ms",
                       f"STH's runner {theirs_pang:.1f}" if theirs_pang else "",
                       ours_pang / theirs_pang if theirs_pang else None,
                       "<= 0.6x STH's" if theirs_pang else "",
                       ours_pang <= 0.6 * theirs_pang if theirs_pang else None, F1))
    if theirs_pang is not None:
        out.append(row("4 STH mode, start -> first PANG, STH's runner (before its Sequence load)", theirs_pang,
                       "ms", vs_floor, theirs_pang / floor, fmt=F1))
    ours_running, theirs_running = s.get("sth_ours_running_ms"), s.get("sth_theirs_running_ms")
    if ours_running is not None:  # both PANG before the Sequence loads: how soon it runs is this
        out.append(row("4 STH mode, start -> Sequence running (run() called), our runner", ours_running, "ms",
                       f"STH's runner {theirs_running:.1f}" if theirs_running else "",
                       ours_running / theirs_running if theirs_running else None, fmt=F1))
    if theirs_running is not None:
        out.append(row("4 STH mode, start -> Sequence running (run() called), STH's runner", theirs_running,
                       "ms", vs_floor, theirs_running / floor, fmt=F1))
    out.append(row("4 spawn -> first output (hello)", s["first_output_ms"], "ms", f"vs import asyncio {floor:.1f}",
                   s["first_output_ms"] / floor, fmt=F1))
    return out


def completion_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    theirs_out = c.get("sth_theirs_output_end_ms")
    theirs_exit = c.get("sth_theirs_exit_ms")
    for key, label in (("native", "native"), ("sth_ours", "STH mode, our runner"),
                       ("sth_theirs", "STH mode, STH's runner")):
        if f"{key}_output_end_ms" not in c:
            continue
        end, gone = c[f"{key}_output_end_ms"], c[f"{key}_exit_ms"]
        vs_out = f"STH's {theirs_out:.1f}" if theirs_out and key != "sth_theirs" else ""
        vs_exit = f"STH's {theirs_exit:.1f}" if theirs_exit and key != "sth_theirs" else ""
        target = "<= 5 after run() ends" if key != "sth_theirs" else ""
        out.append(row(f"4 input end -> output end, {label}", end, "ms", vs_out,
                       end / theirs_out if vs_out and theirs_out else None, target,
                       end <= 5 if target else None, F1))
        out.append(row(f"4 input end -> exit, {label}", gone, "ms", vs_exit,
                       gone / theirs_exit if vs_exit and theirs_exit else None, fmt=F1))
    return out


def memory_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    floor = m["import_asyncio_rss_mib"]
    labels = (("interpreter", "python -c pass (floor)"), ("import_asyncio", "python -c 'import asyncio' (floor)"),
              ("native", "idle runner, native"), ("sth_ours", "idle runner, STH mode"),
              ("warm", "idle runner, warm (zygote)"), ("sth_theirs", "idle STH's runner"))
    theirs = m.get("sth_theirs_rss_mib")
    for key, label in labels:
        if f"{key}_rss_mib" not in m:
            continue
        rss, uss = m[f"{key}_rss_mib"], m[f"{key}_uss_mib"]
        if key in ("native", "sth_ours"):  # beside the floor measured in the same rounds (and STH's, if run)
            compare = (f"STH's {theirs:.1f}; " if theirs else "") + f"vs import asyncio {floor:.1f}"
            ratio = rss / theirs if theirs else rss / floor
            out.append(row(f"6 {label} RSS", rss, "MiB", compare, ratio, "<= 20", rss <= 20, F1))
            floor_uss = m["import_asyncio_uss_mib"]
            out.append(row(f"6 {label} USS (private)", uss, "MiB", f"vs import asyncio {floor_uss:.1f}",
                           uss / floor_uss, fmt=F1))
            continue
        out.append(row(f"6 {label} RSS", rss, "MiB", fmt=F1))
        target = "<= 4" if key == "warm" else ""
        out.append(row(f"6 {label} USS (private)", uss, "MiB", "", None, target,
                       uss <= 4 if target else None, F1))
    return out


def cli_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    raw, cli = c["raw_copy_mb_s"], c["cli_mb_s"]
    return [
        row("9 raw two-process Python copy (baseline)", raw, "MB/s"),
        row("9 python -m runner run --input FILE, stdout a pipe", cli, "MB/s", f"vs raw copy {raw:,.0f}", cli / raw,
            ">= 50% raw", cli >= 0.5 * raw),
    ]


def many_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    n = m["count"]
    out = []
    for name in ("warm", "cold"):
        if name not in m:
            continue
        r = m[name]
        out.append(row(f"6 {n} idle Instances at once, {name}: spawn -> all ready", r["all_ready_s"], "s",
                       f"{r['answered']}/{n} answered an event", None,
                       f"{n} on 2 cores" if name == "warm" else "", r["answered"] == n if name == "warm" else None,
                       "{:.2f}"))
        out.append(row(f"6 {n} idle Instances, {name}: USS per Instance (median)", r["uss_median"] / 2**20, "MiB",
                       f"sum {r['uss_sum'] / 2**20:,.0f} MiB, RSS sum {r['rss_sum'] / 2**20:,.0f}", None,
                       "<= 4" if name == "warm" else "", r["uss_median"] <= 4 * 2**20 if name == "warm" else None,
                       F1))
    return out
