"""Fixtures of the container tests (tests/containers/containers_support.py has the helpers)."""

from __future__ import annotations

import pytest
from containers_support import require_docker


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def docker_engine() -> None:
    """Skips the test (with the reason) when no Docker engine or no runner image is there."""
    require_docker()
