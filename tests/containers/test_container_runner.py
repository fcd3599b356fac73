"""The native runner image in real containers: output, exit codes, networking, integrity.

Each test is a hub's docker adapter in miniature: Bridge.expect() registers the Instance (id and
a per-Instance token), a container of the runner image connects back, host_bridge drives it, and
the engine's view of the end (exit code, OOMKilled) is checked beside the bridge's.
"""

from __future__ import annotations

import ast
import hashlib
import os
import socket
from pathlib import Path

import anyio
import pytest
from containers_support import (
    HERE_SEQUENCES,
    IMAGE,
    RUNNER_UID,
    SAMPLES,
    containers,
    hub,
    package_mount,
    readable_copy,
)

from host_bridge import Status
from host_bridge.link import SOCKET_BUFFER

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("docker_engine"), pytest.mark.timeout(120)]


async def collect(stream) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join([chunk async for chunk in stream])


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_hello_in_a_container(tmp_path: Path, transport: str) -> None:
    """unix: no network at all, the hub's socket directory mounted in; tcp: host networking."""
    seq = readable_copy(SAMPLES / "hello", tmp_path)
    async with hub(tmp_path, transport) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env=h.runner_env(inst), network=h.network,
                          mounts=[*h.mounts, package_mount(seq)])
        assert await inst.wait_started()
        await inst.send_input(["container\n", "world\n"])
        assert await collect(inst.output()) == b"Hello container!\nHello world!\n"
        assert await inst.wait() == 0
        assert inst.status is Status.COMPLETED
        end = await box.wait()
        assert (end.code, end.oom_killed) == (0, False)
        assert await box.inspect(".HostConfig.NetworkMode") == h.network
        assert await box.inspect(".Config.User") == "runner"
        assert inst.info.runner is not None and inst.info.runner["pid"] == 1  # the runner is PID 1


async def test_runs_as_non_root_without_a_compiler(tmp_path: Path) -> None:
    async with containers() as start:
        probe = "import os, shutil; print(os.getuid(), os.getgid(), shutil.which('gcc'), shutil.which('cc'))"
        box = await start(IMAGE, extra=["--entrypoint", "python"], args=["-c", probe])
        assert (await box.wait()).code == 0
        assert (await box.logs()).split() == [str(RUNNER_UID), str(RUNNER_UID), "None", "None"]
        version = await start(IMAGE, args=["--version"])
        assert (await version.wait()).code == 0
        assert "framer cython" in await version.logs()


@pytest.mark.parametrize(("env", "expected"), [({}, b"asyncio cython\n"),
                                               ({"SEQUENCE_RUNNER_UVLOOP": "1"}, b"uvloop cython\n")],
                         ids=["default", "uvloop"])
async def test_the_image_runs_sequences_with_the_compiled_framer_on_the_chosen_loop(
        tmp_path: Path, env: dict[str, str], expected: bytes) -> None:
    """What the runner in the image runs a Sequence on: the compiled frame codec, on asyncio's loop
    by default and on uvloop when asked for (it is in the image), as a runner process on the host
    does (`--version` shows the framer; this shows what a running Sequence gets)."""
    seq = readable_copy(HERE_SEQUENCES / "event-loop", tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env=h.runner_env(inst, **env), mounts=[*h.mounts, package_mount(seq)])
        assert await collect(inst.output()) == expected
        assert await inst.wait() == 0
        assert (await box.wait()).code == 0


async def test_the_runner_in_a_container_gets_the_wide_send_buffer(tmp_path: Path) -> None:
    """The runner's connection from inside a container (its own network namespace, the hub's unix
    socket mounted in) has the 1 MiB SO_SNDBUF on both ends, as a spawned runner's socketpair: with
    the namespace's ~208 KiB default docker-mode bulk through the hub ran at 0.86x process mode.
    Fails on a runner image without it, or where the namespace's net.core.wmem_max caps it."""
    assert SOCKET_BUFFER is not None
    seq = readable_copy(HERE_SEQUENCES / "send-buffer", tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env=h.runner_env(inst), mounts=[*h.mounts, package_mount(seq)])
        assert await inst.wait_started()
        assert inst._link is not None
        ours = inst._link.stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        theirs = ast.literal_eval((await collect(inst.output())).decode())  # the Sequence's "[bytes]\n"
        assert await inst.wait() == 0
        assert (await box.wait()).code == 0
    assert ours >= SOCKET_BUFFER  # Linux reports twice what was set
    assert len(theirs) == 1 and theirs[0] >= SOCKET_BUFFER


@pytest.mark.parametrize(
    ("sequence", "line", "expected"),
    [
        (SAMPLES / "hello", "read-only", b"Hello read-only!\n"),
        # a dependency shipped in the package's __pypackages__, as `si seq pack` packages have them
        (HERE_SEQUENCES / "pypackages", "Ada", b"greetings, Ada, from /package/__pypackages__/greeting/__init__.py\n"),
    ],
    ids=["hello", "pypackages"],
)
async def test_read_only_root_filesystem(tmp_path: Path, sequence: Path, line: str, expected: bytes) -> None:
    seq = readable_copy(sequence, tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env=h.runner_env(inst), mounts=[*h.mounts, package_mount(seq)],
                          extra=["--read-only"])
        await inst.send_input([line + "\n"])
        assert await collect(inst.output()) == expected
        assert await inst.wait() == 0
        assert (await box.wait()).code == 0
        assert await box.inspect(".HostConfig.ReadonlyRootfs") is True


async def test_sha256_of_a_large_binary_stream(tmp_path: Path) -> None:
    """64 MiB of random bytes through binary-passthrough in a container: bytes in == bytes out."""
    size, chunk = 64 << 20, 1 << 20
    seq = readable_copy(SAMPLES / "binary-passthrough", tmp_path)
    sent, received = hashlib.sha256(), hashlib.sha256()
    count = 0
    async with hub(tmp_path) as h, containers() as start:
        inst = h.expect(input_content_type="application/octet-stream")
        box = await start(IMAGE, env=h.runner_env(inst), mounts=[*h.mounts, package_mount(seq)])

        async def feed() -> None:
            for _ in range(size // chunk):
                data = os.urandom(chunk)
                sent.update(data)
                await inst.write_input(data)
            await inst.end_input()

        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            async for data in inst.output():
                received.update(data)
                count += len(data)
        assert count == size
        assert received.hexdigest() == sent.hexdigest()
        assert await inst.wait() == 0
        assert (await box.wait()).code == 0
