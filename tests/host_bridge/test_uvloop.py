"""A smoke run on asyncio with uvloop (backend_options), next to plain asyncio and trio."""

from __future__ import annotations

import anyio
import pytest
from hb_helpers import collect, spawn_fake

from host_bridge import Bridge

uvloop = pytest.importorskip("uvloop")
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


async def test_roundtrip_flood_and_kill_on_uvloop(anyio_backend: object) -> None:
    async with Bridge(exit_grace=2, term_grace=1) as bridge:
        echo = await spawn_fake(bridge)
        flood = await spawn_fake(bridge, "flood", window=128 * 1024)
        await echo.send_input("uv\n")
        with anyio.fail_after(10):
            assert await collect(echo.output()) == b"uv\n"
            assert await echo.wait() == 0
            await flood.send_event("x", 1)
            await flood.once("x-reply")
            await flood.kill()
            assert await flood.wait() == 137
