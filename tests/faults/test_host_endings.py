"""How host_bridge reports the end of a runner (issue 11 item 10; issue 14 item 8).

10: a runner whose process exits 0 without EXITING did not end through its exit path
    (os._exit(0) mid-stream or at import): its output may be cut short, so it is not
    "completed", for spawned runners as for connected ones.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from host_fault_helpers import SAMPLES, spawn_fake

from host_bridge import Bridge, Instance, Status

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _assert_unannounced_exit_0(inst: Instance) -> None:
    assert inst.status is Status.ERRORED
    assert not inst.info.exit_announced and inst.info.reported_exit_code is None
    assert inst.info.error is not None and "without EXITING" in inst.info.error


@pytest.mark.parametrize("connect", ["socketpair", "listener"])
async def test_fake_runner_exiting_0_without_exiting_is_not_completed(anyio_backend: str, connect: str) -> None:
    async with Bridge(exit_grace=5, term_grace=1) as bridge:
        listener = await bridge.listen_unix() if connect == "listener" else None
        inst = await spawn_fake(bridge, "vanish", listener=listener)
        with anyio.fail_after(20):
            out = b"".join([chunk async for chunk in inst.output()])
            code = await inst.wait()
    assert out == b"partial\n" and code == 0
    _assert_unannounced_exit_0(inst)


@pytest.mark.parametrize("where", ["run", "import"])
async def test_real_runner_os_exit_0_is_not_completed(anyio_backend: str, tmp_path: Path, where: str) -> None:
    body = {
        "run": """
            import os

            def run(context, input):
                yield "first\\n"
                os._exit(0)
        """,
        "import": """
            import os
            os._exit(0)

            def run(context, input):
                return "never"
        """,
    }[where]
    path = tmp_path / "vanishing.py"
    path.write_text(textwrap.dedent(body))
    async with Bridge(exit_grace=5, term_grace=1) as bridge:
        inst = await bridge.spawn(str(path))
        inst.discard("log", "stderr", "stdout")
        with anyio.fail_after(30):
            await anyio.lowlevel.checkpoint()
            out = b"".join([chunk async for chunk in inst.output()])
            assert await inst.wait() == 0
    assert out in (b"", b"first\n")
    _assert_unannounced_exit_0(inst)


async def test_a_clean_completion_is_announced(anyio_backend: str) -> None:
    async with Bridge() as bridge:
        inst = await bridge.spawn(str(SAMPLES / "hello"))
        inst.discard("log")
        await inst.send_input(["clean\n"])
        with anyio.fail_after(30):
            assert [line async for line in inst.output_items()] == ["Hello clean!\n"]
            assert await inst.wait() == 0
    assert inst.status is Status.COMPLETED and inst.info.exit_announced and inst.info.error is None


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_exit_reason_says_stopped_after_a_stop(anyio_backend: str, how: str) -> None:
    """Issue 14 item 8: after a clean stop the runner's reason is "stopped by the host" (138),
    not "killed by the host" (which stays the reason of a plain KILL, 137)."""
    async with Bridge() as bridge:
        inst = await bridge.spawn(str(SAMPLES / "events"))
        inst.discard("log", "stdout", "stderr")
        with anyio.fail_after(30):
            await inst.wait_running()
            await (inst.stop(timeout_ms=300) if how == "stop" else inst.kill())
            code = await inst.wait()
    assert inst.status is Status.COMPLETED and inst.info.exit_announced
    if how == "stop":
        assert (code, inst.info.exit_reason) == (138, "stopped by the host")
    else:
        assert (code, inst.info.exit_reason) == (137, "killed by the host")
