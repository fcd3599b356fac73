"""When the heartbeats start: after PANG for a Sequence that loads quickly (docs/protocol.md §4),
during the import for one that imports for longer, and with the first verdict as soon as run() runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from testhost import TestHost

from runner.protocol import Code

pytestmark = pytest.mark.timeout(60)

WAITS = "import asyncio\n\nasync def run(context, input):\n    await asyncio.sleep(60)\n"


def test_a_quick_load_sends_pang_before_any_heartbeat_and_the_first_verdict_at_once(tmp_path: Path) -> None:
    path = tmp_path / "waits.py"
    path.write_text(WAITS)
    with TestHost(path) as host:
        host.wait_message(Code.PING)
        host.send(Code.MONITORING_RATE, {"monitoringRate": 0.2})  # one beat per 5 s
        host.wait_message(Code.PANG)
        pang = time.monotonic()
        host.wait_running(timeout=4)  # the verdict does not wait for the period
        running = time.monotonic()
        codes = host.codes()
        host.send(Code.KILL)
        assert host.finish()[0] == 137
    assert codes.index(Code.PANG) < codes.index(Code.MONITORING), codes
    assert running - pang < 4


def test_a_slow_import_is_seen_alive(tmp_path: Path) -> None:
    path = tmp_path / "slow.py"
    path.write_text("import time\ntime.sleep(1.5)\n" + WAITS)
    with TestHost(path) as host:
        host.wait_message(Code.PING)
        host.send(Code.MONITORING_RATE, {"monitoringRate": 5})
        host.wait_message(Code.PANG)
        codes = host.codes()
        host.send(Code.KILL)
        assert host.finish()[0] == 137
    before_pang = codes[:codes.index(Code.PANG)]
    assert before_pang.count(Code.MONITORING) >= 3, codes  # 1.5 s of import at 5 beats a second
