"""Instance API against the fake runner (runner.protocol on the runner side)."""

from __future__ import annotations

import anyio
import pytest

from host_bridge import Bridge, Status

from hb_helpers import collect, spawn_fake

pytestmark = pytest.mark.anyio


async def test_echo_roundtrip_completes(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge, args=["a", 1], app_config={"k": "v"})
    assert inst.status in (Status.STARTING, Status.RUNNING)
    assert await inst.wait_started()
    assert inst.status is Status.RUNNING
    config = inst.last_event("config") or await inst.once("config")
    assert config.message == {"appConfig": {"k": "v"}, "args": ["a", 1]}
    await inst.send_input(["hello\n", "world\n"], content_type="text/plain")
    with anyio.fail_after(20):
        out = await collect(inst.output())
        code = await inst.wait()
    assert out == b"hello\nworld\n"
    assert code == 0
    assert inst.status is Status.COMPLETED
    assert inst.info.reported_exit_code == 0
    assert inst.info.error is None
    assert inst.last_event("content-type").message == "text/plain"
