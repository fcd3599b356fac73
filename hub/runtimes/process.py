"""``--runtime process`` (the default): each Instance is a runner process spawned by host_bridge."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

from host_bridge import Bridge

from ..config import HubConfig
from . import Leftover, Started, StartRequest


class ProcessRuntime:
    name = "process"
    enforces_limits = False  # a process shares the hub's cgroup: see docs/hub.md "Runtimes"

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self._bridge: Bridge | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._bridge = None

    async def attach(self, bridge: Bridge) -> None:
        self._bridge = bridge

    async def recover(self) -> list[Leftover]:
        return []  # runners exit when their hub's connection goes: nothing outlives a dead hub

    async def start(self, request: StartRequest) -> Started:
        assert self._bridge is not None, "attach() first"
        instance = await self._bridge.spawn(
            request.package_dir, args=request.args, app_config=request.app_config,
            python=self.config.python, stop_timeout_ms=self.config.stop_timeout_ms,
        )
        return Started(instance)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "python": self.config.python}
