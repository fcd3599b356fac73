"""Per-Instance settings (defaults come from the Bridge; spawn()/expect() may override)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

from runner.protocol import DEFAULT_MAX_FRAME_SIZE
from runner.protocol.connection import MAX_WINDOW
from runner.protocol.constants import MAX_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE
from runner.protocol.stop import DEFAULT_EXIT_GRACE, DEFAULT_STOP_TIMEOUT_MS

#: Bytes the host lets a runner have in flight on each of its data channels; also
#: the most an unread channel buffers in the host.
DEFAULT_HOST_WINDOW = 1 << 20


#: The options that are durations (seconds; stop_timeout_ms in milliseconds).
TIMINGS = (
    "stop_timeout_ms", "handshake_timeout", "exit_grace", "term_grace", "heartbeat_timeout", "protocol_error_grace",
)


class OptionOverrides(TypedDict, total=False):
    """The tunable InstanceOptions, as keyword arguments of Bridge(), spawn() and expect()."""

    window: int
    max_frame_size: int
    stop_timeout_ms: float
    handshake_timeout: float
    exit_grace: float
    term_grace: float
    heartbeat_timeout: float
    protocol_error_grace: float
    event_names: int
    event_memory: int


@dataclass
class InstanceOptions:
    sequence: str | None = None
    args: list[Any] | None = None  # None: the runner uses its command line, then package.json
    app_config: dict[str, Any] | None = None
    input_content_type: str | None = None
    window: int = DEFAULT_HOST_WINDOW
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: stop() without a timeout uses this (STH's default stop timeout).
    stop_timeout_ms: float = DEFAULT_STOP_TIMEOUT_MS
    #: Seconds to wait for the runner's PING (spawned) or for it to connect (listener).
    handshake_timeout: float = 10.0
    #: Seconds a runner has to exit after SEQUENCE_STOPPED/COMPLETED or KILL (STH: 15 s).
    exit_grace: float = DEFAULT_EXIT_GRACE
    #: Seconds between SIGTERM and SIGKILL.
    term_grace: float = 5.0
    #: A runner without a heartbeat for this long is reported unhealthy.
    heartbeat_timeout: float = 5.0
    #: Seconds granted to a runner to exit by itself after a protocol error closed its connection.
    protocol_error_grace: float = 1.0
    #: Event names whose last event is kept for last_event() (the least recently published go first).
    event_names: int = 1000
    #: Bytes of events kept for last_event(), and at most in each events() subscriber's queue.
    event_memory: int = 8 << 20

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or not 0 < self.window <= MAX_WINDOW:
            raise ValueError(f"InstanceOptions.window must be an int in 1..{MAX_WINDOW}, got {self.window!r}")
        size = self.max_frame_size
        if not isinstance(size, int) or not MIN_MAX_FRAME_SIZE <= size <= MAX_MAX_FRAME_SIZE:
            raise ValueError(
                f"InstanceOptions.max_frame_size must be an int in {MIN_MAX_FRAME_SIZE}..{MAX_MAX_FRAME_SIZE},"
                f" got {size!r}"
            )
        for name in ("event_names", "event_memory"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"InstanceOptions.{name} must be an int >= 1, got {value!r}")
        for name in TIMINGS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"InstanceOptions.{name} must be a number >= 0, got {value!r}")

