"""Shared helpers: medians, timing, RSS sampling, input generation and the output hasher."""

from __future__ import annotations

import hashlib
import os
import queue
import statistics
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEQUENCES = HERE / "sequences"
if str(ROOT) not in sys.path:  # run from a checkout without installing it
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:  # the STH test host (sth_host) lives with the tests
    sys.path.append(str(ROOT / "tests"))

KIB = 1024
MIB = 1024 * 1024
CHUNK = 64 * KIB
#: Distinct random chunks the bulk input cycles through (so a shifted or lost chunk changes the hash).
POOL = 16
HASH = "sha256"  # SHA-NI on this machine class: the cheapest strong hash here; releases the GIL


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def bulk_pool(seed: int = 6) -> list[bytes]:
    import random

    rng = random.Random(seed)
    return [rng.randbytes(CHUNK) for _ in range(POOL)]


def bulk_chunks(pool: list[bytes], total: int) -> Iterator[bytes]:
    for i in range(total // CHUNK):
        yield pool[i % len(pool)]


def text_records(count: int, size: int = 100) -> bytes:
    """``count`` numbered text lines of exactly ``size`` bytes each (newline included)."""
    return b"".join(f"{i:08d} ".encode().ljust(size - 1, b"x") + b"\n" for i in range(count))


def ndjson_records(count: int, size: int = 100) -> bytes:
    """``count`` JSON objects of exactly ``size`` bytes each, written the way the runner
    re-encodes them (``json.dumps(obj, ensure_ascii=False)``), so bytes out == bytes in."""
    out = []
    for i in range(count):
        head = f'{{"id": {10_000_000 + i}, "ok": true, "pad": "'
        tail = '"}\n'
        out.append((head + "p" * (size - len(head) - len(tail)) + tail).encode())
    return b"".join(out)


_digests: dict[tuple[int, int], str] = {}


def expected_digest(blocks: Iterator[bytes], key: tuple[int, int]) -> str:
    """Digest of the whole input, computed once per workload before the clock starts."""
    if key not in _digests:
        h = hashlib.new(HASH)
        for block in blocks:
            h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


class Hasher:
    """Hashes output on its own thread (hashlib releases the GIL), so the host loop only queues.

    The queue is bounded: a hasher that falls behind slows the reader, like any consumer.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize)
        self._hash = hashlib.new(HASH)
        self.nbytes = 0
        self.newlines = 0
        self._thread = threading.Thread(target=self._run, name="bench-hasher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        update = self._hash.update
        get = self._queue.get
        while (chunk := get()) is not None:
            update(chunk)

    def feed(self, chunk: bytes) -> None:
        self.nbytes += len(chunk)
        self._queue.put(chunk)

    def finish(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._hash.hexdigest()


class Verifier:
    """Checks a byte stream against a periodic expected stream as it arrives (exact, ~free).

    The inputs here repeat with a period of ``len(period)`` bytes (bulk: 16 distinct random
    64 KiB chunks; records: one block of numbered records), so each output chunk is
    compared with the expected bytes at its offset: a lost, doubled, reordered or corrupted
    byte fails the run. Timed runs use this; the hashed run uses Hasher.
    """

    def __init__(self, period: bytes, max_chunk: int = 4 * MIB) -> None:
        self.period = len(period)
        self.ring = period * (2 + max_chunk // len(period))
        self.nbytes = 0

    def feed(self, chunk: bytes) -> None:
        n = len(chunk)
        off = self.nbytes % self.period
        if n > len(self.ring) - off:
            for i in range(0, n, self.period):
                self.feed(chunk[i : i + self.period])
            return
        if self.ring[off : off + n] != chunk:
            raise AssertionError(f"output differs from input within bytes {self.nbytes}..{self.nbytes + n}")
        self.nbytes += n

    def finish(self) -> str:
        return "compared"


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` (VmRSS), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds_all_threads(pid: int) -> float | None:
    """CPU time ``pid``'s threads have run so far (``/proc/PID/task/*/schedstat``, ns resolution);
    None if it is gone. Unlike wall time it barely moves with the machine's load."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def private_bytes(pid: int) -> int | None:
    """Private (unshared) resident memory of ``pid``: what this process alone costs."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f if b":" in line and not line[0:1].isdigit())
        return sum(int(fields[k].split()[0]) for k in (b"Private_Clean", b"Private_Dirty")) * 1024
    except (OSError, KeyError, ValueError):
        return None


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def machine() -> dict[str, Any]:
    import platform

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from runner.protocol import framer

    impl = framer.IMPLEMENTATION
    try:
        import uvloop  # noqa: F401

        has_uvloop = True
    except ImportError:
        has_uvloop = False
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "framer": impl,
        "uvloop_installed": has_uvloop,
    }
