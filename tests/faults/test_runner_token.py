"""Issue 11 item 15: the connection token is forgotten once the handshake used it.

The Sequence, and every process it starts, must not find it: not in ``os.environ``, not in an
inherited environment, not in ``/proc/self/environ`` or ``/proc/self/cmdline`` (``ps``), not in
``sys.argv``. Real runner processes; the host still receives it in PING.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_fault_helpers import TestHost, sequence_file

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-3f9a1c7e5b2d-secret"

LOOK_EVERYWHERE = """
import gc, os, subprocess, sys

def held_by_objects():
    needle = NEEDLE[::-1]  # the token, not spelled out in this code's constants
    raw = needle.encode()
    for obj in gc.get_objects():
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
        for item in items:
            if (isinstance(item, str) and needle in item) or (isinstance(item, bytes) and raw in item):
                return needle
    return ""

def run(context, input):
    places = {
        "os.environ": repr(dict(os.environ)),
        "environ file": open("/proc/self/environ", "rb").read().decode("utf-8", "replace"),
        "cmdline": open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace"),
        "sys.argv": repr(sys.argv),
        "child env": subprocess.run(["env"], capture_output=True, text=True).stdout,
        "child ps": subprocess.run(["cat", f"/proc/{os.getpid()}/cmdline"], capture_output=True).stdout.decode(),
        "the runner's objects": held_by_objects(),
    }
    needle = NEEDLE[::-1]  # spelled out here, the token would be in this function's constants: a
    # tuple the garbage collector tracks until its next collection, found by held_by_objects
    return "".join(f"{name}: {'FOUND' if needle in text else 'clean'}\\n" for name, text in places.items())
""".replace("NEEDLE", repr(TOKEN[::-1]))


@pytest.mark.parametrize("how", ["environment", "argv"])
def test_the_token_is_gone_once_the_handshake_used_it(tmp_path: Path, how: str) -> None:
    path = sequence_file(tmp_path, LOOK_EVERYWHERE)
    kwargs = {"env": {"SEQUENCE_RUNNER_TOKEN": TOKEN}} if how == "environment" else {"argv": ("--token", TOKEN)}
    with TestHost(path, **kwargs) as host:  # type: ignore[arg-type]
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
    assert host.messages(Code.PING)[0]["token"] == TOKEN  # the host got it
    report = bytes(host.data[Channel.OUT]).decode()
    assert "FOUND" not in report, report
    assert report.count("clean") == 7
