"""The STH variant of the image (deploy/Dockerfile, target sth), started the way STH's docker
adapter starts its Python runner image: the Sequence read-only at /package, STH's environment, no
arguments, `autoRemove`-style lifetime, a memory limit. sth_host.STHHost (tests/sth_host) plays the hub's
instance server on 127.0.0.1 (host networking); the exit code comes from the engine, as STH's
docker adapter reads it."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from containers_support import HERE_SEQUENCES, SAMPLES, STH_IMAGE, Container, containers, readable_copy
from sth_host import STHHost, STHInstance

from host_bridge.sth import sequence_info_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("docker_engine"), pytest.mark.timeout(120)]


def sth_docker_env(seq: Path, port: int, instance_id: str, connect_info: dict[str, Any]) -> dict[str, str]:
    """get-runner-env.ts for the docker adapter: sequenceDir is /package; PYTHONPATH is the image's."""
    _, info = sequence_info_for(seq, str(uuid.uuid4()))
    config = info["config"]
    config.update(type="docker", sequenceDir="/package")
    return {
        "SEQUENCE_PATH": os.path.join("/package", config["entrypointPath"]),
        "INSTANCES_SERVER_PORT": str(port),
        "INSTANCES_SERVER_HOST": "127.0.0.1",
        "INSTANCE_ID": instance_id,
        "PIPES_LOCATION": "",
        "CRASH_LOG": "crash_log",
        "SEQUENCE_INFO": json.dumps(info),
        "RUNNER_CONNECT_INFO": json.dumps(connect_info),
    }


@asynccontextmanager
async def sth_instance(tmp_path: Path, sequence: Path, *, extra: tuple[str, ...] = (),
                       env: dict[str, str] | None = None,
                       connected: bool = True) -> AsyncIterator[tuple[STHInstance | None, Container]]:
    seq = readable_copy(sequence, tmp_path)
    async with STHHost(port=0) as host, containers() as start:
        runner_env = {**sth_docker_env(seq, host.port, str(uuid.uuid4()), {}), **(env or {})}
        box = await start(STH_IMAGE, env=runner_env, network="host",
                          mounts=[f"{seq}:/package:ro"], extra=("--memory", "512m", *extra))
        inst = None
        if connected:
            with anyio.fail_after(30):
                inst = await host.accept()
                await inst.wait_established()
        yield inst, box


async def test_sth_hello(tmp_path: Path) -> None:
    async with sth_instance(tmp_path, SAMPLES / "hello") as (inst, box):
        assert inst is not None and inst.pid == 1
        await inst.send_input(b"sth\ncontainer\n")
        await inst.end_input()
        assert await inst.read_all() == b"Hello sth!\nHello container!\n"
        assert (await box.wait()).code == 0
        assert await box.inspect(".Config.User") == "runner"


async def test_sth_read_only_root_filesystem_and_pypackages(tmp_path: Path) -> None:
    """The exit-code file (/tmp/runner-1) cannot be written: the exit code still reaches the engine."""
    async with sth_instance(tmp_path, HERE_SEQUENCES / "pypackages", extra=("--read-only",)) as (inst, box):
        assert inst is not None
        await inst.send_input(b"Grace\n")
        await inst.end_input()
        out = await inst.read_all()
        assert out == b"greetings, Grace, from /package/__pypackages__/greeting/__init__.py\n"
        assert (await box.wait()).code == 0


async def test_sth_docker_stop_runs_the_stop_handler_and_exits_138(tmp_path: Path) -> None:
    async with sth_instance(tmp_path, HERE_SEQUENCES / "stop-handler") as (inst, box):
        assert inst is not None
        stdout = inst.stdout()
        first = b""
        async for chunk in stdout:
            first += chunk
            if b"\n" in first:
                break
        assert first == b"started\n"
        began = time.monotonic()
        await box.stop(timeout_s=10)
        elapsed = time.monotonic() - began
        rest = b"".join([chunk async for chunk in stdout])
        assert rest == b"stop handler ran (timeout 5.0)\n"
        assert (await box.wait()).code == 138
        assert elapsed < 6


async def test_sth_docker_kill(tmp_path: Path) -> None:
    async with sth_instance(tmp_path, SAMPLES / "cpu-bound") as (inst, box):
        assert inst is not None
        await box.kill("KILL")
        assert (await box.wait()).code == 137


@pytest.mark.parametrize(
    ("sequence", "env", "code", "message"),
    [
        (SAMPLES / "hello", {"INSTANCE_ID": "short"}, 20, "INSTANCE_ID"),
        (SAMPLES / "hello", {"SEQUENCE_PATH": "/package/missing.py"}, 21, "/package/missing.py"),
        (HERE_SEQUENCES / "import-error", {}, 22, "module_that_is_not_installed"),
        (SAMPLES / "failing", {}, 23, "TestException"),
    ],
    ids=["20-bad-env", "21-no-sequence", "22-import-error", "23-raises"],
)
async def test_sth_exit_codes(tmp_path: Path, sequence: Path, env: dict[str, str], code: int, message: str) -> None:
    async with sth_instance(tmp_path, sequence, env=env, connected=code > 21) as (inst, box):
        if inst is not None:
            await inst.send_input(b"x\n")
            await inst.end_input()
        assert (await box.wait()).code == code
        assert message in await box.logs()  # what STH shows as the crash log
