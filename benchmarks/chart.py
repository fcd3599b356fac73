"""The chart (matplotlib, optional) from run.py's results document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MB = 1e6


def chart(doc: dict[str, Any], path: Path) -> str:
    """Draw the chart; returns a message (the chart is skipped when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib, or the 'bench' extra)"
    from report import STH_REFERENCE

    res, ref, meta = doc["results"], STH_REFERENCE, doc["meta"]
    fig, axes = plt.subplots(3, 3, figsize=(15, 12.5))
    colors = {"raw": "#999999", "native": "#1f77b4", "sth": "#ff7f0e", "ref": "#d62728", "floor": "#bbbbbb"}

    def bars(
        ax: Any,
        labels: list[str],
        values: list[float],
        kinds: list[str],
        title: str,
        unit: str,
        log: bool = False,
        target: float | None = None,
    ) -> None:
        ax.bar(labels, values, color=[colors[k] for k in kinds])
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.3g}", (i, v), ha="center", va="bottom", fontsize=8)
        if target is not None:
            ax.axhline(target, color="green", linestyle="--", linewidth=1, label=f"target {target:g}")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=8)

    if "bulk" in res:
        v = res["bulk"]["variants"]
        bars(
            axes[0][0],
            ["raw echo", "native", "STH transport", "STH runner\n(cited)"],
            [
                v["raw"]["bytes_per_s"] / MB,
                v["native"]["bytes_per_s"] / MB,
                v.get("sth", {}).get("bytes_per_s", 0) / MB,
                ref["bulk_mb_s"],
            ],
            ["raw", "native", "sth", "ref"],
            "1/8 bulk pass-through, 64 KiB chunks",
            "MB/s",
            target=max(10 * ref["bulk_mb_s"], 0.5 * v["raw"]["bytes_per_s"] / MB),
        )
    if "records" in res and "text" in res["records"]:
        t = res["records"]["text"]["variants"]
        n = res["records"].get("ndjson", {}).get("variants", {})
        bars(
            axes[0][1],
            [
                "raw echo\n(same bytes)",
                "native\ntext",
                "native\nndjson",
                "STH transport\ntext",
                "STH runner\n(cited)",
            ],
            [
                t["raw"]["records_per_s"],
                t["native"]["records_per_s"],
                n.get("native", {}).get("records_per_s", 0),
                t.get("sth", {}).get("records_per_s", 0),
                ref["lines_per_s"],
            ],
            ["raw", "native", "native", "sth", "ref"],
            "2/8 100-byte records end to end",
            "records/s",
            log=True,
            target=500_000,
        )
    if "events" in res:
        e = res["events"]
        ax = axes[0][2]
        x = [0, 1]
        ax.bar(
            [i - 0.2 for i in x],
            [e["idle"]["p50_ms"], e["flood"]["p50_ms"]],
            0.2,
            label="ours p50",
            color="#6baed6",
        )
        ax.bar(x, [e["idle"]["p99_ms"], e["flood"]["p99_ms"]], 0.2, label="ours p99", color=colors["native"])
        ax.bar(
            [i + 0.2 for i in x],
            [ref["rtt_idle_p99_ms"], ref["rtt_flood_p99_ms"]],
            0.2,
            label="STH p99 (cited)",
            color=colors["ref"],
        )
        ax.plot([-0.35, 0.35], [0.5, 0.5], "g--", linewidth=1)
        ax.plot([0.65, 1.35], [2.0, 2.0], "g--", linewidth=1, label="targets")
        ax.set_xticks(x, ["idle", "stdout flooding,\nunread"])
        ax.set_ylabel("ms")
        ax.set_title("3 event round trip host -> Sequence -> host", fontsize=10)
        ax.legend(fontsize=8)
    if "startup" in res:
        s = res["startup"]
        names = [("interpreter_ms", "python\n-c pass", "floor"), ("import_asyncio_ms", "import\nasyncio", "floor"),
                 ("cold_pang_ms", "PANG\ncold", "native"), ("warm_pang_ms", "PANG\nwarm", "native"),
                 ("sth_ours_ms", "STH mode\nours", "sth"), ("sth_theirs_ms", "STH's\nrunner", "ref")]
        shown = [n for n in names if n[0] in s]
        bars(axes[1][0], [n[1] for n in shown], [s[n[0]] for n in shown], [n[2] for n in shown],
             "4 spawn -> PANG, STH mode -> PING (same spawning code, same rounds)", "ms", target=50)
    if "completion" in res:
        c = res["completion"]
        names = [("native", "native", "native"), ("sth_ours", "STH mode\nours", "sth"),
                 ("sth_theirs", "STH's\nrunner", "ref")]
        shown = [n for n in names if f"{n[0]}_output_end_ms" in c]
        bars(axes[2][0], [n[1] for n in shown], [c[f"{n[0]}_output_end_ms"] for n in shown],
             [n[2] for n in shown], "4 input end -> output end (one line, identity)", "ms", target=5)
    if "memory" in res and "native_uss_mib" in res["memory"]:
        m = res["memory"]
        names = [("import_asyncio", "import\nasyncio", "floor"), ("native", "native", "native"),
                 ("warm", "warm", "native"), ("sth_ours", "STH mode\nours", "sth"), ("sth_theirs", "STH's\nrunner", "ref")]
        shown = [n for n in names if f"{n[0]}_rss_mib" in m]
        ax = axes[2][1]
        x = list(range(len(shown)))
        ax.bar([i - 0.2 for i in x], [m[f"{n[0]}_rss_mib"] for n in shown], 0.4, label="RSS", color="#6baed6")
        ax.bar([i + 0.2 for i in x], [m[f"{n[0]}_uss_mib"] for n in shown], 0.4, label="USS (private)",
               color=colors["native"])
        ax.set_xticks(x, [n[1] for n in shown], fontsize=8)
        ax.axhline(20, color="green", linestyle="--", linewidth=1, label="RSS target 20")
        ax.set_ylabel("MiB")
        ax.set_title("6 idle memory per Instance", fontsize=10)
        ax.legend(fontsize=8)
    if "cli" in res:
        c = res["cli"]
        bars(axes[2][2], ["raw copy\n(2 processes)", "runner run\n--input FILE"], [c["raw_copy_mb_s"], c["cli_mb_s"]],
             ["raw", "native"], "9 CLI bulk, 64 KiB binary, stdout a pipe", "MB/s", target=0.5 * c["raw_copy_mb_s"])
    if "memory" in res:
        m = res["memory"]
        ax = axes[1][1]
        ts = [t for t, _ in m["flood_samples"]]
        ys = [y for _, y in m["flood_samples"]]
        ax.plot(ts, ys, color=colors["native"], label=f"ours ({m['flood_slope_mib_s']:+.3f} MiB/s)")
        if ts:
            ax.plot(
                [0, ts[-1]],
                [ys[0], ys[0] + ref["flood_slope_mib_s"] * ts[-1]],
                color=colors["ref"],
                linestyle=":",
                label="STH +4 MiB/s (cited)",
            )
        ax.axhline(
            m["native_rss_mib"],
            color=colors["floor"],
            linestyle="--",
            label=f"idle {m['native_rss_mib']:.1f} MiB",
        )
        ax.set_xlabel("s, host not reading stdout")
        ax.set_ylabel("runner RSS, MiB")
        ax.set_title("6 memory under an unread output flood", fontsize=10)
        ax.legend(fontsize=8)
    if "kill" in res:
        k = res["kill"]
        bars(
            axes[1][2],
            ["KILL -> exit\nCPU-bound", "STOP -> handler\ndone", "STOP -> exit"],
            [k["kill_cpu_bound_ms"], k["stop_handler_ms"], k["stop_then_kill_exit_ms"]],
            ["native", "native", "native"],
            "5 kill and stop (STH: CPU-bound never dies by KILL)",
            "ms",
            target=100,
        )
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_visible(False)
    fig.suptitle(
        f"sequence-runner, {meta['nproc']} CPUs ({meta['cpu']}), Python {meta['python']}, framer {meta['framer']}; "
        f"medians of {meta['config']['runs']} runs" + (" (--quick)" if meta["config"]["quick"] else ""),
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"chart: {path}"
