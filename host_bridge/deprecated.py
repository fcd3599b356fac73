"""Attributes of Instance that are no longer its API: they still work, with a DeprecationWarning.

Before issue 12 the Instance's internals were plain attributes the supervision task
wrote; code outside (the CLI) read some of them. Each one here says what replaces it.
"""

from __future__ import annotations

import warnings

from runner.protocol.connection import Connection

from .link import Link
from .stats import HeartbeatMonitor


def _warn(name: str, instead: str) -> None:
    warnings.warn(f"Instance.{name} is deprecated: use {instead}", DeprecationWarning, stacklevel=3)


class DeprecatedAttributes:
    # Provided by Instance.
    _conn: Connection
    _link: Link | None
    _closed: bool
    _monitor: HeartbeatMonitor

    @property
    def conn(self) -> Connection:
        """Deprecated: the protocol Connection (use ``state.lifecycle`` / ``state_changes()``)."""
        _warn("conn", "Instance.state.lifecycle or Instance.state_changes()")
        return self._conn

    @property
    def link(self) -> Link | None:
        """Deprecated: the I/O loop of the connection (internal)."""
        _warn("link", "the Instance's methods")
        return self._link

    @property
    def closed(self) -> bool:
        """Deprecated: no more writes are possible (use ``state.lifecycle`` or ``done``)."""
        _warn("closed", "Instance.state (lifecycle, done)")
        return self._closed

    @property
    def heartbeat_at(self) -> float | None:
        """Deprecated: when the last heartbeat came (use ``stats.received_at``)."""
        _warn("heartbeat_at", "Instance.stats.received_at")
        return self._monitor.last.received_at if self._monitor.last is not None else None

    @property
    def connected_at(self) -> float | None:
        """Deprecated: when the handshake was accepted (use ``info.started`` or ``connected``)."""
        _warn("connected_at", "Instance.info.started")
        return self._monitor.connected_at
