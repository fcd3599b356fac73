"""Heartbeat: MONITORING ``{healthy, stats}`` at the host-set rate, from its own thread.

The heartbeat never stops and never waits for the event loop longer than its
health timeout: a loop that does not answer in time makes ``healthy`` false and
``stats.loopLagMs`` says how long the oldest unanswered probe has waited.

It starts right after the handshake, before the Sequence is loaded, so a host
sees the runner alive through a long import; its first beat goes out one period
later (a quick load has sent PANG by then). Until the Sequence's own health
check has been asked (the loop runs and run() has been called: ``attach``),
there is no verdict: a heartbeat says ``healthy: false`` with
``stats.starting: true`` and no ``stats.loopLagMs`` (the STH transport sends
no heartbeat at all then: STH's ``/health`` waits for the first one). A
Sequence whose check says unhealthy is never reported healthy first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .protocol import Monitoring
from .transport.base import Transport

log = logging.getLogger("runner")

DEFAULT_RATE = 1.0
MAX_HEALTH_TIMEOUT = 1.0


class Heartbeat:
    def __init__(self, transport: Transport, channel_stats: Callable[[], dict[str, Any]],
                 rate: float = DEFAULT_RATE) -> None:
        self._transport = transport
        self._channel_stats = channel_stats
        self._rate = rate
        self._changed = threading.Event()
        self._beat_now = False  # the first verdict can be had: beat without waiting for the period
        self._loop: tuple[Any, Any] | None = None  # (LoopBridge, AppContext) once the loop runs
        self._probe: tuple[float, Future[bool]] | None = None
        self._lag_ms = 0.0
        self._process: Any = None  # "proc", a psutil.Process, or False (resource only)
        self._cpu_mark: tuple[float, float] | None = None  # (monotonic, CPU seconds) of the last beat
        self._thread = threading.Thread(target=self._run, name="runner-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating (right after the handshake; the loop may not exist yet)."""
        from .thread_start import start_soon

        start_soon(self._thread)  # the main thread goes on loading meanwhile

    def attach(self, bridge: Any, context: Any) -> None:
        """The loop runs: from now on health is asked of ``context`` through ``bridge``. The first
        verdict goes out at once rather than at the next beat: "starting" lasts no longer than it is."""
        self._loop = (bridge, context)
        self._beat_now = True
        self._changed.set()

    def set_rate(self, rate: float) -> None:
        """Heartbeats per second; 0 turns them off until the next change."""
        self._rate = max(0.0, rate)
        self._changed.set()

    def _run(self) -> None:
        # The first beat one period after the start, not at once (docs/protocol.md: heartbeats start
        # after PANG): a Sequence that loads within the period has sent its PANG by then, one that
        # imports for longer is still seen alive. At once, that beat (its stats, its encoding and the
        # writer thread sending it) took ~1 ms from every start to PANG, for a beat that can only say
        # "starting". The first verdict still goes out at once (attach).
        next_beat = time.monotonic() + 1.0 / max(self._rate, 1e-9)
        while True:
            rate = self._rate
            if rate <= 0:
                self._changed.wait()
                self._changed.clear()
                next_beat = time.monotonic()
                continue
            delay = next_beat - time.monotonic()
            if delay > 0 and self._changed.wait(delay):
                self._changed.clear()
                if not self._beat_now:  # a new rate: the next beat one period from now
                    next_beat = time.monotonic() + 1.0 / max(self._rate, 1e-9)
                    continue
            self._beat_now = False
            try:
                beat = self.beat(min(MAX_HEALTH_TIMEOUT, 0.8 / rate))
            except Exception:  # the heartbeat must survive anything
                log.exception("heartbeat failed")
                beat = Monitoring(healthy=False, stats={})
            if not self._transport.send(beat) and self._transport.broken:
                return
            next_beat = max(next_beat + 1.0 / rate, time.monotonic())

    def beat(self, timeout: float) -> Monitoring:
        verdict = self._health(timeout)
        stats: dict[str, Any] = {}
        if verdict is None:
            stats["starting"] = True  # no verdict yet: the Sequence's check has not been asked
        else:
            stats["loopLagMs"] = round(self._lag_ms, 3)
        stats.update(self._process_stats())
        stats["channels"] = self._channel_stats()
        return Monitoring(healthy=bool(verdict), stats=stats)

    def _health(self, timeout: float) -> bool | None:
        """The Sequence's health; None until there is a loop (and a run()) to ask."""
        attached = self._loop
        if attached is None:
            return None
        if self._probe is None:
            started = time.monotonic()
            future = attached[0].start(self._ask, started, attached[1])
            self._probe = (started, future)
        started, future = self._probe
        try:
            healthy = bool(future.result(timeout))
        except FutureTimeout:
            self._lag_ms = (time.monotonic() - started) * 1000.0
            return False
        except Exception:  # noqa: BLE001 - a failed probe means unhealthy, never a dead heartbeat
            healthy = False
        self._probe = None
        return healthy

    async def _ask(self, started: float, context: Any) -> bool:
        self._lag_ms = (time.monotonic() - started) * 1000.0
        healthy: bool = await context.health(MAX_HEALTH_TIMEOUT)
        return healthy

    def _process_stats(self) -> dict[str, Any]:
        """``rss`` (bytes) and ``cpu`` (percent of one CPU since the previous beat, as psutil's
        ``cpu_percent``). From /proc and ``os.times`` where there is a /proc: psutil would add
        ~1.3 MiB to every runner's RSS for two numbers; elsewhere psutil if installed."""
        if self._process is None:
            self._process = "proc" if _proc_rss() is not None else self._psutil_process()
        if self._process == "proc":
            rss = _proc_rss()
            if rss is not None:
                times = os.times()
                now, cpu_s = time.monotonic(), times.user + times.system
                last, self._cpu_mark = self._cpu_mark, (now, cpu_s)
                cpu = 0.0
                if last is not None and now > last[0]:
                    cpu = round((cpu_s - last[1]) / (now - last[0]) * 100.0, 1)
                return {"rss": rss, "cpu": cpu}
            self._process = False
        elif self._process:
            try:
                return {"rss": self._process.memory_info().rss, "cpu": self._process.cpu_percent(None)}
            except Exception:  # noqa: BLE001 - stats are best effort
                self._process = False
        import resource

        return {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu": None}

    @staticmethod
    def _psutil_process() -> Any:
        try:
            import psutil  # imported here: it costs start-up time and memory, and is optional

            process = psutil.Process()
            process.cpu_percent(None)
            return process
        except Exception:  # noqa: BLE001 - psutil missing or unusable: fall back to resource
            return False


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_rss() -> int | None:
    """Resident set size from /proc/self/statm (None where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None
