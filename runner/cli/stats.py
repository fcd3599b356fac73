"""What ``run`` tells about a run: the one-line summary at its end and live stats on demand.

The summary counts what this command itself wrote to the Sequence's input and read from
its output (exact, unlike the last heartbeat before the exit, which may be up to a
second old): bytes, and lines for text and ndjson content types (the items their
decoders make). Live stats (``--stats SECONDS``, SIGUSR1) come from the runner's
heartbeats in a child run and from this process in an inline run: RSS, CPU, the event
loop's lag and items per second in and out.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.content_types import Kind, output_kind


def is_text_like(content_type: str | None) -> bool:
    """Whether lines mean something in this content type: text or ndjson in the shared table."""
    return output_kind(content_type) is not Kind.BINARY


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass
class Tally:
    """Bytes and lines of one direction. Thread-safe enough for one writer (counters only grow)."""

    nbytes: int = 0
    newlines: int = 0
    open_line: bool = False  # the last byte seen was not a newline
    #: Lines are only reported for text-like content: counting them costs a scan of every byte
    #: (~0.35 s of CPU per 256 MiB each way, a fifth of the CLI's time on bulk binary input).
    count_lines: bool = True

    def add(self, data: bytes) -> None:
        if not data:
            return
        self.nbytes += len(data)
        if self.count_lines:
            self.newlines += data.count(b"\n")
            self.open_line = not data.endswith(b"\n")

    def add_count(self, n: int) -> None:
        """``n`` more bytes that were never seen here (sent or spliced by the kernel); no lines."""
        self.nbytes += n

    @property
    def lines(self) -> int:
        return self.newlines + (1 if self.open_line else 0)

    def describe(self, content_type: str | None) -> str:
        if not self.nbytes:
            return "nothing"
        if is_text_like(content_type):
            return f"{self.lines} line{'s' if self.lines != 1 else ''}, {size(self.nbytes)}"
        return size(self.nbytes)

    def fields(self, content_type: str | None) -> dict[str, Any]:
        return {"bytes": self.nbytes, **({"lines": self.lines} if is_text_like(content_type) else {})}


@dataclass
class RunTally:
    """Everything the summary line says, gathered while the command runs."""

    started: float = field(default_factory=time.monotonic)
    input: Tally = field(default_factory=Tally)
    output: Tally = field(default_factory=Tally)
    input_type: str | None = None
    output_type: str | None = None

    def summary(self, code: int | None, meaning: str) -> tuple[str, dict[str, Any]]:
        """The text line and the JSON record of the summary."""
        took = time.monotonic() - self.started
        status = f"exit {code}" + (f" ({meaning})" if meaning else "")
        text = (f"done in {took:.2f} s; in: {self.input.describe(self.input_type)}; "
                f"out: {self.output.describe(self.output_type)}; {status}")
        record = {"durationMs": round(took * 1000, 1), "in": self.input.fields(self.input_type),
                  "out": self.output.fields(self.output_type), "code": code, "meaning": meaning}
        return text, record


def want_summary(verbose: bool) -> bool:
    """At the end of a run: with -v, or when a person watches stderr."""
    if verbose:
        return True
    stream = sys.__stderr__
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):
        return False


@dataclass(frozen=True)
class Sample:
    """One moment of the Sequence's counters (a heartbeat, or an inline measurement)."""

    at: float  # monotonic seconds
    rss: int | None
    cpu: float | None
    loop_lag_ms: float | None
    in_items: int
    out_items: int


