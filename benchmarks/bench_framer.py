"""Frame encode/decode throughput: compiled framer vs pure-Python framer vs msgpack.

    python benchmarks/bench_framer.py [--quick] [--runs N] [--chunk BYTES] [--json FILE]

Workloads: DATA frames of 64 bytes (reported in frames/s) and of 64 KiB (GB/s of
payload, 1 GB = 1e9 bytes). Decoding reads the stream as a socket reader would:
in chunks of --chunk bytes (256 KiB by default) made beforehand, so frames cross
chunk boundaries. The baseline is msgpack.Unpacker fed the same chunks and
iterated (the frames are msgpack values, so it can read them), and for encoding
msgpack.Packer packing the same arrays [channel, payload]. Encoders hand their
output over with take(), as the connection writer does (writev of the buffers).
Every figure is the median of --runs runs; implementations are interleaved in
each round so that noise from other processes hits them alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack

# Runs from a checkout without installing it (the compiled framer must be built in place).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMALL = 64
LARGE = 64 * 1024


def frame(channel: int, payload: bytes) -> bytes:
    return bytes([0x92, channel, 0xC6]) + len(payload).to_bytes(4, "big") + payload


def load_twins() -> dict[str, ModuleType]:
    from runner.protocol import _framer_py

    twins = {}
    try:
        from runner.protocol import _framer_c
    except ImportError as exc:
        print(f"note: compiled framer not built ({exc}); run `pip install -e .`", file=sys.stderr)
    else:
        twins["cython"] = _framer_c
    twins["python"] = _framer_py
    return twins


def decode_with(module: ModuleType, chunks: list[bytes], expected: int) -> Callable[[], None]:
    def run() -> None:
        decoder = module.FrameDecoder(1 << 20)
        count = 0
        for chunk in chunks:
            count += len(decoder.decode(chunk))
        assert count == expected, count

    return run


def decode_with_msgpack(chunks: list[bytes], expected: int) -> Callable[[], None]:
    def run() -> None:
        unpacker = msgpack.Unpacker(max_buffer_size=16 << 20)
        count = 0
        for chunk in chunks:
            unpacker.feed(chunk)
            for _ in unpacker:
                count += 1
        assert count == expected, count

    return run


def encode_with(module: ModuleType, payload: bytes, frames: int, flush_every: int) -> Callable[[], None]:
    def run() -> None:
        encoder = module.FrameEncoder(1 << 20)
        data = encoder.data
        for i in range(frames):
            data(1, payload)
            if i % flush_every == 0:
                encoder.take()
        encoder.take()

    return run


def encode_with_msgpack(payload: bytes, frames: int, flush_every: int) -> Callable[[], None]:
    def run() -> None:
        packer = msgpack.Packer(autoreset=False)
        pack = packer.pack
        for i in range(frames):
            pack([1, payload])
            if i % flush_every == 0:
                packer.bytes()
                packer.reset()
        packer.bytes()

    return run


def median_time(run: Callable[[], None], times: list[float]) -> None:
    gc.collect()
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)


def measure(cases: dict[str, Callable[[], None]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name, run in cases.items():
        run()  # warm-up (and the assertions)
    for _ in range(runs):
        for name, run in cases.items():
            median_time(run, times[name])
    return times


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    twins = load_twins()
    results: list[dict[str, Any]] = []
    for size, frames in ((SMALL, args.small_frames), (LARGE, args.large_frames)):
        payload = bytes(range(256)) * (size // 256) if size >= 256 else b"\xab" * size
        stream = frame(1, payload) * frames
        chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]
        # Small frames are coalesced into ~chunk-sized writes; each large one is a write.
        flush_every = max(1, args.chunk // (size + 7))
        workload = "64 B DATA" if size == SMALL else "64 KiB DATA"
        for op in ("decode", "encode"):
            if op == "decode":
                cases = {name: decode_with(m, chunks, frames) for name, m in twins.items()}
                cases["msgpack"] = decode_with_msgpack(chunks, frames)
            else:
                cases = {name: encode_with(m, payload, frames, flush_every) for name, m in twins.items()}
                cases["msgpack"] = encode_with_msgpack(payload, frames, flush_every)
            times = measure(cases, args.runs)
            for impl, samples in times.items():
                median = statistics.median(samples)
                if size == SMALL:
                    rate, unit = frames / median, "frames/s"
                else:
                    rate, unit = frames * size / median / 1e9, "GB/s"
                results.append(
                    {
                        "workload": workload,
                        "op": op,
                        "impl": impl,
                        "frames": frames,
                        "payload_bytes": size,
                        "median_s": median,
                        "runs_s": samples,
                        "rate": rate,
                        "unit": unit,
                    }
                )
    for row in results:
        base = next(
            r
            for r in results
            if (r["workload"], r["op"], r["impl"]) == (row["workload"], row["op"], "msgpack")
        )
        row["vs_msgpack"] = row["rate"] / base["rate"]
    return results


def fmt_rate(row: dict[str, Any]) -> str:
    if row["unit"] == "frames/s":
        return f"{row['rate'] / 1e6:8.2f} M frames/s"
    return f"{row['rate']:8.2f} GB/s       "


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()}, msgpack {'.'.join(map(str, msgpack.version))}, "
        f"decode chunks of {args.chunk} bytes, median of {args.runs} runs"
    )
    header = (
        f"{'workload':<13} {'impl':<8} {'decode':>20} {'vs msgpack':>10}   {'encode':>20} {'vs msgpack':>10}"
    )
    print(header)
    print("-" * len(header))
    keys = dict.fromkeys((r["workload"], r["impl"]) for r in results)
    for workload, impl in keys:
        dec, enc = (
            next(r for r in results if (r["workload"], r["impl"], r["op"]) == (workload, impl, op))
            for op in ("decode", "encode")
        )
        print(
            f"{workload:<13} {impl:<8} {fmt_rate(dec):>20} {dec['vs_msgpack']:>9.2f}x   "
            f"{fmt_rate(enc):>20} {enc['vs_msgpack']:>9.2f}x"
        )
    print(
        "Framer encoders keep payloads of 16 KiB or more as their own buffer (writev), so 64 KiB\n"
        "encoding costs a header, not a copy; msgpack.Packer copies every payload."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer frames and runs (a smoke test)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (default 7, quick 3)")
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="bytes per decode() call")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 7)
    args.small_frames = 20_000 if args.quick else 200_000
    args.large_frames = 64 if args.quick else 512
    results = bench(args)
    print_table(results, args)
    if args.json:
        meta = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "msgpack": ".".join(map(str, msgpack.version)),
            "chunk": args.chunk,
            "runs": args.runs,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
