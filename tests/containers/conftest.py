"""Fixtures of the container tests (tests/containers/containers_support.py has the helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_engine import require_docker

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # every container test can be selected with -m docker (deploy/ci-containers.sh)
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def docker_engine() -> None:
    """Skips the test (with the reason) when no Docker engine or no runner image is there."""
    require_docker()
