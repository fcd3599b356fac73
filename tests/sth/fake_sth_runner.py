"""A fake runner that speaks STH's runner protocol, for testing the STH test host (tests/sth_host).

Started like STH starts its Python runner (env SEQUENCE_PATH, INSTANCES_SERVER_HOST/PORT,
INSTANCE_ID, SEQUENCE_INFO, RUNNER_CONNECT_INFO; argv[1] = startup log). Protocol-wise it
behaves like STH's runners (Node semantics for stop/kill/exit codes, the exit-code file),
and keeps all nine connections open in both directions. The "Sequence" at SEQUENCE_PATH is
a JSON file of switches:

    mode: "echo" (IN -> OUT, then SEQUENCE_COMPLETED and exit) | "forever" (until KILL)
    keepalive: bool        on STOP with canCallKeepalive, send ALIVE instead of SEQUENCE_STOPPED
    ignore_kill: bool      KILL does nothing (a stuck runner)
    linger: bool           after SEQUENCE_COMPLETED, do not exit
    exit_code: int         exit code after echo mode (default 0)
    exit_file: bool        write /tmp/runner-<pid> (default true)
    healthy: bool          heartbeat value
    disconnect: bool       after the first heartbeat reply, drop all nine connections and reconnect
    wait_pong: bool        wait for PONG before PANG (default true)

Events: "ping" -> emits "pong" with "reply to <message>"; "stats" -> emits "stats-reply" with
counters and the other events it saw (name -> source, message). After the handshake it emits "handshake" with the PONG data.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from runner.protocol import sth
from runner.protocol.sth import STHChannel, STHCode


class FakeRunner:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.iid = os.environ["INSTANCE_ID"]
        self.host = os.environ.get("INSTANCES_SERVER_HOST", "localhost")
        self.port = int(os.environ["INSTANCES_SERVER_PORT"])
        self.sequence_info = json.loads(os.environ["SEQUENCE_INFO"])
        self.connect_info = json.loads(os.environ["RUNNER_CONNECT_INFO"])
        self.created = int(time.time() * 1000)
        self.conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self.pong: asyncio.Future = asyncio.get_running_loop().create_future()
        self.first_reply = asyncio.Event()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.replies = 0
        self.seen: dict[str, dict] = {}
        self.rate = 1.0
        self.rate_changed = asyncio.Event()
        self.stop_expected = False
        self.headers_seen = False
        self.status = "starting"
        self.tasks: set[asyncio.Task] = set()
        self.session_tasks: set[asyncio.Task] = set()

    def spawn(self, coro, session: bool = False) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        (self.session_tasks if session else self.tasks).add(task)
        return task

    async def connect(self) -> None:
        async def one(ch: int) -> None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(sth.encode_preamble(self.iid, ch))
            await writer.drain()
            self.conns[ch] = (reader, writer)

        await asyncio.gather(*(one(ch) for ch in range(sth.CHANNEL_COUNT)))

    def send(self, code: int, data: dict) -> None:
        self.conns[STHChannel.MONITORING][1].write(sth.encode_runner_message(code, data))

    async def handshake(self) -> None:
        await self.connect()
        self.send(
            STHCode.PING,
            sth.ping_data(
                self.iid,
                self.sequence_info,
                self.connect_info,
                os.getpid(),
                created_ms=self.created,
                status=self.status,
                input_headers_sent=self.headers_seen,
            ),
        )
        self.spawn(self.control_loop(), session=True)
        self.spawn(self.drain_package(), session=True)
        if self.cfg.get("wait_pong", True):
            await asyncio.wait_for(asyncio.shield(self.pong), 10)
        self.send(STHCode.PANG, {"requires": "", "contentType": ""})
        self.status = "running"

    async def drain_package(self) -> None:
        reader = self.conns[STHChannel.PACKAGE][0]
        while await reader.read(65536):
            pass

    async def control_loop(self) -> None:
        reader = self.conns[STHChannel.CONTROL][0]
        decoder = sth.MessageDecoder()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            for code, data in decoder.feed(chunk):
                await self.on_control(code, data)

    async def on_control(self, code: int, data: dict) -> None:
        if code == STHCode.PONG:
            if not self.pong.done():
                self.pong.set_result(data)
                self.emit("handshake", data)
        elif code == STHCode.MONITORING_REPLY:
            self.replies += 1
            self.first_reply.set()
        elif code == STHCode.MONITORING_RATE:
            self.rate = float(data["monitoringRate"])
            self.rate_changed.set()
        elif code == STHCode.EVENT:
            name, message = data.get("eventName"), data.get("message")
            if name == "ping":
                self.emit("pong", f"reply to {message}")
            elif name == "stats":
                self.emit(
                    "stats-reply",
                    {
                        "replies": self.replies,
                        "rate": self.rate,
                        "source": data.get("source"),
                        "seen": self.seen,
                    },
                )
            else:
                self.seen[str(name)] = {"source": data.get("source"), "message": message}
        elif code == STHCode.STOP:
            if self.cfg.get("keepalive") and data.get("canCallKeepalive"):
                self.send(STHCode.ALIVE, {"keepAlive": data.get("timeout", 0)})
            else:
                self.status = "stopping"
                self.stop_expected = True
                self.send(STHCode.SEQUENCE_STOPPED, {})
        elif code == STHCode.KILL and not self.cfg.get("ignore_kill") and not self.done.done():
            self.done.set_result(138 if self.stop_expected else 137)

    def emit(self, name: str, message) -> None:
        self.send(STHCode.EVENT, {"eventName": name, "message": message})

    async def heartbeat(self) -> None:
        while True:
            if self.rate > 0:
                self.send(STHCode.MONITORING, {"healthy": self.cfg.get("healthy", True)})
            self.rate_changed.clear()
            try:
                await asyncio.wait_for(self.rate_changed.wait(), 1 / self.rate if self.rate > 0 else None)
            except asyncio.TimeoutError:
                pass

    async def echo(self) -> None:
        reader = self.conns[STHChannel.IN][0]
        headers = sth.InputHeaderReader(expect_headers=not self.headers_seen)
        out = self.conns[STHChannel.OUT][1]
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            body = headers.feed(chunk)
            if headers.done and not self.headers_seen:
                self.headers_seen = True
                self.conns[STHChannel.STDOUT][1].write(f"content-type: {headers.content_type}\n".encode())
                self.conns[STHChannel.LOG][1].write(
                    json.dumps(
                        {"ts": int(time.time() * 1000), "level": "INFO", "from": "Fake", "msg": "input"}
                    ).encode()
                    + b"\n"
                )
            if body:
                out.write(bytes(body))
                await out.drain()
        headers.eof()
        out.write_eof()
        self.send(STHCode.SEQUENCE_COMPLETED, {"timeout": 0})
        if self.cfg.get("linger"):
            await asyncio.Future()
        self.conns[STHChannel.STDERR][1].write(b"echo done\n")
        if not self.done.done():
            self.done.set_result(int(self.cfg.get("exit_code", 0)))

    async def disconnect_and_reconnect(self) -> None:
        await self.first_reply.wait()
        for task in self.session_tasks:
            task.cancel()
        self.session_tasks.clear()
        for _, writer in self.conns.values():
            writer.transport.abort()
        self.conns.clear()
        await asyncio.sleep(0.3)
        self.pong = asyncio.get_running_loop().create_future()
        await self.handshake()
        self.start_session_work()

    def start_session_work(self) -> None:
        if self.cfg.get("mode", "echo") == "echo":
            self.spawn(self.echo(), session=True)

    async def run(self) -> int:
        await self.handshake()
        self.spawn(self.heartbeat())
        if self.cfg.get("disconnect"):
            self.spawn(self.disconnect_and_reconnect())
        else:
            self.start_session_work()
        code = await self.done
        for _, writer in self.conns.values():
            try:
                await writer.drain()
            except ConnectionError:
                pass
        return code


def write_exit_file(code: int) -> None:
    with open(sth.exit_code_file(os.getpid()), "w") as f:
        f.write(str(code))


def main() -> int:
    for var in (
        "SEQUENCE_PATH",
        "INSTANCES_SERVER_PORT",
        "INSTANCE_ID",
        "SEQUENCE_INFO",
        "RUNNER_CONNECT_INFO",
    ):
        if var not in os.environ:
            print(f"missing {var}", file=sys.stderr)
            return 20
    try:
        with open(os.environ["SEQUENCE_PATH"]) as f:
            cfg = json.load(f)
    except OSError as err:
        print(f"bad SEQUENCE_PATH: {err}", file=sys.stderr)
        write_exit_file(21)
        return 21

    async def go() -> int:
        return await FakeRunner(cfg).run()

    code = asyncio.run(go())
    if cfg.get("exit_file", True):
        write_exit_file(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
