"""The window a hub's runners get for what they send it (hub/app.py OUTPUT_WINDOW)."""

from __future__ import annotations

from pathlib import Path

import anyio

from host_bridge.options import DEFAULT_HOST_WINDOW
from hub.app import OUTPUT_WINDOW, create_app
from hub.config import parse_config


async def _window_of_a_hub(store: Path) -> int:
    """The flow-control window every Instance of a hub (its app's lifespan, in this process) is spawned with."""
    app = create_app(parse_config(["--port", "0", "--store", str(store)], {}))
    async with app.router.lifespan_context(app):
        window: int = app.state.hub.registry.bridge.defaults.window
    return window


def test_a_hubs_runners_may_send_further_ahead_than_host_bridges_default(tmp_path: Path) -> None:
    """Output crosses one more stage in the hub than under host_bridge direct; its runners get
    OUTPUT_WINDOW (4 MiB), not host_bridge's 1 MiB (docs/hub.md, Performance)."""
    assert OUTPUT_WINDOW == 4 << 20 > DEFAULT_HOST_WINDOW
    assert anyio.run(_window_of_a_hub, tmp_path / "store") == OUTPUT_WINDOW
