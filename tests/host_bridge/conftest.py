"""Fixtures for host_bridge tests: both anyio backends and a Bridge with short graces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from host_bridge import Bridge


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bridge(anyio_backend: str) -> AsyncIterator[Bridge]:
    async with Bridge(
        handshake_timeout=10, exit_grace=5, term_grace=2, heartbeat_timeout=2, shutdown_timeout=5
    ) as b:
        yield b
