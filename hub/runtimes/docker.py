"""``--runtime docker``: each Instance is a container of the runner image (docs/deploy.md).

Per Instance: host_bridge registers it (fresh id and token) and this runtime creates and
starts a container that connects back to the hub's unix-socket listener: no network at all
(``NetworkMode: none``), the socket's directory mounted at /run/hub, the Sequence package
mounted read-only at /package, the id and token in the environment, memory and CPU limits,
a read-only root filesystem, no capabilities, no new privileges, uid 1200 (the image's user).
host_bridge supervises it through ``ContainerRunner`` (its ExternalRunner): the engine's wait,
State.ExitCode and State.OOMKilled become the Instance's end, escalation signals become the
engine's kill, and the container is removed once its end is read. Every container carries
the hub's label, so a restarted hub finds what its predecessor left and removes it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import sys
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

from host_bridge import Bridge, Instance, RunnerExit

from ..config import HubConfig
from . import Leftover, Limits, RuntimeUnavailable, Started, StartRequest
from .engine import Engine, EngineError

logger = logging.getLogger("hub.runtime")

LABEL_HUB = "org.sequence-runner.hub"  # value: the hub's id (kept in its store), to find leftovers
LABEL_INSTANCE = "org.sequence-runner.instance"
LABEL_SEQUENCE = "org.sequence-runner.sequence"
SOCKET_DIR_IN_CONTAINER = "/run/hub"
RUNNER_UID = 1200  # the image's user (deploy/Dockerfile), as STH's image
MiB = 1 << 20
_LOG_LINES = 5


class ContainerRunner:
    """host_bridge's handle on one runner container (host_bridge.ExternalRunner)."""

    def __init__(self, engine: Engine, container_id: str, name: str, limits: Limits) -> None:
        self.engine = engine
        self.id = container_id
        self.name = name
        self.limits = limits

    async def wait(self) -> RunnerExit:
        """The container's end as the engine saw it; then the container is removed."""
        try:
            await self.engine.wait(self.id)
            found = await self.engine.inspect(self.id)
            if found is None:
                return RunnerExit(None, detail=f"container {self.name} was removed by someone else")
            state = found["State"]
            end = await self._describe(state)
        except anyio.get_cancelled_exc_class():
            raise  # the hub is closing: its sweep removes what is left
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.engine.remove(self.id)
            raise
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await self.engine.remove(self.id)
        return end

    async def _describe(self, state: dict[str, Any]) -> RunnerExit:
        code = state.get("ExitCode")
        oom = bool(state.get("OOMKilled"))
        parts = []
        if oom:
            parts.append(f"OOMKilled: container {self.name} reached its memory limit of "
                         f"{self.limits.memory_mib:g} MiB")
        if state.get("Error"):
            parts.append(f"the engine says: {state['Error']}")
        if code not in (0, 137, 138) or state.get("Error"):
            lines = await self.engine.logs_tail(self.id, _LOG_LINES)
            if lines:
                parts.append("container output: " + " | ".join(lines))
        return RunnerExit(int(code) if code is not None else None, oom, "; ".join(parts) or None)

    async def signal(self, sig: signal.Signals) -> None:
        await self.engine.kill(self.id, sig.name)


