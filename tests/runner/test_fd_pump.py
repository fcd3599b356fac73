"""Fds 1 and 2 are pumped by one thread (runner/fd_pump.py), and stay as independent as with a
thread each: a host that takes no STDOUT holds up what is written to fd 1, never fd 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from testhost import TestHost

from runner.protocol import Channel, Code
from runner.transport.base import DEFAULT_PENDING_LIMIT

pytestmark = pytest.mark.timeout(90)

#: Far beyond what STDOUT holds without the host: its window, the channel's queue (1 MiB) and a pipe.
FLOOD = 4 * 1024 * 1024

FLOODS_FD1 = """
    import os, threading

    def flood():
        chunk = b"z" * 65536
        for _ in range(FLOOD // 65536):
            os.write(1, chunk)
        os.write(1, b"\\nflood done\\n")

    async def run(context, input):
        context.on("say", lambda message: os.write(2, f"fd 2 still flows {message}\\n".encode()))
        threading.Thread(target=flood, daemon=True).start()
        async for _ in input:
            pass
""".replace("FLOOD", str(FLOOD))


def _stdout_queued(host: TestHost) -> int:
    beats = host.messages(Code.MONITORING)
    return int(beats[-1]["stats"]["channels"]["stdout"]["bytes"]) if beats else 0


def test_fd_2_flows_while_fd_1_waits_for_a_host_that_takes_no_stdout(tmp_path: Path) -> None:
    path = tmp_path / "floods.py"
    path.write_text(textwrap.dedent(FLOODS_FD1))
    with TestHost(path, consume=(Channel.STDERR, Channel.OUT, Channel.LOG), window=64 * 1024) as host:
        host.wait_message(Code.PANG)
        host.send(Code.MONITORING_RATE, {"monitoringRate": 20})
        # the heartbeat counts what was queued on STDOUT: the host's window and a full queue behind it
        host.wait_until(lambda: _stdout_queued(host) >= 64 * 1024 + DEFAULT_PENDING_LIMIT, what="STDOUT full")
        for i in range(2):  # fd 1's pipe is full and its writer blocked; fd 2 is read all the same
            host.send(Code.EVENT, {"eventName": "say", "message": i})
            host.wait_data(Channel.STDERR, f"fd 2 still flows {i}\n".encode(), timeout=10)
        assert len(host.data[Channel.STDOUT]) <= 64 * 1024  # nothing beyond the host's credit
        host.start_consuming(Channel.STDOUT)
        host.wait_data(Channel.STDOUT, b"flood done\n", timeout=30)
        host.send_end(Channel.IN)
        code, err = host.finish()
        assert code == 0, (err, host.summary())
        assert bytes(host.data[Channel.STDOUT]) == b"z" * FLOOD + b"\nflood done\n"


def test_one_thread_pumps_both_fds(tmp_path: Path) -> None:
    path = tmp_path / "names.py"
    path.write_text(textwrap.dedent("""
        import json, os, threading
        os.write(1, b"to fd 1\\n")
        os.write(2, b"to fd 2\\n")

        def names():
            return sorted(t.name for t in threading.enumerate())

        async def run(context, input):
            yield json.dumps(names())
    """))
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send_end(Channel.IN)
        code, err = host.finish()
        assert code == 0, (err, host.summary())
        names = bytes(host.data[Channel.OUT]).decode()
        assert (host.text(Channel.STDOUT), host.text(Channel.STDERR)) == ("to fd 1\n", "to fd 2\n")
    assert [name for name in json.loads(names) if name.startswith("runner-fd")] == ["runner-fd-pump"]
