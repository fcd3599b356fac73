"""Signals and exit codes of the runner as a container's PID 1 (docs/runner.md "Exit codes",
"Signals"): `docker stop`, `docker kill`, every documented exit code, a memory limit."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import anyio
import pytest
from containers_support import (
    HERE_SEQUENCES,
    IMAGE,
    SAMPLES,
    SOCKET_DIR_IN_CONTAINER,
    Container,
    Hub,
    containers,
    hub,
    package_mount,
    readable_copy,
)

from host_bridge import Instance, Status

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("docker_engine"), pytest.mark.timeout(120)]


async def start_runner(h: Hub, start, seq: Path, *, extra: tuple[str, ...] = (),  # type: ignore[no-untyped-def]
                       **expect: object) -> tuple[Instance, Container]:
    inst = h.expect(**expect)
    box = await start(IMAGE, env=h.runner_env(inst), network=h.network,
                      mounts=[*h.mounts, package_mount(seq)], extra=extra)
    with anyio.fail_after(30):
        assert await inst.wait_started(), inst.info.error
    return inst, box


async def next_line(stream) -> bytes:  # type: ignore[no-untyped-def]
    buf = b""
    async for chunk in stream:
        buf += chunk
        if b"\n" in buf:
            break
    return buf


async def test_docker_stop_runs_the_stop_handler_and_exits_138(tmp_path: Path) -> None:
    seq = readable_copy(HERE_SEQUENCES / "stop-handler", tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst, box = await start_runner(h, start, seq)
        stdout = inst.stdout()
        assert await next_line(stdout) == b"started\n"  # run() is running, its stop handler is set
        began = time.monotonic()
        await box.stop(timeout_s=10)  # SIGTERM, SIGKILL after 10 s
        elapsed = time.monotonic() - began
        rest = b"".join([chunk async for chunk in stdout])
        assert rest == b"stop handler ran (timeout 5.0)\n"  # SIGTERM = STOP {timeout: 5000} (s here)
        end = await box.wait()
        assert (end.code, end.oom_killed) == (138, False)
        assert elapsed < 6, f"docker stop took {elapsed:.1f}s: the runner did not exit on SIGTERM"
        assert await inst.wait() == 138
        assert inst.status is Status.COMPLETED and inst.info.sequence_error is None


async def test_docker_stop_before_the_handshake_exits_138(tmp_path: Path) -> None:
    """A host that accepts the connection but never answers PING: SIGTERM ends the runner at once."""
    sockets = tmp_path / "silent"
    sockets.mkdir()
    sockets.chmod(0o755)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(sockets / "hub.sock"))
    (sockets / "hub.sock").chmod(0o666)
    silent.listen()
    seq = readable_copy(SAMPLES / "hello", tmp_path)
    env = {"SEQUENCE_RUNNER_CONNECT": f"unix:{SOCKET_DIR_IN_CONTAINER}/hub.sock",
           "SEQUENCE_RUNNER_INSTANCE_ID": "early", "SEQUENCE_RUNNER_TOKEN": "t",
           "SEQUENCE_RUNNER_CONNECT_TIMEOUT": "60"}
    try:
        async with containers() as start:
            box = await start(IMAGE, env=env,
                              mounts=[f"{sockets}:{SOCKET_DIR_IN_CONTAINER}", package_mount(seq)])
            with anyio.fail_after(30):
                conn, _ = await anyio.to_thread.run_sync(silent.accept)  # the runner connected
            began = time.monotonic()
            await box.stop(timeout_s=10)
            assert time.monotonic() - began < 5
            assert (await box.wait()).code == 138
            assert "SIGTERM before the handshake completed" in await box.logs()
            conn.close()
    finally:
        silent.close()


@pytest.mark.parametrize(("signal", "code"), [("KILL", 137), ("TERM", 138), ("INT", 138)])
async def test_docker_kill(tmp_path: Path, signal: str, code: int) -> None:
    """SIGKILL ends PID 1 (the engine reports 137); SIGTERM/SIGINT are a graceful stop (138)."""
    seq = readable_copy(SAMPLES / "cpu-bound", tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst, box = await start_runner(h, start, seq)
        inst.discard("stdout", "stderr", "log", "output")
        await anyio.sleep(0.3)
        await box.kill(signal)
        assert (await box.wait(timeout=30)).code == code
        with anyio.fail_after(20):
            await inst.wait()
        if signal == "KILL":
            # the connection just vanished: the bridge cannot know why, so it is not "completed"
            assert inst.status is Status.ERRORED
        else:
            assert inst.exit_code == code and inst.status is Status.COMPLETED


async def exit_code_of(tmp_path: Path, seq: Path, *, transport: str = "unix", **env: str) -> tuple[int, int | None, str]:
    """Runs a container to its end: (the engine's exit code, the bridge's, the container's log)."""
    async with hub(tmp_path, transport) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env={**h.runner_env(inst), **env}, network=h.network,
                          mounts=[*h.mounts, package_mount(seq)])
        inst.discard("stdout", "stderr", "log")
        with anyio.fail_after(60):
            await inst.send_input(["x\n"])
            code = await inst.wait()
        return (await box.wait()).code, code, await box.logs()


