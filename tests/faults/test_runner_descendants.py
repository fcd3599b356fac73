"""Issue 11 item 14 (runner part): a descendant that called ``setsid`` ends with its runner.

The runner is a child subreaper, so a grandchild whose parent exited is adopted by the runner
instead of init, and every exit ends all descendants (SIGTERM, then SIGKILL). Before, cleanup
only reached the process group, and a ``setsid``'d grandchild lived on. Real runner processes.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from runner_fault_helpers import TestHost, sequence_file

from runner.protocol import Channel, Code

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

#: A child that starts a setsid'd grandchild (new session and process group) and exits at once,
#: so the grandchild is an orphan; plus a direct child in a session of its own that keeps running.
SPAWNER = """
import subprocess, sys

def spawn():
    grandchild = subprocess.run(
        [sys.executable, "-c",
         "import subprocess as s; p = s.Popen(['sleep', '300'], start_new_session=True, stdout=s.DEVNULL, "
         "stderr=s.DEVNULL); print(p.pid)"],
        capture_output=True, text=True, check=True).stdout.strip()
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    print(f"pids {grandchild} {child.pid}", flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _pids(host: TestHost) -> list[int]:
    line = host.wait_data(Channel.STDOUT, b"\n").decode()
    return [int(p) for p in line.split("pids ", 1)[1].split()[:2]]


def _gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if _alive(p)]


@pytest.mark.parametrize(("ending", "expected"), [("completes", 0), ("killed", 137), ("fails", 23)])
def test_setsid_descendants_end_with_the_runner(tmp_path: Path, ending: str, expected: int) -> None:
    path = sequence_file(tmp_path, SPAWNER + """
import asyncio

async def run(context, input, ending):
    spawn()
    await asyncio.sleep(0.3)
    if ending == "completes":
        return
    if ending == "fails":
        raise RuntimeError("boom")
    await asyncio.sleep(60)
""")
    with TestHost(path, args=[ending]) as host:
        pids = _pids(host)
        try:
            assert all(_alive(p) for p in pids)
            grandchild = pids[0]
            with open(f"/proc/{grandchild}/stat", "rb") as f:
                stat = f.read()
            parent = int(stat[stat.rindex(b")") + 2:].split()[1])
            assert parent == host.proc.pid, "the orphaned grandchild was not adopted by the runner"
            if ending == "killed":
                host.send(Code.KILL)
            else:
                host.send_end(Channel.IN)
            code, err = host.finish()
            assert code == expected, err
            assert _gone(pids) == [], f"descendants outlived the runner (exit {code})"
            assert "still running after SIGKILL" not in err
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_a_descendant_gets_sigterm_first(tmp_path: Path) -> None:
    """SIGTERM before SIGKILL: a descendant that cleans up on SIGTERM gets to do so."""
    marker = tmp_path / "cleaned-up"
    path = sequence_file(tmp_path, f"""
import asyncio, subprocess, sys

CHILD = '''
import signal, sys, time
def bye(*_):
    open({str(marker)!r}, "w").write("yes")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
time.sleep(300)
'''

async def run(context, input):
    child = subprocess.Popen([sys.executable, "-c", CHILD], start_new_session=True, stdout=subprocess.PIPE)
    child.stdout.readline()
    print("child ready", flush=True)
    await asyncio.sleep(60)
""")
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"child ready\n")
        host.send(Code.KILL)
        assert host.finish()[0] == 137
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "yes"
