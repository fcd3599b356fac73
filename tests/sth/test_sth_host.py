"""The STH test host (tests/sth_host) against a fake STH runner and against hand-driven raw connections."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sth_host import STHHost, STHInstance, STHStartError
from sth_host.exits import remove_stale_exit_file

from host_bridge.sth import runner_env, sequence_info_for
from runner.protocol import sth

FAKE = str(Path(__file__).with_name("fake_sth_runner.py"))

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_seq(tmp_path: Path, **cfg: Any) -> Path:
    path = tmp_path / f"seq-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(cfg))
    return path


def new_host(tmp_path: Path, **kw: Any) -> STHHost:
    kw.setdefault("exit_grace", 2.0)
    return STHHost(port=0, runner_command=[FAKE], cwd=str(tmp_path), exit_poll_interval=0.05, **kw)


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


# -- with the fake runner ------------------------------------------------------------------


async def test_handshake_ping_pong_pang_and_echo(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="echo"), app_config={"a": 1}, args=["x", 3])
        assert inst.ping is not None
        assert inst.ping["id"] == inst.id and len(inst.id) == 36
        assert inst.ping["payload"]["system"]["processPID"] == str(inst._process.pid)  # type: ignore[union-attr]
        assert inst.pid == inst._process.pid  # type: ignore[union-attr]
        assert inst.ping["sequenceInfo"]["config"]["type"] == "process"
        assert isinstance(inst.ping["created"], int)
        assert await inst.last_event("handshake") == {"appConfig": {"a": 1}, "args": ["x", 3]}
        await inst.wait_running()
        assert inst.status == "running"
        assert inst.pangs[0] == {"requires": "", "contentType": ""}

        await inst.send_input(b"hello\n", "text/plain")
        await inst.send_input(b"world\n", "application/octet-stream")  # the header goes once
        await inst.end_input()
        async with anyio.create_task_group() as tg:
            results: dict[str, bytes] = {}

            async def read(name: str, it: AsyncIterator[bytes]) -> None:
                results[name] = await collect(it)

            tg.start_soon(read, "out", inst.output())
            tg.start_soon(read, "stdout", inst.stdout())
            tg.start_soon(read, "stderr", inst.stderr())
            tg.start_soon(read, "log", inst.log())
        assert results["out"] == b"hello\nworld\n"
        assert results["stdout"] == b"content-type: text/plain\n"
        assert results["stderr"] == b"echo done\n"
        assert json.loads(results["log"])["msg"] == "input"
        assert await inst.wait() == 0
        assert inst.status == "completed"
        assert inst.exit_code_from_file == 0
        assert not os.path.exists(sth.exit_code_file(inst.pid or 0))


async def test_pong_without_app_config_or_args(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="forever"))
        assert await inst.last_event("handshake") == {}
        await inst.kill()
        assert await inst.wait() == 137
        assert inst.status == "completed"


async def test_heartbeat_reply_rate_and_health(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="forever", healthy=False))
        health = await inst.health()
        assert health == {"healthy": False, "processId": inst.pid}
        await inst.set_monitoring_rate(50)
        with anyio.fail_after(5):
            while inst.heartbeats < 10:
                await anyio.sleep(0.02)
        await inst.send_event("stats")
        stats = await inst.once("stats-reply")
        assert stats["rate"] == 50 and stats["replies"] >= 5 and stats["source"] == "api"
        await inst.kill()
        assert await inst.wait() == 137


async def test_stop_then_kill_after_timeout(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="forever"))
        await inst.wait_running()
        t0 = anyio.current_time()
        killed = await inst.stop(300, False)
        assert killed
        assert anyio.current_time() - t0 >= 0.29
        assert await inst.wait() == 138
        assert inst.status == "completed"


async def test_stop_with_alive_sends_no_kill(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="forever", keepalive=True))
        await inst.wait_running()
        assert not await inst.stop(200, True)
        assert inst.keepalive_requested
        assert not inst.exited and inst.status == "stopping"
        await inst.send_event("ping", "still here")
        assert await inst.once("pong") == "reply to still here"
        assert await inst.stop(200, False)  # no keepalive allowed: SEQUENCE_STOPPED, then KILL
        assert await inst.wait() == 138


async def test_kill_unresponsive_runner_is_removed(tmp_path: Path) -> None:
    async with new_host(tmp_path, exit_grace=0.3, term_grace=0.5) as host:
        inst = await host.start(make_seq(tmp_path, mode="forever", ignore_kill=True, exit_file=False))
        await inst.wait_running()
        await inst.kill()
        with anyio.fail_after(5):
            assert await inst.wait() == 137  # signal death reads as 137, like STH's process adapter
        assert inst.status == "completed"


async def test_completed_watchdog_removes_lingering_runner(tmp_path: Path) -> None:
    async with new_host(tmp_path, exit_grace=0.3, term_grace=0.5) as host:
        inst = await host.start(make_seq(tmp_path, mode="echo", linger=True))
        await inst.end_input()
        assert await collect(inst.output()) == b""
        with anyio.fail_after(5):
            assert await inst.wait() == 137


async def test_events_both_ways(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="forever"))
        received: list[Any] = []

        async def listen() -> None:
            async for message in inst.events("pong"):
                received.append(message)
                if len(received) == 2:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await anyio.sleep(0.05)
            await inst.send_event("ping", "foo")
            await inst.send_event("ping", "bar")
        assert received == ["reply to foo", "reply to bar"]
        assert await inst.last_event("pong") == "reply to bar"
        await inst.kill()
        await inst.wait()


async def test_event_bus_forwards_between_instances(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        a = await host.start(make_seq(tmp_path, mode="forever"))
        b = await host.start(make_seq(tmp_path, mode="forever"))
        await a.send_event("ping", "bus")  # a emits "pong"; the host forwards it to b with source = a's id
        assert await a.once("pong") == "reply to bus"
        await anyio.sleep(0.1)
        await b.send_event("stats")
        stats_b = await b.once("stats-reply")
        assert stats_b["seen"]["pong"] == {"source": a.id, "message": "reply to bus"}
        for inst in (a, b):
            await inst.kill()
            assert await inst.wait() == 137


async def test_exit_code_file_mode_and_missing_file(tmp_path: Path) -> None:
    async with new_host(tmp_path, exit_code_source="file") as host:
        inst = await host.start(make_seq(tmp_path, mode="echo", exit_code=23))
        await inst.end_input()
        assert await inst.wait() == 23
        assert inst.status == "errored"
        silent = await host.start(make_seq(tmp_path, mode="echo", exit_file=False))
        await silent.end_input()
        assert await silent.wait() == 213  # what STH reports for STH-Py under the process adapter
        assert silent.status == "errored"


async def test_runner_started_elsewhere_exit_code_from_file(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        iid = str(uuid.uuid4())
        seq_path, info = sequence_info_for(make_seq(tmp_path, mode="echo", exit_code=0), "seq-id")
        env = runner_env(
            sequence_path=seq_path,
            instance_id=iid,
            port=host.port,
            sequence_info=info,
            connect_info={"args": []},
        )
        assert set(env) >= {
            "SEQUENCE_PATH",
            "INSTANCES_SERVER_HOST",
            "INSTANCES_SERVER_PORT",
            "INSTANCE_ID",
            "SEQUENCE_INFO",
            "RUNNER_CONNECT_INFO",
            "PATH",
            "PYTHONPATH",
        }
        assert env["INSTANCES_SERVER_HOST"] == "127.0.0.1"
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, FAKE, "./python-runner-startup.log"], env=env, cwd=tmp_path
        )
        try:
            with anyio.fail_after(10):
                inst = await host.accept()
            assert inst.id == iid and not inst.spawned
            await inst.wait_established()
            assert inst.pid == proc.pid
            await inst.send_input(b"abc")
            await inst.end_input()
            assert await collect(inst.output()) == b"abc"
            with anyio.fail_after(10):
                assert await inst.wait() == 0
            assert inst.exit_code_from_file == 0
        finally:
            proc.wait(10)


async def test_start_fails_fast_before_ping(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        with pytest.raises(STHStartError) as info:
            await host.start(tmp_path / "missing.json")
        assert info.value.exit_code == 21
        assert "bad SEQUENCE_PATH" in info.value.crash_log


async def test_reconnect_keeps_the_instance(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        inst = await host.start(make_seq(tmp_path, mode="echo", disconnect=True))
        with anyio.fail_after(10):
            while inst.pings < 2:
                await anyio.sleep(0.02)
        assert inst.reconnects == 1
        await inst.send_input(b"after reconnect\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"after reconnect\n"
        assert await inst.wait() == 0
        assert inst.status == "completed"


# -- hand-driven raw connections ----------------------------------------------------------------


class RawRunner:
    """Nine raw connections driven by the test."""

    def __init__(self, iid: str, streams: dict[int, anyio.abc.SocketStream]) -> None:
        self.iid = iid
        self.streams = streams
        self.control = sth.MessageDecoder()
        self.pending: list[tuple[int, dict[str, Any]]] = []

    @classmethod
    async def connect(
        cls, port: int, channels: range | list[int] = range(9), iid: str | None = None
    ) -> RawRunner:
        iid = iid or str(uuid.uuid4())
        streams = {}
        for ch in channels:
            s = await anyio.connect_tcp("127.0.0.1", port)
            await s.send(sth.encode_preamble(iid, ch))
            streams[ch] = s
        return cls(iid, streams)

    async def send(self, raw: bytes) -> None:
        await self.streams[sth.STHChannel.MONITORING].send(raw)

    async def read_control(self) -> tuple[int, dict[str, Any]]:
        with anyio.fail_after(5):
            while not self.pending:
                self.pending += self.control.feed(await self.streams[sth.STHChannel.CONTROL].receive())
        return self.pending.pop(0)

    def ping(self, **kw: Any) -> bytes:
        return sth.encode_runner_message(
            3000,
            sth.ping_data(self.iid, {"id": "s"}, {"appConfig": {"k": "v"}}, os.getpid(), created_ms=1, **kw),
        )

    async def aclose(self) -> None:
        for s in self.streams.values():
            await s.aclose()


async def test_raw_nothing_processed_before_nine_and_duplicates_refused(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        raw = await RawRunner.connect(host.port, range(8))
        await raw.send(raw.ping())  # sent early; must wait for channel 8
        dup = await anyio.connect_tcp("127.0.0.1", host.port)
        await dup.send(sth.encode_preamble(raw.iid, 3))
        with anyio.fail_after(5):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await dup.receive()  # refused: closed by the host
        await anyio.sleep(0.1)
        assert raw.iid not in host.instances
        assert any("duplicate channel 3" in r for r in host.refused)
        last = await anyio.connect_tcp("127.0.0.1", host.port)
        await last.send(sth.encode_preamble(raw.iid, 8) + b"package bytes are ignored")
        raw.streams[8] = last
        inst = await host.accept()
        assert await raw.read_control() == (4000, {"appConfig": {"k": "v"}})
        assert inst.status == "starting"
        await raw.aclose()


async def test_raw_bad_preamble_refused(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        s = await anyio.connect_tcp("127.0.0.1", host.port)
        await s.send(b"x" * 36 + b"9")
        with anyio.fail_after(5):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await s.receive()
        assert host.refused and "bad preamble" in host.refused[0]


async def test_raw_ndjson_edge_cases_and_pang(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        raw = await RawRunner.connect(host.port)
        inst = await host.accept()
        ping = raw.ping(status="starting")
        # empty lines, \r\n and \n, split across writes
        await raw.send(b"\r\n\n" + ping[:10])
        await anyio.sleep(0.02)
        await raw.send(ping[10:] + b"\n")
        assert (await raw.read_control())[0] == 4000
        assert inst.status == "starting" and not inst._running.is_set()
        # garbage is recorded and skipped; an unknown code is never acted on
        await raw.send(b'garbage\r\n[3013,{}]\r\n[3001,{"healthy":true}]\n')
        assert await raw.read_control() == (4004, {})
        assert len(inst.protocol_errors) == 2
        await raw.send(b'[3012,{"requires":"","contentType":""}]')
        await raw.send(b"\r\n")
        with anyio.fail_after(5):
            await inst.wait_running()
        assert inst.status == "running"
        await inst.set_monitoring_rate(2)
        assert await raw.read_control() == (4003, {"monitoringRate": 2})
        await inst.send_event("e", {"x": 1})
        assert await raw.read_control() == (5001, {"eventName": "e", "source": "api", "message": {"x": 1}})
        # runner -> host event
        await raw.send(b'[5001,{"eventName":"out","message":[1,2]}]\r\n')
        assert await inst.last_event("out") == [1, 2]
        # input: header block once, then body; half-close at the end
        await inst.send_input(b"a", "application/x-ndjson")
        await inst.send_input(b"b")
        await inst.end_input()
        got = b""
        with anyio.fail_after(5):
            try:
                while True:
                    got += await raw.streams[5].receive()
            except anyio.EndOfStream:
                pass
        assert got == b"Content-Type: application/x-ndjson\r\n\r\nab"
        await raw.aclose()


async def test_raw_topic_fed_input_has_no_header_block(tmp_path: Path) -> None:
    async with new_host(tmp_path) as host:
        raw = await RawRunner.connect(host.port)
        inst = await host.accept()
        await raw.send(raw.ping())
        await raw.read_control()
        await raw.send(sth.encode_runner_message(3012, {"requires": "names", "contentType": "text/plain"}))
        await inst.wait_running()
        assert inst.input_from_topic and inst.requires == "names"
        await inst.send_input(b"raw topic data")
        await inst.end_input()
        got = b""
        with anyio.fail_after(5):
            try:
                while True:
                    got += await raw.streams[5].receive()
            except anyio.EndOfStream:
                pass
        assert got == b"raw topic data"
        await raw.aclose()


async def test_raw_reconnect_with_input_headers_sent(tmp_path: Path) -> None:
    async with new_host(tmp_path, disconnect_settle=0.05) as host:
        raw = await RawRunner.connect(host.port)
        inst: STHInstance = await host.accept()
        await raw.send(raw.ping())
        await raw.read_control()
        await raw.send(sth.encode_runner_message(3012, {}))
        await raw.streams[6].send(b"before ")
        await raw.aclose()  # the runner drops everything (host gone from its point of view)
        await anyio.sleep(0.2)
        assert not inst.exited
        raw2 = await RawRunner.connect(host.port, iid=raw.iid)
        await raw2.send(raw2.ping(status="running", input_headers_sent=True))
        assert (await raw2.read_control())[0] == 4000
        assert inst.reconnects == 1 and inst.pings == 2 and inst.status == "running"
        await inst.send_input(b"x")
        assert await raw2.streams[5].receive() == b"x"  # no second header block
        await raw2.streams[6].send(b"after")
        await raw2.streams[6].send_eof()
        await raw2.send(sth.encode_runner_message(3011, {"timeout": 0}))
        assert await collect(inst.output()) == b"before after"
        await raw2.aclose()


def _interpreters() -> list[Any]:
    """Each Python 3.10-3.13 found (pyenv or PATH) that can import runner.protocol."""
    import glob
    import shutil

    found: list[Any] = []
    for minor in (10, 11, 12, 13):
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}*/bin/python")))
        which = shutil.which(f"python3.{minor}")
        if which:
            candidates.append(which)
        if sys.version_info[:2] == (3, minor):  # pyenv's own builds lack msgpack: this run's venv has it
            candidates.insert(0, sys.executable)
        exe = None
        for cand in candidates:
            ok = (
                subprocess.run(
                    [cand, "-c", "import msgpack, asyncio"], check=False, capture_output=True, timeout=20
                ).returncode
                == 0
            )
            if ok:
                exe = cand
                break
        mark = pytest.mark.skipif(exe is None, reason=f"no usable python3.{minor}")
        found.append(pytest.param(exe, id=f"py3.{minor}", marks=mark))
    return found


@pytest.mark.parametrize("python", _interpreters())
async def test_nine_connection_handshake_on_each_python(tmp_path: Path, python: str) -> None:
    """The runner side keeps all nine connections open in both directions (STH-Py fails this on 3.11.7+)."""
    async with new_host(tmp_path, python=python) as host:
        inst = await host.start(make_seq(tmp_path, mode="echo"), args=[])
        await inst.wait_running()
        await inst.health()
        await inst.send_input(b"x\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"x\n"
        assert await inst.wait() == 0


def test_the_sth_host_moved_out_of_host_bridge_and_the_old_names_still_work_deprecated() -> None:
    import sth_host

    import host_bridge.sth

    for name in ("STHHost", "STHInstance", "STHError", "STHStartError", "STHInstanceGone"):
        with pytest.warns(DeprecationWarning, match=f"host_bridge.sth.{name} moved to the test-support package"):
            assert getattr(host_bridge.sth, name) is getattr(sth_host, name)
    shipped = sorted(p.name for p in Path(host_bridge.sth.__file__).parent.glob("*.py"))
    assert shipped == ["__init__.py", "spawn.py"]  # the host itself is not shipped
    with pytest.raises(AttributeError):
        host_bridge.sth.NoSuchName  # noqa: B018


def test_a_gone_runners_half_written_exit_code_file_is_removed_and_no_other() -> None:
    """A runner killed between writing /tmp/runner-<pid>.<thread>.tmp and renaming it leaves the
    temporary file; the host removes it once the PID is gone, not another PID's that shares digits."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
    pid = gone.pid  # a runner's PID once it has exited
    ours = [f"{sth.exit_code_file(pid)}", f"{sth.exit_code_file(pid)}.140000.tmp"]
    other = f"{sth.exit_code_file(pid)}7.140000.tmp"
    for path in (*ours, other):
        Path(path).write_text("137")
    try:
        remove_stale_exit_file(pid)
        assert [os.path.exists(p) for p in ours] == [False, False]
        assert os.path.exists(other)
    finally:
        for path in (*ours, other):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
