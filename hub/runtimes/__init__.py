"""Where the hub's Instances run: the runtime seam (``--runtime process`` or ``docker``).

The registry (hub/instances.py) asks a Runtime to start an Instance and gets host_bridge's
Instance handle back; it never knows whether a process or a container is behind it. A
runtime is used as ``async with runtime:`` around the hub's Bridge (so its own resources,
such as the Docker engine client, outlive every Instance), then ``attach``-ed to the bridge.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

from host_bridge import Bridge, Instance

from ..config import HubConfig


class RuntimeUnavailable(Exception):
    """The configured runtime cannot run Instances here (no engine, no image); the message says why."""


@dataclass(frozen=True)
class Limits:
    """Resources of one Instance: memory in MiB and CPUs (fractions allowed); None: no limit."""

    memory_mib: float | None = None
    cpus: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {"memory": self.memory_mib, "cpu": self.cpus}


@dataclass(frozen=True)
class StartRequest:
    sequence_id: str
    package_dir: Path
    app_config: dict[str, Any]
    args: list[Any] | None
    limits: Limits


@dataclass
class Started:
    """A started Instance and what the runtime adds to its summary (e.g. the container's name)."""

    instance: Instance
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Leftover:
    """Something an earlier hub left running (a container), found and removed at start."""

    instance_id: str | None
    what: str  # e.g. "container sequence-… (exited with code 137)"


class Runtime(Protocol):
    name: str
    enforces_limits: bool

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def attach(self, bridge: Bridge) -> None:
        """Bind to the hub's bridge (listeners the runners connect to)."""

    async def recover(self) -> list[Leftover]:
        """Find, report and remove what an earlier hub with this store left behind."""

    async def start(self, request: StartRequest) -> Started:
        """Start one Instance; SpawnError when it cannot be started."""

    def public(self) -> dict[str, Any]:
        """What GET /config shows about the runtime."""


def make_runtime(config: HubConfig) -> Runtime:
    if config.runtime == "docker":
        try:
            from .docker import DockerRuntime  # only docker mode needs httpx (the [docker] extra)
        except ImportError as exc:
            raise RuntimeUnavailable(f"--runtime docker needs httpx: pip install 'sequence-runner[docker]' ({exc})") \
                from None
        return DockerRuntime(config)
    from .process import ProcessRuntime

    return ProcessRuntime(config)
