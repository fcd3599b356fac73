"""Shared fixtures for tests/runner."""

from __future__ import annotations

import logging
from typing import Any

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeContextBackend:
    """A ContextBackend (runner/sequence/context.py) that records every call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.keepalives: list[float] = []
        self.ended = 0
        self.destroyed: list[BaseException | None] = []
        self.remaining_ms: float | None = None

    def emit(self, event_name: str, message: Any) -> None:
        self.events.append((event_name, message))

    def keep_alive(self, ms: float) -> None:
        self.keepalives.append(ms)

    def end(self) -> None:
        self.ended += 1

    def destroy(self, error: BaseException | None) -> None:
        self.destroyed.append(error)

    def stop_time_remaining_ms(self) -> float | None:
        return self.remaining_ms


@pytest.fixture
def fake_backend() -> FakeContextBackend:
    return FakeContextBackend()


@pytest.fixture
def seq_logger() -> logging.Logger:
    logger = logging.getLogger("test.sequence")
    logger.setLevel(logging.DEBUG)
    return logger
