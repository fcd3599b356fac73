"""Running the runner image in real containers, the way a hub's docker adapter would.

A test registers an Instance with ``Bridge.expect`` (id + per-Instance token), starts a container
of the runner image that connects back to the bridge's listener, and drives it through host_bridge.
Networking is never Docker's default bridge: ``--network none`` with the listener's unix socket
directory mounted in, or ``--network host`` with a TCP listener on 127.0.0.1.

The engine and images are found once per test process (tests/docker_engine.py, shared with the hub's
docker-runtime tests); without them every test here is skipped with the reason, unless
SEQUENCE_RUNNER_REQUIRE_DOCKER=1 (set by deploy/ci-containers.sh once it has an engine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from docker_engine import IMAGE, STH_IMAGE  # noqa: F401 - the tests here import them from this module

from host_bridge import Bridge, Instance

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_sequences"
HERE_SEQUENCES = Path(__file__).resolve().parent / "sequences"
#: every container a test starts carries it, so leftovers can be found and removed
TEST_LABEL = "org.sequence-runner.test"
SOCKET_DIR_IN_CONTAINER = "/run/hub"
RUNNER_UID = 1200


async def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = await anyio.run_process(["docker", *args], check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
    return result


def readable_copy(source: Path, dest_root: Path) -> Path:
    """A copy of a Sequence that the container's user (uid 1200) can read, whatever the umask."""
    dest = dest_root / f"seq-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


@dataclass
class ContainerExit:
    """How a container ended, as the engine reports it (what a hub's adapter would map)."""

    code: int
    oom_killed: bool
    error: str

    @property
    def reason(self) -> str:
        if self.oom_killed:
            return "oom"
        return {0: "completed", 137: "killed", 138: "stopped"}.get(self.code, "failed")


class Container:
    """One runner container: started detached, waited for, inspected, always removed."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def wait(self, timeout: float = 60) -> ContainerExit:
        with anyio.fail_after(timeout):
            await docker("wait", self.name)
        state = json.loads((await docker("inspect", "--format", "{{json .State}}", self.name)).stdout)
        return ContainerExit(int(state["ExitCode"]), bool(state["OOMKilled"]), str(state.get("Error", "")))

    async def inspect(self, template: str) -> Any:
        return json.loads((await docker("inspect", "--format", "{{json " + template + "}}", self.name)).stdout)

    async def logs(self) -> str:
        result = await docker("logs", self.name)
        return (result.stdout + result.stderr).decode("utf-8", "replace")

    async def stop(self, timeout_s: int) -> None:
        await docker("stop", "--time", str(timeout_s), self.name)

    async def kill(self, signal: str = "KILL") -> None:
        await docker("kill", "--signal", signal, self.name)

    async def remove(self) -> None:
        await docker("rm", "--force", "--volumes", self.name, check=False)


@asynccontextmanager
async def containers() -> AsyncIterator[Any]:
    """Yields ``start(image, args, env, network=..., mounts=..., extra=...) -> Container``;
    removes every container it started on the way out."""
    started: list[Container] = []

    async def start(image: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None, *,
                    network: str = "none", mounts: Sequence[str] = (), extra: Sequence[str] = ()) -> Container:
        assert network in ("none", "host"), "tests never use Docker's default bridge"
        name = f"sr-test-{uuid.uuid4().hex[:12]}"
        argv = ["run", "--detach", "--name", name, "--label", f"{TEST_LABEL}=1", "--network", network,
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        for mount in mounts:
            argv += ["--volume", mount]
        container = Container(name)
        started.append(container)
        await docker(*argv, *extra, image, *args)
        return container

    try:
        yield start
    finally:
        with anyio.CancelScope(shield=True):
            for container in started:
                await container.remove()


@dataclass
class Hub:
    """A bridge listening where containers can reach it, plus the mounts and address they need."""

    bridge: Bridge
    address: str  # what the runner in the container connects to
    network: str
    mounts: list[str]

    def expect(self, **options: Any) -> Instance:
        return self.bridge.expect(**options)

    def runner_env(self, instance: Instance, **extra: str) -> dict[str, str]:
        """The environment a hub gives a runner container: where to connect, who it is, its token."""
        return {"SEQUENCE_RUNNER_CONNECT": self.address, "SEQUENCE_RUNNER_INSTANCE_ID": instance.id,
                "SEQUENCE_RUNNER_TOKEN": instance.token, **extra}


@asynccontextmanager
async def hub(tmp_path: Path, transport: str = "unix", **bridge_options: Any) -> AsyncIterator[Hub]:
    """``unix``: the socket's directory is mounted into a container with no network;
    ``tcp``: a loopback TCP listener and host networking."""
    async with Bridge(**bridge_options) as bridge:
        if transport == "unix":
            sockets = tmp_path / f"hub-{uuid.uuid4().hex[:6]}"
            sockets.mkdir()
            sockets.chmod(0o755)
            listener = await bridge.listen_unix(str(sockets / "hub.sock"))
            (sockets / "hub.sock").chmod(0o666)  # the runner in the container is not root
            yield Hub(bridge, f"unix:{SOCKET_DIR_IN_CONTAINER}/hub.sock", "none",
                      [f"{sockets}:{SOCKET_DIR_IN_CONTAINER}"])
        else:
            listener = await bridge.listen_tcp("127.0.0.1", 0)
            yield Hub(bridge, listener.address, "host", [])


def package_mount(sequence_dir: Path) -> str:
    return f"{sequence_dir}:/package:ro"
