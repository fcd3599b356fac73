"""A small runner built directly on runner.protocol.Connection(Role.RUNNER).

Same command line as ``python -m runner`` (``--fd N`` or ``--connect ADDR``,
``--sequence PATH``, id and token from the environment) plus ``--mode`` to
misbehave on purpose. It echoes IN to OUT, STDIN to STDOUT (prefixed), answers
event ``x`` with ``x-reply``, and follows the lifecycle of docs/protocol.md §5.

Modes: echo (default), malformed, no-handshake, ignore-term, wrong-token,
crash-early, silent (no heartbeats), keepalive, child, fail, flood, alloc.
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

from runner.protocol import Channel, Code, Connection, ProtocolError, Role
from runner.protocol.connection import ConnectionClosed, Data, EndOfStream, Message


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
        self.conn.send_message(Code.EXITING, {"exitCode": code, "reason": f"fake exit {code}"})
        self.flush()
        self.sock.close()
        sys.exit(code)

    def log(self, msg: str) -> None:
        record = {"ts": int(time.time() * 1000), "level": "INFO", "from": "fake", "msg": msg}
        self.pending[Channel.LOG] += json.dumps(record).encode() + b"\n"

    def on_open(self, body: dict) -> None:
        self.open = True
        self.conn.send_message(Code.PANG, {"requires": "", "contentType": "text/plain"})
        self.conn.send_message(Code.PANG, {"provides": "", "contentType": "text/plain"})
        self.pending[Channel.STDERR] += b"fake stderr line\n"
        self.log("connected")
        info = {"appConfig": body.get("appConfig"), "args": body.get("args")}
        self.conn.send_message(Code.EVENT, {"eventName": "config", "message": info})
        process = {"cwd": os.getcwd(), "env": os.environ.get("HB_TEST"), "sequence": self.sequence}
        self.conn.send_message(Code.EVENT, {"eventName": "process", "message": process})
        if self.mode == "malformed":
            self.flush()
            self.sock.sendall(b"\x94\x06\x01\x02")  # 0x94 is no frame lead byte
            time.sleep(1000)
        if self.mode == "child":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
            self.conn.send_message(Code.EVENT, {"eventName": "child", "message": child.pid})
        if self.mode == "fail":
            self.pending[Channel.STDERR] += b"Traceback: FakeError: boom\n"
            self.conn.send_message(Code.ERROR, {"message": "FakeError: boom", "stack": "", "exitCode": 23})
            self.exit(23)
        if self.mode == "alloc":
            self.flush()
            hog = bytearray(2 << 30)  # more than the memory limit: MemoryError, a crash
            del hog
        if self.mode == "flood":
            self.pending[Channel.STDOUT] += b"x" * (4 << 20)  # far more than the host's window

    def on_message(self, code: int, body: dict) -> None:
        if code == Code.PONG:
            self.on_open(body)
        elif code == Code.REJECT:
            sys.stderr.write(f"fake runner rejected: {body['reason']}\n")
            sys.exit(20)
        elif code == Code.INPUT_CONTENT_TYPE:
            self.conn.send_message(Code.EVENT, {"eventName": "content-type", "message": body["contentType"]})
        elif code == Code.EVENT and body["eventName"] == "mute":
            self.mode = "silent"  # heartbeats stop as if the runner hung
        elif code == Code.EVENT:
            reply = {"eventName": body["eventName"] + "-reply", "message": body.get("message")}
            self.conn.send_message(Code.EVENT, reply)
        elif code == Code.MONITORING_RATE:
            self.rate = float(body["monitoringRate"])
        elif code == Code.STOP:
            self.stop_seen = True
            if self.mode == "keepalive" and body.get("canCallKeepalive"):
                self.conn.send_message(Code.ALIVE, {"keepAlive": 1000})
            else:
                self.conn.send_message(Code.SEQUENCE_STOPPED, {"sequenceError": None})
        elif code == Code.KILL and self.mode != "ignore-term":
            self.exit(138 if self.stop_seen else 137)

    def run(self) -> None:
        while True:
            timeout = 0.05
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if readable:
                data = self.sock.recv(1 << 16)
                try:
                    events = self.conn.receive_data(data, time.monotonic())
                except ProtocolError as err:
                    sys.stderr.write(f"fake runner: protocol error: {err}\n")
                    sys.exit(137)
                for event in events:
                    if isinstance(event, Message):
                        self.on_message(event.code, event.body)
                    elif isinstance(event, Data):
                        payload = bytes(event.payload)
                        self.conn.consumed(event.channel, len(payload))
                        if event.channel == Channel.IN:
                            self.pending[Channel.OUT] += payload
                        else:
                            self.pending[Channel.STDOUT] += b"stdin:" + payload
                    elif isinstance(event, EndOfStream) and event.channel == Channel.IN:
                        self.in_ended = True
                    elif isinstance(event, ConnectionClosed):
                        sys.exit(137)
            if self.open:
                now = time.monotonic()
                if self.mode != "silent" and self.rate > 0 and now >= self.next_beat:
                    self.next_beat = now + 1 / self.rate
                    stats = {"rss": 1234, "cpu": 0.5, "loopLagMs": 0}
                    self.conn.send_message(Code.MONITORING, {"healthy": True, "stats": stats})
                self.pump()
                if self.in_ended and not self.pending[Channel.OUT]:
                    self.conn.send_end(Channel.OUT)
                    self.conn.send_message(Code.SEQUENCE_COMPLETED, {"timeout": 0})
                    self.exit(0)
            self.flush()


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
    fake.conn.send_ping(
        os.environ.get("SEQUENCE_RUNNER_INSTANCE_ID", ""),
        token,
        pid=os.getpid(),
        capabilities=[],
        created=int(time.time() * 1000),
        runnerVersion="fake",
        python=sys.version.split()[0],
    )
    fake.flush()
    fake.run()


if __name__ == "__main__":
    main()