async def test_exit_0_completed(tmp_path: Path) -> None:
    assert (await exit_code_of(tmp_path, readable_copy(SAMPLES / "hello", tmp_path)))[:2] == (0, 0)


async def test_exit_20_wrong_token(tmp_path: Path) -> None:
    seq = readable_copy(SAMPLES / "hello", tmp_path)
    async with hub(tmp_path, handshake_timeout=30) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env=h.runner_env(inst, SEQUENCE_RUNNER_TOKEN="not-" + inst.token),
                          mounts=[*h.mounts, package_mount(seq)])
        assert (await box.wait()).code == 20
        assert f"wrong token for instance {inst.id}" in await box.logs()
        assert [r.instance_id for r in h.bridge.refused] == [inst.id]
        assert inst.status is Status.STARTING  # the real runner may still come


async def test_exit_20_bad_setting(tmp_path: Path) -> None:
    seq = readable_copy(SAMPLES / "hello", tmp_path)
    async with containers() as start:
        box = await start(IMAGE, env={"SEQUENCE_RUNNER_CONNECT": "unix:/nowhere"},
                          mounts=[package_mount(seq)])
        assert (await box.wait()).code == 20
        assert "instance" in (await box.logs()).lower()  # the message names the missing setting


async def test_exit_21_no_sequence(tmp_path: Path) -> None:
    async with hub(tmp_path) as h, containers() as start:
        inst = h.expect()
        box = await start(IMAGE, env=h.runner_env(inst, SEQUENCE_RUNNER_SEQUENCE="/package/missing"),
                          mounts=h.mounts)
        assert await inst.wait() == 21
        assert (await box.wait()).code == 21
        assert inst.status is Status.ERRORED
        assert "invalid Sequence path" in await box.logs()


async def test_exit_22_fails_on_start(tmp_path: Path) -> None:
    engine, bridge, logs = await exit_code_of(tmp_path, readable_copy(HERE_SEQUENCES / "import-error", tmp_path))
    assert (engine, bridge) == (22, 22)
    assert "module_that_is_not_installed" in logs


async def test_exit_23_raises_while_running(tmp_path: Path) -> None:
    engine, bridge, logs = await exit_code_of(tmp_path, readable_copy(SAMPLES / "failing", tmp_path))
    assert (engine, bridge) == (23, 23)
    assert "TestException: This exception should appear on stderr" in logs


@pytest.mark.parametrize(("how", "code"), [("kill", 137), ("stop", 138)])
async def test_exit_137_kill_and_138_stop_from_the_host(tmp_path: Path, how: str, code: int) -> None:
    seq = readable_copy(HERE_SEQUENCES / "stop-handler", tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst, box = await start_runner(h, start, seq)
        inst.discard("stdout", "stderr", "log")
        await (inst.kill() if how == "kill" else inst.stop(timeout_ms=2000))
        assert await inst.wait() == code
        assert (await box.wait()).code == code
        assert inst.status is Status.COMPLETED


async def test_memory_limit_is_reported_as_oom(tmp_path: Path) -> None:
    seq = readable_copy(HERE_SEQUENCES / "memory-hog", tmp_path)
    async with hub(tmp_path) as h, containers() as start:
        inst, box = await start_runner(h, start, seq, extra=("--memory", "96m", "--memory-swap", "96m"))
        inst.discard("stdout", "stderr", "log")
        end = await box.wait(timeout=60)
        assert (end.code, end.oom_killed, end.reason) == (137, True, "oom")
        with anyio.fail_after(20):
            await inst.wait()
        assert inst.status is Status.ERRORED  # the connection vanished mid-run
        assert await box.inspect(".HostConfig.Memory") == 96 << 20
