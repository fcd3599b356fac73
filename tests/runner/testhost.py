"""A small synchronous test host built on runner.protocol (Connection(Role.HOST)).

It spawns ``python -m runner`` with one end of a socketpair (``--fd``), reads the
connection on a thread, records every event in order and offers blocking
helpers with generous timeouts (only to avoid hangs). It observes the wire: its
helpers take and give messages as codes and body maps (``send(Code.STOP, {...})``,
``messages(Code.PANG)``), the recorded ``events`` are the Connection's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from warm_popen import start_runner

from runner.config import OPTIONS
from runner.protocol import (
    NEED_DATA,
    Channel,
    Code,
    ConnectionClosed,
    CreditAvailable,
    Data,
    EndOfStream,
    LocalProtocolError,
    Ping,
    Pong,
    ProtocolError,
    Role,
    codec,
)
from runner.protocol.connection import Connection
from runner.protocol.events import Message

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_sequences"
TIMEOUT = 20.0


def runner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner", *args]


def runner_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Settings come from the test; framer/uvloop switches (PURE_PYTHON, UVLOOP, ...) pass through.
    settings = {env_var for env_var, _ in OPTIONS.values()}
    env = {k: v for k, v in os.environ.items() if k not in settings and k != "INSTANCES_SERVER_PORT"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class TestHost:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        sequence: str | os.PathLike[str],
        *,
        app_config: dict[str, Any] | None = None,
        args: list[Any] | None = None,
        env: dict[str, str] | None = None,
        argv: tuple[str, ...] = (),
        consume: tuple[int, ...] = (Channel.STDOUT, Channel.STDERR, Channel.OUT, Channel.LOG),
        window: int | None = None,
    ) -> None:
        self.conn = Connection(Role.HOST, **({"window": window} if window else {}))
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.events: list[Any] = []
        self.data: dict[int, bytearray] = {int(ch): bytearray() for ch in Channel}
        self.ended: set[int] = set()
        self.closed = False
        self.error: BaseException | None = None
        self.consume = {int(c) for c in consume}
        self.pong = Pong(app_config=app_config, args=args)
        parent, child = socket.socketpair()
        self.sock = parent
        self.proc = start_runner(("--fd", str(child.fileno()), "--instance-id", "test-instance",
                                  "--sequence", str(sequence), *argv), runner_env(env), str(REPO),
                                  child.fileno(), runner_env())
        child.close()
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- connection ---------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(256 * 1024)
            except OSError as exc:
                chunk, self.error = b"", exc
            with self.lock:
                self.conn.receive_data(chunk, time.monotonic())
                while self.error is None:
                    try:
                        event = self.conn.next_event()
                    except ProtocolError as exc:
                        self.error = exc
                        break
                    if event is NEED_DATA:
                        break
                    self._record(event)
                    if isinstance(event, Ping):
                        self._accepted = True
                        self.conn.send(self.pong)
                self._flush_locked()
                if not chunk or self.error is not None:
                    self.closed = True
                self.changed.notify_all()
                if self.closed:
                    return

    _accepted = False

    def _record(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, Data):
            self.data[event.channel] += bytes(event.payload)
            if event.channel in self.consume:
                self.conn.consumed(event.channel, len(event.payload))
        elif isinstance(event, EndOfStream):
            self.ended.add(event.channel)

    def _flush_locked(self) -> None:
        for buf in self.conn.data_to_send():
            try:
                self.sock.sendall(buf)
            except OSError:
                pass

    def start_consuming(self, channel: int) -> None:
        with self.lock:
            self.consume.add(int(channel))
            owed = len(self.data[channel])
            if owed:
                self.conn.consumed(channel, owed)
            self._flush_locked()

    # -- waiting --------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what or predicate}; {self.summary()}")
                self.changed.wait(min(left, 0.1))

    def messages(self, code: int | None = None) -> list[dict[str, Any]]:
        """Bodies of the messages received (of ``code``), as they were on the wire."""
        return [codec.to_body(e) for e in list(self.events)
                if isinstance(e, Message) and (code is None or e.code == code)]

    def codes(self) -> list[int]:
        return [e.code for e in list(self.events) if isinstance(e, Message)]

    def wait_message(self, code: int, timeout: float = TIMEOUT, count: int = 1) -> dict[str, Any]:
        self.wait_until(lambda: len(self.messages(code)) >= count, timeout, f"message {Code(code).name}")
        return self.messages(code)[count - 1]

    def wait_data(self, channel: int, needle: bytes, timeout: float = TIMEOUT) -> bytes:
        self.wait_until(lambda: needle in self.data[channel], timeout, f"{needle!r} on {Channel(channel).name}")
        return bytes(self.data[channel])

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"runner did not exit within {timeout} s; {self.summary()}") from None

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        self.wait_until(lambda: self.closed, timeout, "end of file")

    def wait_running(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Until run() has started: the first heartbeat from the Sequence's running loop (it carries
        ``stats.loopLagMs``; the loop answers the probe only after run() reached its first await,
        so handlers run() registers before that exist). Heartbeats before it may say "starting"."""
        self.wait_until(lambda: any("loopLagMs" in (m.get("stats") or {}) for m in self.messages(Code.MONITORING)),
                        timeout, "a heartbeat from the running loop")
        return next(m for m in self.messages(Code.MONITORING) if "loopLagMs" in (m.get("stats") or {}))

    # -- sending ---------------------------------------------------------------------
    def send(self, code: int, body: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.conn.send(codec.from_body(code, body or {}, LocalProtocolError), time.monotonic())
            self._flush_locked()

    def send_data(self, channel: int, data: bytes, timeout: float = TIMEOUT) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        with self.lock:
            while view:
                taken = self.conn.send_data(channel, view)
                view = view[taken:]
                self._flush_locked()
                if view:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no credit on {Channel(channel).name}; {self.summary()}")
                    self.changed.wait(0.1)

    def send_end(self, channel: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not self._accepted:  # END before the handshake is a protocol error
                if time.monotonic() > deadline or self.closed:
                    raise AssertionError(f"no handshake to end {Channel(channel).name} after; {self.summary()}")
                self.changed.wait(0.1)
            self.conn.send_end(channel)
            self._flush_locked()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- reporting --------------------------------------------------------------------
    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in bytes(self.data[Channel.LOG]).splitlines() if line.strip()]

    def text(self, channel: int) -> str:
        return bytes(self.data[channel]).decode("utf-8", "replace")

    def summary(self) -> str:
        names = []
        for code in self.codes():
            try:
                names.append(Code(code).name)
            except ValueError:
                names.append(str(code))
        return (f"messages={names} stdout={self.text(Channel.STDOUT)[-300:]!r} "
                f"stderr={self.text(Channel.STDERR)[-1500:]!r} returncode={self.proc.poll()}")

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Wait for exit; return (code, the runner's real stderr)."""
        code = self.wait_exit(timeout)
        # What the runner wrote before it exited is still to be read: read to the end of the
        # connection before closing it (bounded: a child of the Sequence may hold its end open).
        with self.lock:
            self.changed.wait_for(lambda: self.closed, 5)
        err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr else ""
        self.close()
        return code, err

    def __enter__(self) -> TestHost:  # noqa: PYI034 - Self needs typing_extensions on 3.10
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()
        self.close()


def output_lines(path: Path, **host: Any) -> list[Any]:
    """Run the Sequence at ``path`` with no input to a clean exit (0); its OUT, one JSON value a line."""
    with TestHost(path, **host) as runner:
        runner.wait_message(Code.PANG)
        runner.send_end(Channel.IN)
        code, err = runner.finish()
        assert code == 0, (err, runner.summary())
        return [json.loads(line) for line in bytes(runner.data[Channel.OUT]).splitlines()]


__all__ = ["REPO", "SAMPLES", "ConnectionClosed", "CreditAvailable", "TestHost", "output_lines", "runner_cmd",
           "runner_env"]