class LiveStats:
    """Turns samples into ``[stats]`` lines; items/s are measured since the previous line."""

    def __init__(self) -> None:
        self._previous: Sample | None = None
        self._lock = threading.Lock()

    def line(self, sample: Sample | None) -> tuple[str, dict[str, Any]]:
        if sample is None:
            return "no numbers yet (the runner has not sent a heartbeat)", {}
        with self._lock:
            previous, self._previous = self._previous, sample
        parts = [f"rss {size(sample.rss)}" if sample.rss is not None else "rss ?",
                 f"cpu {sample.cpu:.0f}%" if sample.cpu is not None else "cpu ?",
                 f"loop lag {sample.loop_lag_ms:.1f} ms" if sample.loop_lag_ms is not None else "loop not running"]
        record: dict[str, Any] = {"rss": sample.rss, "cpu": sample.cpu, "loopLagMs": sample.loop_lag_ms,
                                  "inItems": sample.in_items, "outItems": sample.out_items}
        if previous is not None and sample.at > previous.at:
            span = sample.at - previous.at
            in_rate = (sample.in_items - previous.in_items) / span
            out_rate = (sample.out_items - previous.out_items) / span
            parts.append(f"in {in_rate:.0f} items/s, out {out_rate:.0f} items/s")
            record.update(inPerSecond=round(in_rate, 1), outPerSecond=round(out_rate, 1))
        else:
            parts.append(f"in {sample.in_items} items, out {sample.out_items} items so far")
        return ", ".join(parts), record


class ProcessSampler:
    """Samples of this process, for ``--inline`` (the Sequence runs here): psutil for RSS and CPU,
    the lag of a loop ticker, and item counters the inline run keeps."""

    TICK = 0.1

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first call only starts the measurement
        self.in_items = 0
        self.out_items = 0
        self.last_tick: float | None = None  # monotonic time the loop ticker last ran
        self.tick_lag = 0.0  # how late that tick ran, seconds

    async def tick(self) -> None:
        """Run on the loop: records how late each tick runs (a blocked loop ticks late or never)."""
        import asyncio

        while True:
            due = time.monotonic() + self.TICK
            await asyncio.sleep(self.TICK)
            now = time.monotonic()
            self.last_tick, self.tick_lag = now, max(0.0, now - due)

    def sample(self) -> Sample:
        now = time.monotonic()
        lag = None
        if self.last_tick is not None:  # a loop that stopped ticking lags by at least the silence
            lag = max(self.tick_lag, now - self.last_tick - self.TICK) * 1000
            lag = max(lag, 0.0)
        return Sample(at=now, rss=self._process.memory_info().rss, cpu=self._process.cpu_percent(None),
                      loop_lag_ms=lag, in_items=self.in_items, out_items=self.out_items)


class StatsReporter:
    """Writes a ``[stats]`` line on SIGUSR1 and every ``interval`` seconds, from a thread and a
    signal handler, so it works even while the Sequence blocks an inline run's event loop."""

    def __init__(self, sample: Callable[[], Sample | None], write: Callable[[str, dict[str, Any]], None],
                 interval: float | None) -> None:
        self._sample = sample
        self._write = write
        self._interval = interval
        self._live = LiveStats()
        self._stop = threading.Event()
        self._previous_handler: Any = None

    def report(self) -> None:
        try:
            text, record = self._live.line(self._sample())
        except Exception as exc:  # noqa: BLE001 - stats are best effort; say why there are none
            text, record = f"no numbers: {type(exc).__name__}: {exc}", {"error": str(exc)}
        self._write(text, record)

    def start(self) -> None:
        if hasattr(signal, "SIGUSR1"):
            self._previous_handler = signal.signal(signal.SIGUSR1, lambda _signum, _frame: self.report())
        if self._interval:
            threading.Thread(target=self._every_interval, name="runner-cli-stats", daemon=True).start()

    def _every_interval(self) -> None:
        assert self._interval
        while not self._stop.wait(self._interval):
            self.report()

    def stop(self) -> None:
        self._stop.set()
        if self._previous_handler is not None:
            signal.signal(signal.SIGUSR1, self._previous_handler)
            self._previous_handler = None


async def count_chunks(chunks: AsyncIterator[bytes], tally: Tally) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        tally.add(chunk)
        yield chunk


async def count_items(batches: AsyncIterator[list[Any]], sampler: ProcessSampler) -> AsyncIterator[list[Any]]:
    async for batch in batches:
        sampler.in_items += len(batch)
        yield batch
