"""Issue 11 item 4: no health verdict until the Sequence's own check has run.

A Sequence whose check says unhealthy used to be reported healthy first: the heartbeat starts at
the handshake, before the Sequence is loaded. Now a heartbeat before the check has been asked says
``healthy: false`` with ``stats.starting: true`` (protocol v1), and over STH no heartbeat goes out
at all until then (STH's ``/health`` waits for the first one). Real runners.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from runner_fault_helpers import REPO, TestHost, package_dir, runner_env, sequence_file
from test_sth_runner_support import new_host

from runner.protocol import Code

pytestmark = pytest.mark.timeout(60)

SLOW_UNHEALTHY = """
import asyncio, time
time.sleep(1.5)  # a slow import: heartbeats go out meanwhile

async def run(context, input):
    context.set_health_check(lambda: {"healthy": False})
    while True:
        await asyncio.sleep(1)
"""


def test_no_heartbeat_says_healthy_before_the_sequences_check(tmp_path: Path) -> None:
    with TestHost(sequence_file(tmp_path, SLOW_UNHEALTHY)) as host:
        host.wait_message(Code.PING)
        host.send(Code.MONITORING_RATE, {"monitoringRate": 10})
        host.wait_until(lambda: sum("loopLagMs" in b["stats"] for b in host.messages(Code.MONITORING)) >= 3,
                        what="three heartbeats with a verdict")
        beats = host.messages(Code.MONITORING)
        host.send(Code.KILL)
        assert host.finish()[0] == 137
    starting = [b for b in beats if b["stats"].get("starting")]
    assert len(starting) >= 3, beats  # during the 1.5 s import
    assert all(not b["healthy"] and "loopLagMs" not in b["stats"] for b in starting)
    first_verdict = beats.index(next(b for b in beats if "loopLagMs" in b["stats"]))
    assert all(b["stats"].get("starting") for b in beats[:first_verdict])
    assert not any(b["healthy"] for b in beats)  # the Sequence's check says unhealthy: never healthy


def test_a_healthy_sequence_turns_healthy_once_its_check_ran(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, "import asyncio\nasync def run(context, input):\n    await asyncio.sleep(60)\n")
    with TestHost(path) as host:
        host.wait_message(Code.PING)
        host.send(Code.MONITORING_RATE, {"monitoringRate": 10})
        host.wait_until(lambda: any(b["healthy"] for b in host.messages(Code.MONITORING)), what="healthy")
        beats = host.messages(Code.MONITORING)
        host.send(Code.KILL)
        assert host.finish()[0] == 137
    healthy = beats.index(next(b for b in beats if b["healthy"]))
    assert "loopLagMs" in beats[healthy]["stats"] and "starting" not in beats[healthy]["stats"]


def test_the_cli_does_not_call_a_loading_sequence_unhealthy(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, "import time\ntime.sleep(2.5)\n\ndef run(context, input):\n    return 'ok\\n'\n")
    done = subprocess.run([sys.executable, "-m", "runner", "run", str(path)], stdin=subprocess.DEVNULL,
                          capture_output=True, env=runner_env(), cwd=str(REPO), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"ok\n"
    assert b"unhealthy" not in done.stderr, done.stderr


@pytest.mark.anyio
async def test_sth_health_is_the_sequences_verdict_from_the_first_heartbeat(tmp_path: Path) -> None:
    pkg = package_dir(tmp_path, SLOW_UNHEALTHY)
    async with new_host(tmp_path) as host:
        inst = await host.start(pkg)
        first = await inst.health()  # STH's /health waits for the first heartbeat
        assert first["healthy"] is False
        await inst.kill()
        assert await inst.wait() == 137


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