class DockerRuntime:
    name = "docker"
    enforces_limits = True

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.engine = Engine(config.docker_host)
        self.engine_version = ""
        self.hub_id = ""
        self.socket_dir: Path | None = None
        self._bridge: Bridge | None = None
        self._readable: set[tuple[str, int]] = set()

    # -- the runtime's own lifetime (outlives the bridge) ------------------------------------
    async def __aenter__(self) -> Self:
        image = self.config.runner_image
        try:
            self.engine_version = await self.engine.version()
            if await self.engine.image(image) is None:
                raise RuntimeUnavailable(
                    f"--runtime docker: image {image} is not in the engine at {self.config.docker_host}: "
                    "build it with scripts/build-image (or name another with --runner-image)")
        except EngineError as exc:
            await self.engine.aclose()
            raise RuntimeUnavailable(f"--runtime docker: {exc}") from None
        except BaseException:
            await self.engine.aclose()
            raise
        self.hub_id = await anyio.to_thread.run_sync(self._read_hub_id)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        with anyio.CancelScope(shield=True):
            try:
                for left in await self._remove_ours():  # Instances the bridge could not end in time
                    logger.warning("removed %s at shutdown", left.what)
            except EngineError as err:
                logger.error("could not remove this hub's containers at shutdown: %s", err)
            finally:
                await self.engine.aclose()
                if self.socket_dir is not None:
                    shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _read_hub_id(self) -> str:
        """This hub's id, kept in its store: the label value of its containers across restarts."""
        path = self.config.store / "hub-id"
        if path.is_file():
            return path.read_text("utf-8").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        hub_id = uuid.uuid4().hex[:16]
        path.write_text(hub_id + "\n", "utf-8")
        return hub_id

    async def attach(self, bridge: Bridge) -> None:
        """The unix socket the runners connect to, in a directory of its own that containers mount."""
        self._bridge = bridge
        self.socket_dir = Path(tempfile.mkdtemp(prefix="sequence-hub-"))  # short: sun_path has 108 bytes
        await anyio.to_thread.run_sync(self._replace_socket_dir_record, self.socket_dir)
        self.socket_dir.chmod(0o711)  # the runner's user may pass through, not list
        sock = self.socket_dir / "hub.sock"
        await bridge.listen_unix(sock)
        if os.geteuid() == 0:
            os.chown(sock, RUNNER_UID, RUNNER_UID)  # 0600, the runner's user's alone
        else:
            sock.chmod(0o666)  # a hub that is not root cannot give it away; the per-Instance token guards it

    def _replace_socket_dir_record(self, new: Path) -> None:
        """A hub that was killed left its socket directory: the next one with the store removes it."""
        record = self.config.store / "socket-dir"
        if record.is_file():
            old = Path(record.read_text("utf-8").strip())
            if old.parent == Path(tempfile.gettempdir()) and old.name.startswith("sequence-hub-") and old != new:
                shutil.rmtree(old, ignore_errors=True)
        record.write_text(f"{new}\n", "utf-8")

    # -- leftovers -----------------------------------------------------------------------------
    async def recover(self) -> list[Leftover]:
        leftovers = await self._remove_ours()
        for left in leftovers:
            logger.warning("an earlier hub left %s: removed", left.what)
        return leftovers

    async def _remove_ours(self) -> list[Leftover]:
        found = await self.engine.containers(f"{LABEL_HUB}={self.hub_id}")
        leftovers = []
        for container in found:
            labels = container.get("Labels") or {}
            name = (container.get("Names") or [container["Id"][:12]])[0].lstrip("/")
            await self.engine.remove(container["Id"])
            leftovers.append(Leftover(labels.get(LABEL_INSTANCE), f"container {name} ({container.get('Status')})"))
        return leftovers

    # -- starting ------------------------------------------------------------------------------
    def limits(self, requested: Limits) -> Limits:
        """The start's limits, else the hub's defaults (0 there: no limit)."""
        memory = requested.memory_mib or self.config.memory_limit_mib or None
        cpus = requested.cpus or self.config.cpu_limit or None
        return Limits(memory, cpus)

    async def start(self, request: StartRequest) -> Started:
        assert self._bridge is not None and self.socket_dir is not None, "attach() first"
        package = request.package_dir.resolve()
        await anyio.to_thread.run_sync(self._make_readable, package)
        limits = self.limits(request.limits)

        async def start_container(instance: Instance) -> ContainerRunner:
            name = f"sequence-{instance.id}"
            container_id = await self.engine.create(name, self.container_body(instance, request, package, limits))
            try:
                await self.engine.start(container_id)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.engine.remove(container_id)
                raise
            return ContainerRunner(self.engine, container_id, name, limits)

        instance = await self._bridge.launch(
            start_container, args=request.args, app_config=request.app_config, sequence=str(package),
            stop_timeout_ms=self.config.stop_timeout_ms,
        )
        return Started(instance, {"container": f"sequence-{instance.id}", "limits": limits.to_json()})

    def container_body(self, instance: Instance, request: StartRequest, package: Path,
                       limits: Limits) -> dict[str, Any]:
        """The Engine API's container config: no network, read-only, no privileges, limited."""
        memory = int(limits.memory_mib * MiB) if limits.memory_mib else 0
        return {
            "Image": self.config.runner_image,
            "Env": [  # never argv: `ps` and the engine's process list would show the token
                f"SEQUENCE_RUNNER_CONNECT=unix:{SOCKET_DIR_IN_CONTAINER}/hub.sock",
                f"SEQUENCE_RUNNER_INSTANCE_ID={instance.id}",
                f"SEQUENCE_RUNNER_TOKEN={instance.token}",
            ],
            "Labels": {LABEL_HUB: self.hub_id, LABEL_INSTANCE: instance.id, LABEL_SEQUENCE: request.sequence_id},
            "HostConfig": {
                "NetworkMode": "none",
                "Binds": [f"{self.socket_dir}:{SOCKET_DIR_IN_CONTAINER}", f"{package}:/package:ro"],
                "ReadonlyRootfs": True,
                "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},  # counted in the memory limit
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "PidsLimit": 1024,
                "Memory": memory,
                "MemorySwap": memory,  # equal to Memory: no swap on top
                "NanoCpus": int(limits.cpus * 1e9) if limits.cpus else 0,
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
            },
        }

    def _make_readable(self, package: Path) -> None:
        """The runner's user (uid 1200) must read the package: add o+r (o+x on directories), once."""
        key = (str(package), package.stat().st_ino)
        if key in self._readable:
            return
        for root, dirs, files in os.walk(package):
            for name in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
                mode = os.lstat(name).st_mode
                if stat.S_ISLNK(mode):
                    continue
                wanted = mode | (stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0))
                if wanted != mode:
                    os.chmod(name, stat.S_IMODE(wanted))
        self._readable.add(key)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "image": self.config.runner_image, "engine": self.engine_version,
                "dockerHost": self.config.docker_host, "hubId": self.hub_id,
                "defaultLimits": Limits(self.config.memory_limit_mib or None, self.config.cpu_limit or None).to_json()}
