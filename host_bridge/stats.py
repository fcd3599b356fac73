"""The runner's heartbeats (MONITORING) as typed values, and the host's health verdict.

A heartbeat body comes from the runner, so it is read defensively: a field of the
wrong type becomes None (or is left out of ``channels``) rather than an error;
the body as received stays available as ``raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import anyio


@dataclass(frozen=True)
class ChannelStats:
    """What the runner moved on one channel so far (from its heartbeat)."""

    bytes: int
    items: int


@dataclass(frozen=True)
class HeartbeatStats:
    """One heartbeat of the runner.

    ``healthy`` is the runner's own verdict (its Sequence's health check, and a loop
    that answered in time). ``rss`` is in bytes, ``cpu`` the percent of one CPU
    since the previous heartbeat. ``loop_lag_ms`` is None until the Sequence's event
    loop runs (``run()`` has been called). ``channels`` maps "out", "in", "stdout",
    "stderr", "log", "stdin" to bytes and items moved. ``received_at`` is
    ``anyio.current_time()`` on arrival; ``raw`` the body as received.
    """

    healthy: bool
    rss: int | None
    cpu: float | None
    loop_lag_ms: float | None
    channels: Mapping[str, ChannelStats]
    received_at: float
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Health:
    """The runner's latest heartbeat as the host sees it.

    ``healthy`` is False when the runner said so, or when no heartbeat came for
    longer than the bridge's ``heartbeat_timeout`` (``stale``). ``stats`` is the last
    heartbeat's ``stats`` as received, ``last`` the same heartbeat typed.
    """

    healthy: bool
    stale: bool
    stats: dict[str, Any]
    age: float | None  # seconds since the last heartbeat (None: none yet)
    heartbeats: int
    last: HeartbeatStats | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _channels(value: Any) -> dict[str, ChannelStats]:
    if not isinstance(value, dict):
        return {}
    out = {}
    for name, counters in value.items():
        if isinstance(name, str) and isinstance(counters, dict):
            size, items = _number(counters.get("bytes")), _number(counters.get("items"))
            if size is not None and items is not None:
                out[name] = ChannelStats(int(size), int(items))
    return out


def parse_heartbeat(body: Mapping[str, Any], received_at: float) -> HeartbeatStats:
    stats = body.get("stats")
    stats = stats if isinstance(stats, dict) else {}
    rss = _number(stats.get("rss"))
    return HeartbeatStats(
        healthy=body.get("healthy") is True,
        rss=int(rss) if rss is not None else None,
        cpu=_number(stats.get("cpu")),
        loop_lag_ms=_number(stats.get("loopLagMs")),
        channels=MappingProxyType(_channels(stats.get("channels"))),
        received_at=received_at,
        raw=MappingProxyType(dict(body)),
    )


class HeartbeatMonitor:
    """The last heartbeat, how many came, and whether they stopped coming (``health``)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.last: HeartbeatStats | None = None
        self.body: dict[str, Any] | None = None
        self.count = 0
        self.connected_at: float | None = None
        self.rate: float | None = None  # None: the runner's default (1/s)
        self.closed = False
        self._changed = anyio.Event()

    def beat(self, body: dict[str, Any], now: float) -> HeartbeatStats:
        self.body = body
        self.last = parse_heartbeat(body, now)
        self.count += 1
        self._wake()
        return self.last

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def health(self, now: float, alive: bool) -> Health:
        timeout = self.timeout
        if self.rate is not None and self.rate > 0:
            timeout = max(timeout, 3.0 / self.rate)  # slow heartbeats are not missing ones
        if self.rate == 0:
            timeout = float("inf")  # the host turned heartbeats off
        last = self.last
        if last is None:
            age = None
            stale = self.connected_at is not None and now - self.connected_at > timeout
        else:
            age = now - last.received_at
            stale = age > timeout
        said_healthy = last is not None and last.healthy
        stats = dict(self.body.get("stats") or {}) if self.body else {}
        return Health(said_healthy and not stale and alive, stale and alive, stats, age, self.count, last)

    def updates(self) -> HeartbeatUpdates:
        return HeartbeatUpdates(self)


class HeartbeatUpdates:
    """Async-iterate it: each heartbeat that arrives after it was made (the newest one when
    several came while the reader was busy); ends when the Instance's connection ends."""

    def __init__(self, monitor: HeartbeatMonitor) -> None:
        self._monitor = monitor
        self._seen = monitor.count

    def __aiter__(self) -> HeartbeatUpdates:
        return self

    async def __anext__(self) -> HeartbeatStats:
        monitor = self._monitor
        while monitor.count == self._seen:
            if monitor.closed:
                raise StopAsyncIteration
            await monitor._changed.wait()
        self._seen = monitor.count
        assert monitor.last is not None
        return monitor.last
