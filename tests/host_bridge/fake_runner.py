"""A small runner built directly on runner.protocol.Connection(Role.RUNNER).

Same command line as ``python -m runner`` (``--fd N`` or ``--connect ADDR``,
``--sequence PATH``, id and token from the environment) plus ``--mode`` to
misbehave on purpose. It echoes IN to OUT, STDIN to STDOUT (prefixed), answers
event ``x`` with ``x-reply``, and follows the lifecycle of docs/protocol.md §5.

Modes: echo (default), malformed, no-handshake, ignore-term, wrong-token,
crash-early, silent (no heartbeats), keepalive, child, fail, flood, alloc, vanish, event-flood,
setsid-child, hog, overrun.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from runner.protocol import (
    NEED_DATA,
    Alive,
    Channel,
    ConnectionClosed,
    Data,
    EndOfStream,
    Error,
    Event,
    Exiting,
    InputContentType,
    Kill,
    Monitoring,
    MonitoringRate,
    Pang,
    Ping,
    Pong,
    ProtocolError,
    Reject,
    Role,
    SequenceCompleted,
    SequenceStopped,
    Stop,
)
from runner.protocol.connection import Connection
from runner.protocol.events import Message


class Fake:
    def __init__(self, sock: socket.socket, mode: str, sequence: str) -> None:
        self.sock = sock
        self.sequence = sequence
        self.mode = mode
        self.conn = Connection(Role.RUNNER, window=256 * 1024)
        self.pending: dict[int, bytearray] = {int(ch): bytearray() for ch in (1, 2, 6, 7)}
        self.rate = 5.0
        self.next_beat = 0.0
        self.stop_seen = False
        self.in_ended = False
        self.open = False

    def flush(self) -> None:
        for buf in self.conn.data_to_send():
            self.sock.sendall(buf)

    def pump(self) -> None:
        for ch, buf in self.pending.items():
            if buf:
                n = self.conn.send_data(ch, bytes(buf))
                del buf[:n]

    def exit(self, code: int, ended: bool = True) -> None:
        self.pump()
        if ended:
            for ch in (1, 2, 7):
                self.conn.send_end(ch)
        self.conn.send(Exiting(exit_code=code, reason=f"fake exit {code}"))
        self.flush()
        self.sock.close()
        sys.exit(code)

    def log(self, msg: str) -> None:
        record = {"ts": int(time.time() * 1000), "level": "INFO", "from": "fake", "msg": msg}
        self.pending[Channel.LOG] += json.dumps(record).encode() + b"\n"

    def on_open(self, pong: Pong) -> None:
        self.open = True
        self.conn.send(Pang(requires="", content_type="text/plain"))
        self.conn.send(Pang(provides="", content_type="text/plain"))
        self.pending[Channel.STDERR] += b"fake stderr line\n"
        self.log("connected")
        info = {"appConfig": pong.app_config, "args": pong.args}
        self.conn.send(Event(name="config", message=info))
        process = {"cwd": os.getcwd(), "env": os.environ.get("HB_TEST"), "sequence": self.sequence}
        self.conn.send(Event(name="process", message=process))
        if self.mode == "malformed":
            self.flush()
            self.sock.sendall(b"\x94\x06\x01\x02")  # 0x94 is no frame lead byte
            time.sleep(1000)
        if self.mode == "child":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
            self.conn.send(Event(name="child", message=child.pid))
        if self.mode == "setsid-child":  # a child in a session of its own: killpg cannot reach it
            code = "import os, sys, time; os.setsid(); print(os.getpid(), flush=True); time.sleep(1000)"
            child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            assert child.stdout is not None
            self.conn.send(Event(name="child", message=int(child.stdout.readline())))
        if self.mode == "overrun":  # 2 MiB on OUT at once, past the host's 1 MiB window (raw frames)
            self.flush()
            chunk = b"o" * (256 << 10)
            for _ in range(8):
                self.sock.sendall(bytes([0x92, int(Channel.OUT), 0xC6]) + len(chunk).to_bytes(4, "big") + chunk)
            time.sleep(1000)
        if self.mode == "hog":  # take memory until the kernel's OOM killer ends the process
            self.flush()
            hog = []
            while True:
                hog.append(os.urandom(1) * (8 << 20))
        if self.mode == "fail":
            self.pending[Channel.STDERR] += b"Traceback: FakeError: boom\n"
            self.conn.send(Error(message="FakeError: boom", stack="", exit_code=23))
            self.exit(23)
        if self.mode == "alloc":
            self.flush()
            hog = bytearray(2 << 30)  # more than the memory limit: MemoryError, a crash
            del hog
        if self.mode == "vanish":  # exit 0 mid-stream without END or EXITING (os._exit in a Sequence)
            self.pending[Channel.OUT] += b"partial\n"
            self.pump()
            self.flush()
            os._exit(0)
        if self.mode == "event-flood":  # HB_EVENTS events of HB_EVENT_SIZE bytes, each with its own name
            count, size = int(os.environ.get("HB_EVENTS", "3000")), int(os.environ.get("HB_EVENT_SIZE", "100000"))
            for i in range(count):
                self.conn.send(Event(name=f"e{i}", message="x" * size))
                self.flush()
            self.conn.send(Event(name="flood-done", message=count))
        if self.mode == "flood":
            self.pending[Channel.STDOUT] += b"x" * (4 << 20)  # far more than the host's window

    def on_message(self, message: Message) -> None:
        match message:
            case Pong():
                self.on_open(message)
            case Reject(reason=reason):
                sys.stderr.write(f"fake runner rejected: {reason}\n")
                sys.exit(20)
            case InputContentType(content_type=content_type):
                self.conn.send(Event(name="content-type", message=content_type))
            case Event(name="mute"):
                self.mode = "silent"  # heartbeats stop as if the runner hung
            case Event(name=name, message=payload):
                self.conn.send(Event(name=name + "-reply", message=payload))
            case MonitoringRate(rate=rate):
                self.rate = float(rate)
            case Stop(can_keep_alive=can_keep_alive):
                self.stop_seen = True
                if self.mode == "keepalive" and can_keep_alive:
                    self.conn.send(Alive(keep_alive_ms=1000))
                else:
                    self.conn.send(SequenceStopped())
            case Kill() if self.mode != "ignore-term":
                self.exit(138 if self.stop_seen else 137)

    def run(self) -> None:
        while True:
            timeout = 0.05
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if readable:
                self.conn.receive_data(self.sock.recv(1 << 16), time.monotonic())
                self.handle_events()
            if self.open:
                now = time.monotonic()
                if self.mode != "silent" and self.rate > 0 and now >= self.next_beat:
                    self.next_beat = now + 1 / self.rate
                    stats = {"rss": 1234, "cpu": 0.5, "loopLagMs": 0}
                    self.conn.send(Monitoring(healthy=True, stats=stats))
                self.pump()
                if self.in_ended and not self.pending[Channel.OUT]:
                    self.conn.send_end(Channel.OUT)
                    self.conn.send(SequenceCompleted(timeout_ms=0))
                    self.exit(0)
            self.flush()

    def handle_events(self) -> None:
        while True:
            try:
                event = self.conn.next_event()
            except ProtocolError as err:
                sys.stderr.write(f"fake runner: protocol error: {err}\n")
                sys.exit(137)
            match event:
                case Data(channel=channel, payload=payload):
                    payload = bytes(payload)
                    self.conn.consumed(channel, len(payload))
                    if channel == Channel.IN:
                        self.pending[Channel.OUT] += payload
                    else:
                        self.pending[Channel.STDOUT] += b"stdin:" + payload
                case EndOfStream(channel=Channel.IN):
                    self.in_ended = True
                case ConnectionClosed():
                    sys.exit(137)
                case Message():
                    self.on_message(event)
                case _ if event is NEED_DATA:
                    return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int)
    parser.add_argument("--connect")
    parser.add_argument("--sequence")
    parser.add_argument("--mode", default="echo")
    opts, _ = parser.parse_known_args()
    mode = opts.mode
    if mode == "crash-early":
        sys.stderr.write("fake runner: cannot start, boom\n")
        sys.exit(21)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if opts.fd is not None:
        sock = socket.socket(fileno=opts.fd)
    elif opts.connect.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(opts.connect[5:])
    else:
        host, port = opts.connect[4:].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    sock.setblocking(True)
    if mode == "no-handshake":
        time.sleep(1000)
    fake = Fake(sock, mode, opts.sequence)
    token = "not-the-token" if mode == "wrong-token" else os.environ.get("SEQUENCE_RUNNER_TOKEN", "")
    fake.conn.send(Ping(
        instance_id=os.environ.get("SEQUENCE_RUNNER_INSTANCE_ID", ""),
        token=token,
        pid=os.getpid(),
        capabilities=[],
        created=int(time.time() * 1000),
        runner_version="fake",
        python=sys.version.split()[0],
    ))
    fake.flush()
    fake.run()


if __name__ == "__main__":
    main()
