"""Counting the payload bytes a reader received straight into their buffers (shared by the
runner's and host_bridge's recv_into tests)."""

from __future__ import annotations

import pytest

from runner.protocol.connection import Connection


def count_received_into(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of every ``Connection.received_into`` call from now on (each still does its work)."""
    sizes: list[int] = []
    received_into = Connection.received_into

    def counted(self: Connection, n: int, now: float = 0.0) -> None:
        sizes.append(n)
        received_into(self, n, now)

    monkeypatch.setattr(Connection, "received_into", counted)
    return sizes
