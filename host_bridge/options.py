"""Per-Instance settings (defaults come from the Bridge; spawn()/expect() may override)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.protocol import DEFAULT_MAX_FRAME_SIZE

#: Bytes the host lets a runner have in flight on each of its data channels; also
#: the most an unread channel buffers in the host.
DEFAULT_HOST_WINDOW = 1 << 20


@dataclass
class InstanceOptions:
    sequence: str | None = None
    args: list[Any] | None = None  # None: the runner uses its command line, then package.json
    app_config: dict[str, Any] | None = None
    input_content_type: str | None = None
    window: int = DEFAULT_HOST_WINDOW
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: stop() without a timeout uses this (STH's default stop timeout).
    stop_timeout_ms: float = 7000.0
    #: Seconds to wait for the runner's PING (spawned) or for it to connect (listener).
    handshake_timeout: float = 10.0
    #: Seconds a runner has to exit after SEQUENCE_STOPPED/COMPLETED or KILL (STH: 15 s).
    exit_grace: float = 15.0
    #: Seconds between SIGTERM and SIGKILL.
    term_grace: float = 5.0
    #: A runner without a heartbeat for this long is reported unhealthy.
    heartbeat_timeout: float = 5.0
    #: Seconds granted to a runner to exit by itself after a protocol error closed its connection.
    protocol_error_grace: float = 1.0
