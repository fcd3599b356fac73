"""Scramjet Transform Hub's runner protocol: nine TCP connections, JSON lines (docs/sth-compat.md).

The runner core speaks protocol-v1 terms (the message classes of ``runner.protocol``
and ``Channel``); this transport maps them onto STH's wire:

* one TCP connection per channel, each opened with ``instance id + digit``;
  all nine stay open both ways until the process exits. The runner never
  half-closes a connection it reads (0 STDIN, 3 CONTROL, 5 IN, 8 PACKAGE);
  ending a channel it writes is ``shutdown(SHUT_WR)`` of that socket only;
* CONTROL lines become messages (``Stop``, ``Kill``, ...) for ``on_message``; MONITORING/EVENT/lifecycle
  messages become JSON lines on MONITORING (only codes an STH host handles);
* the IN header block becomes InputContentType (3013) before the first IN byte;
* flow control is TCP's: every outbound socket has its own writer thread and
  a bounded queue, so a host that does not read OUT never holds back
  MONITORING or any other channel; inbound IN/STDIN are read only while the
  Sequence has taken what was delivered (a window), so input memory is bounded;
* a missing MONITORING_REPLY (no CONTROL line within ``reply_timeout`` of a
  heartbeat) or the end of CONTROL is a disconnect: all nine are destroyed,
  and after ``reconnect_delay`` the runner reconnects, PINGs again with its
  current status and ``inputHeadersSent``, and re-sends its PANGs. The
  Sequence runs on meanwhile; its output waits (bounded) in the queues.

Threads: one reader per inbound socket, one writer per outbound socket, a
reply watchdog and, while disconnected, a reconnect thread. They call the
core's ``TransportHandler`` from reader threads, never from the event loop.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..protocol import (
    Channel,
    Error,
    Event,
    Exiting,
    InputContentType,
    Kill,
    Monitoring,
    MonitoringRate,
    MonitoringReply,
    Pang,
    Ping,
    Pong,
    SequenceCompleted,
    SequenceStopped,
    Stop,
    codec,
    sth,
)
from ..protocol.errors import LocalProtocolError, ProtocolError
from ..protocol.events import Message
from ..protocol.lifecycle import LIFECYCLE_MESSAGES, Lifecycle
from ..protocol.sth import STHChannel, STHCode
from .base import ChannelWriter, HandshakeFailed, Transport, TransportHandler

log = logging.getLogger("runner")

RECV_SIZE = 256 * 1024
#: Bytes a writer thread takes from its ChannelWriter at a time (beyond it, the ChannelWriter queues).
OUTBOX_LIMIT = 256 * 1024
#: MONITORING bytes held while the host cannot take them (messages beyond it are refused).
MONITORING_LIMIT = 1 << 20
#: Input bytes delivered to the core and not yet taken by the Sequence before the reader pauses.
INPUT_WINDOW = 1 << 20
#: IN/STDIN EOF is the end of input unless the host is gone: STH-Node waits 500 ms for CONTROL to
#: end too. Here CONTROL and the outbound connections (which a host never ends while it is there)
#: are asked at once (POLLRDHUP: the peer's FIN has arrived, even behind unread data) and for at
#: most this long: a host that goes away closes all nine within one turn of its loop (or its exit),
#: so their FINs follow IN's by microseconds, while a real end of input no longer waits half a
#: second before run() can finish (issue 13 part 3).
EOF_SETTLE = 0.002
_HANGUP = select.POLLRDHUP | select.POLLHUP | select.POLLERR
IOV_MAX = 512
#: A socket write that has not finished for this long is held up by the host (TCP's "no credit").
WRITE_STALLED = 0.1

INBOUND = (STHChannel.STDIN, STHChannel.CONTROL, STHChannel.IN, STHChannel.PACKAGE)
OUTBOUND = (STHChannel.STDOUT, STHChannel.STDERR, STHChannel.MONITORING, STHChannel.OUT, STHChannel.LOG)
DATA_OUT = (Channel.STDOUT, Channel.STDERR, Channel.OUT, Channel.LOG)



@dataclass
class STHConfig:
    """Where and who: from STH's environment (runner.sth_mode)."""

    host: str
    port: int
    instance_id: str
    sequence_info: dict[str, Any]
    connect_info: dict[str, Any]
    connect_timeout: float = 10.0
    reply_timeout: float = 1.0
    reconnect_delay: float = 10.0
    exit_timeout_ms: int = 1000
    exit_code_dir: str = "/tmp"
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def connect_all(cfg: STHConfig, timeout: float) -> dict[int, socket.socket]:
    """Nine connections, opened concurrently, each with its preamble sent in one write."""
    socks: dict[int, socket.socket] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(channel: int) -> None:
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(sth.encode_preamble(cfg.instance_id, channel))
                sock.settimeout(None)
            except BaseException:
                sock.close()
                raise
        except OSError as err:
            with lock:
                errors.append(err)
            return
        with lock:
            socks[channel] = sock

    threads = [threading.Thread(target=one, args=(ch,), name=f"sth-connect-{ch}", daemon=True)
               for ch in range(sth.CHANNEL_COUNT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors or len(socks) != sth.CHANNEL_COUNT:
        for sock in socks.values():
            _destroy(sock)
        err = errors[0] if errors else OSError("not all channels connected")
        raise OSError(f"cannot connect to the STH host {cfg.host}:{cfg.port}: {err}") from None
    return socks


def _destroy(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Outbound:
    """One outbound socket: an outbox of buffers and the thread that writes them."""

    def __init__(self, transport: STHTransport, channel: int, whole_items: bool) -> None:
        self.transport = transport
        self.channel = channel
        self.whole_items = whole_items  # MONITORING: a line half-sent on a lost socket goes again whole
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.outbox: deque[Any] = deque()
        self.outbox_bytes = 0
        self.sock: socket.socket | None = None
        self.sending = False
        self.end_requested = False
        self.end_sent = False
        self.progress_at = 0.0  # when the current write began or last finished
        self.writer: ChannelWriter | None = None

    def put(self, data: Any) -> None:
        """Lock held."""
        self.outbox.append(data)
        self.outbox_bytes += len(data)
        self.wake.notify()

    def sink(self, data: Any) -> int:
        """ChannelWriter sink (lock held): take everything while the outbox has room."""
        if self.outbox_bytes >= OUTBOX_LIMIT:
            return 0
        self.put(bytes(data) if isinstance(data, memoryview) else data)
        return len(data)

    def end(self) -> None:
        """ChannelWriter end (lock held): half-close once the outbox is written."""
        self.end_requested = True
        self.wake.notify()

    @property
    def idle(self) -> bool:
        """Lock held: everything handed over is written (and the end sent, if asked)."""
        return not self.outbox and not self.sending and (not self.end_requested or self.end_sent)

    def progressing(self, now: float) -> bool:
        """Lock held: a write is under way and the host is taking it (not stalled)."""
        return self.sending and now - self.progress_at < WRITE_STALLED

    def run(self) -> None:
        t = self.transport
        while True:
            with self.lock:
                while True:
                    if t._exiting:
                        self.sending = False
                        t._notify_drained()
                        return
                    sock = self.sock
                    if sock is not None and (self.outbox or (self.end_requested and not self.end_sent)):
                        break
                    self.sending = False
                    t._notify_drained()
                    self.wake.wait()
                items = list(self.outbox)
                self.sending = True
                started = self.progress_at = time.monotonic()
            sent_items, partial = 0, 0
            error: OSError | None = None
            if items:
                try:
                    sent_items, partial = _send_items(sock, items)
                except _SendFailed as failed:
                    sent_items, partial, error = failed.items, failed.partial, failed.error
            with self.lock:
                if sent_items or partial:
                    self.progress_at = time.monotonic()
                heartbeat_sent = False
                for _ in range(sent_items):
                    item = self.outbox.popleft()
                    self.outbox_bytes -= len(item)
                    heartbeat_sent = heartbeat_sent or type(item) is _Heartbeat
                if partial and not self.whole_items:
                    head = self.outbox[0]
                    self.outbox[0] = memoryview(head)[partial:]
                    self.outbox_bytes -= partial
                if error is None and not self.outbox and self.end_requested and not self.end_sent:
                    self.end_sent = True
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                if self.writer is not None and self.outbox_bytes < OUTBOX_LIMIT:
                    self.writer.pump()  # the ChannelWriter shares this lock
            if heartbeat_sent and error is None:
                t._heartbeat_written(started)
            if error is not None:
                t._lost(sock, error)
                with self.lock:
                    while self.sock is sock and not t._exiting:
                        self.sending = False
                        t._notify_drained()
                        self.wake.wait()

class _Heartbeat(bytes):
    """A MONITORING heartbeat line: writing one arms the reply watchdog."""


class _SendFailed(Exception):
    def __init__(self, items: int, partial: int, error: OSError) -> None:
        super().__init__(str(error))
        self.items, self.partial, self.error = items, partial, error


def _send_items(sock: socket.socket, items: list[Any]) -> tuple[int, int]:
    """sendmsg every item; return (items fully sent, bytes of the next one) = (len(items), 0)."""
    views = [memoryview(b).cast("B") for b in items]
    first, offset = 0, 0  # offset: bytes of views[first] already sent
    while first < len(views):
        batch = views[first:first + IOV_MAX]
        if offset:
            batch[0] = batch[0][offset:]
        try:
            sent = sock.sendmsg(batch)
        except OSError as err:
            raise _SendFailed(first, offset, err) from None
        while sent and first < len(views):
            left = len(views[first]) - offset
            if sent >= left:
                sent -= left
                first += 1
                offset = 0
            else:
                offset += sent
                sent = 0
        while first < len(views) and len(views[first]) == 0:
            first += 1
    return len(views), 0


class STHTransport(Transport):
    impl = "sth"
    stderr_is_crash_log = True  # STH-Py's tracebacks reach its real stderr, which STH keeps

    def __init__(self, cfg: STHConfig) -> None:
        self.cfg = cfg
        self.exit_timeout_ms = cfg.exit_timeout_ms
        self._lock = threading.Lock()  # transport state (not the channels)
        self._drained = threading.Condition(self._lock)
        self._handler: TransportHandler | None = None
        self._lifecycle = Lifecycle()
        self._out: dict[int, _Outbound] = {
            int(ch): _Outbound(self, int(ch), whole_items=ch == STHChannel.MONITORING) for ch in OUTBOUND}
        self._writers: dict[int, ChannelWriter] = {}
        for ch in DATA_OUT:
            out = self._out[int(ch)]
            out.writer = ChannelWriter(out.lock, out.sink, out.end)
            self._writers[int(ch)] = out.writer
        self._socks: dict[int, socket.socket] = {}
        self._generation = 0
        self._connected = False
        self._exiting = False
        self._started = False
        self._early: list[tuple[int, dict[str, Any]]] = []
        self._control_decoder = sth.MessageDecoder()
        self._pangs: list[dict[str, Any]] = []
        self._status = "starting"
        self._reply_deadline: float | None = None
        self._last_control = 0.0
        self._watchdog_wake = threading.Event()
        self._control_ended = threading.Event()  # of the current generation
        self._in_reader = sth.InputHeaderReader(expect_headers=not cfg.connect_info.get("inputTopic"))
        self._headers_seen = False
        self._input_from_topic = False
        self._ended: set[int] = set()  # inbound channels whose end was delivered
        self._window_lock = threading.Lock()
        self._window_cond = threading.Condition(self._window_lock)
        self._outstanding = {int(STHChannel.STDIN): 0, int(STHChannel.IN): 0}
        self._never_block: set[int] = set()
        self.reconnects = 0
        self.exit_code: int | None = None

    # -- connecting and the handshake (main thread, before the loop exists) -------------------
    def handshake(self, hello: Ping, timeout: float) -> Pong:
        cfg = self.cfg
        try:
            socks = connect_all(cfg, min(timeout, cfg.connect_timeout))
        except OSError as err:
            raise HandshakeFailed(str(err)) from None
        self._socks = socks
        self._connected = True
        created = int(hello.created or cfg.created_ms)
        data = sth.ping_data(cfg.instance_id, cfg.sequence_info, cfg.connect_info, os.getpid(),
                             created_ms=created, status="starting", input_headers_sent=False)
        control = socks[STHChannel.CONTROL]
        pong = Pong()
        deadline = time.monotonic() + timeout
        try:
            socks[STHChannel.MONITORING].sendall(sth.encode_runner_message(STHCode.PING, data))
            self._lifecycle.apply(hello, time.monotonic())
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HandshakeFailed(f"no PONG from the STH host within {timeout:g} s")
                control.settimeout(left)
                chunk = control.recv(RECV_SIZE)
                if not chunk:
                    raise HandshakeFailed("the STH host closed CONTROL during the handshake")
                for code, body in self._decode_control(chunk):
                    if code == STHCode.PONG and not self._lifecycle_running():
                        pong = Pong(app_config=body.get("appConfig", cfg.connect_info.get("appConfig")),
                                    args=body.get("args", cfg.connect_info.get("args")))
                        self._lifecycle.apply(pong, time.monotonic())
                    elif self._lifecycle_running():
                        self._early.append((code, body))
                    else:
                        log.info("STH: %s before PONG, delivered after it", code)
                        self._early.append((code, body))
                if self._lifecycle_running():
                    return pong
        except TimeoutError:
            raise HandshakeFailed(f"no PONG from the STH host within {timeout:g} s") from None
        except OSError as err:
            raise HandshakeFailed(f"connection to the STH host failed during the handshake: {err}") from None
        finally:
            try:
                control.settimeout(None)
            except OSError:
                pass

    def _lifecycle_running(self) -> bool:
        return self._lifecycle.state.value != "starting"

    def _decode_control(self, chunk: bytes | None) -> list[tuple[int, dict[str, Any]]]:
        """Every good line; bad lines are logged and skipped (never fatal)."""
        decoder = self._control_decoder
        out: list[tuple[int, dict[str, Any]]] = []
        data = b"" if chunk is None else chunk
        while True:
            try:
                out += decoder.eof() if chunk is None else decoder.feed(data)
                return out
            except sth.STHProtocolError as err:
                out += err.frames
                log.warning("STH: skipping a bad CONTROL line: %s", err)
                data = b""

    # -- threads -------------------------------------------------------------------------------
    def start(self, handler: TransportHandler) -> None:
        self._handler = handler
        self._started = True
        with self._lock:
            generation = self._generation
            socks = dict(self._socks)
        for out in self._out.values():
            threading.Thread(target=out.run, name=f"sth-writer-{out.channel}", daemon=True).start()
        early, self._early = self._early, []
        for code, body in early:
            self._deliver(code, body)
        self._install(generation, socks)
        threading.Thread(target=self._watchdog, name="sth-reply-watchdog", daemon=True).start()

    def _install(self, generation: int, socks: dict[int, socket.socket]) -> None:
        """Hand a (new) set of sockets to the writers and start readers for it."""
        for ch, out in self._out.items():
            with out.lock:
                out.sock = socks[ch]
                if out.end_sent:  # ended before a reconnect: end it on the new socket too
                    try:
                        out.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                out.wake.notify_all()
        for ch in INBOUND:
            threading.Thread(target=self._read_loop, args=(generation, int(ch), socks[ch]),
                             name=f"sth-reader-{int(ch)}", daemon=True).start()

    def _read_loop(self, generation: int, channel: int, sock: socket.socket) -> None:
        ident = threading.get_ident()
        self._never_block.add(ident)
        for writer in self._writers.values():
            writer.never_block.add(ident)
        error: OSError | None = None
        try:
            while True:
                if channel in self._outstanding and not self._wait_window(generation, channel):
                    return
                try:
                    data = sock.recv(RECV_SIZE)
                except OSError as err:
                    error = err
                    break
                if generation != self._generation:
                    return
                if not data:
                    break
                try:
                    self._on_bytes(channel, data)
                except Exception:
                    log.exception("STH: handling channel %d data failed", channel)
            if generation != self._generation:
                return
            self._on_eof(generation, channel, error)
        finally:
            self._never_block.discard(ident)

    def _wait_window(self, generation: int, channel: int) -> bool:
        with self._window_cond:
            while self._outstanding[channel] >= INPUT_WINDOW:
                if generation != self._generation or self._exiting:
                    return False
                self._window_cond.wait(0.5)
        return generation == self._generation

    def _on_bytes(self, channel: int, data: bytes) -> None:
        handler = self._handler
        assert handler is not None
        if channel == STHChannel.CONTROL:
            with self._lock:
                self._reply_deadline = None
                self._last_control = time.monotonic()
            for code, body in self._decode_control(data):
                self._deliver(code, body)
        elif channel == STHChannel.IN:
            if int(Channel.IN) in self._ended:
                return
            was_done = self._in_reader.done
            try:
                payload = self._in_reader.feed(data)
            except sth.BadHeaderBlock as err:
                log.error("STH: bad IN header block (%s); taking the input as it is", err)
                self._in_reader = sth.InputHeaderReader(expect_headers=False)
                payload = data
            if not was_done and self._in_reader.done:
                self._headers_seen = True
                content_type = self._in_reader.content_type
                if content_type:
                    handler.on_message(InputContentType(content_type=content_type))
            if payload:
                chunk = bytes(payload)
                with self._window_lock:
                    self._outstanding[channel] += len(chunk)
                handler.on_data(Channel.IN, [chunk])
        elif channel == STHChannel.STDIN:
            if int(Channel.STDIN) in self._ended:
                return
            with self._window_lock:
                self._outstanding[channel] += len(data)
            handler.on_data(Channel.STDIN, [data])
        # PACKAGE (8): BPMux frames of the hub tunnel, read and dropped

    def _on_eof(self, generation: int, channel: int, error: OSError | None) -> None:
        if channel == STHChannel.CONTROL:
            for code, body in self._decode_control(None):
                self._deliver(code, body)
            self._control_ended.set()
            why = f"CONTROL failed: {error}" if error else "the host ended CONTROL"
            self._disconnect(generation, why)
            return
        if channel in (STHChannel.IN, STHChannel.STDIN):
            # STH-Node: IN EOF with the other connections also ended is a disconnect, not the end of input
            if self._host_hung_up() or generation != self._generation or error is not None:
                return
            if channel == STHChannel.IN:
                try:
                    self._in_reader.eof()
                except sth.BadHeaderBlock as err:
                    log.error("STH: %s", err)
            with self._lock:
                if channel in self._ended:
                    return
                self._ended.add(channel)
            assert self._handler is not None
            self._handler.on_end(Channel(channel))

    def _host_hung_up(self) -> bool:
        """Whether CONTROL or an outbound connection has ended too, within EOF_SETTLE."""
        if self._control_ended.is_set():
            return True
        with self._lock:
            others = [s for ch, s in self._socks.items() if ch == STHChannel.CONTROL or ch in OUTBOUND]
        poller = select.poll()
        for sock in others:
            try:
                poller.register(sock, _HANGUP)
            except (OSError, ValueError):  # already closed: this session is over
                return True
        return bool(poller.poll(EOF_SETTLE * 1000)) or self._control_ended.is_set()

    def _deliver(self, code: int, body: dict[str, Any]) -> None:
        """A CONTROL message to the core; bad ones are logged and skipped."""
        handler = self._handler
        if handler is None:
            self._early.append((code, body))
            return
        if code == STHCode.PONG:
            log.debug("STH: PONG %s", body)  # the answer to a reconnect's PING
            return
        try:
            message = _control_message(code, body)
            if message is None:
                log.warning("STH: ignoring CONTROL code %s (no handler in a runner)", code)
                return
            if isinstance(message, Stop):
                self._status = "stopping"
            elif isinstance(message, Kill):
                self._status = "killing"
            if type(message) in LIFECYCLE_MESSAGES:
                with self._lock:
                    try:
                        self._lifecycle.apply(message, time.monotonic())
                    except ProtocolError as err:
                        log.info("STH: %s", err)
            handler.on_message(message)
        except Exception as exc:  # noqa: BLE001 - a bad message never kills the reader
            log.warning("STH: skipping CONTROL message %s: %s", code, exc)

    # -- disconnect and reconnect (ref §3.8g) --------------------------------------------------------
    def _heartbeat_written(self, started: float) -> None:
        """A heartbeat went out (its write began at ``started``): expect a CONTROL line after it."""
        with self._lock:
            if (self._reply_deadline is None and self.cfg.reply_timeout > 0
                    and self._last_control < started):
                self._reply_deadline = started + self.cfg.reply_timeout
                self._watchdog_wake.set()

    def _watchdog(self) -> None:
        while not self._exiting:
            deadline = self._reply_deadline
            if deadline is None:
                self._watchdog_wake.wait(1.0)
                self._watchdog_wake.clear()
                continue
            left = deadline - time.monotonic()
            if left > 0:
                self._watchdog_wake.wait(left)
                self._watchdog_wake.clear()
                continue
            with self._lock:
                if self._reply_deadline is None or self._reply_deadline > time.monotonic():
                    continue
                self._reply_deadline = None
                generation, connected = self._generation, self._connected
            if connected:
                self._disconnect(generation, f"no CONTROL message within {self.cfg.reply_timeout:g} s "
                                             "of a heartbeat")

    def _lost(self, sock: socket.socket, error: OSError) -> None:
        """A writer's socket failed."""
        with self._lock:
            generation = self._generation
            ours = any(s is sock for s in self._socks.values())
        if ours:
            self._disconnect(generation, f"writing failed: {error}")

    def _disconnect(self, generation: int, why: str) -> None:
        with self._lock:
            if generation != self._generation or not self._connected or self._exiting:
                return
            self._generation += 1
            self._connected = False
            socks, self._socks = self._socks, {}
            self._reply_deadline = None
        log.warning("STH: host connection lost (%s); reconnecting in %g s", why, self.cfg.reconnect_delay)
        for out in self._out.values():
            with out.lock:
                out.sock = None
                out.wake.notify_all()
        for sock in socks.values():
            _destroy(sock)
        with self._window_cond:
            self._window_cond.notify_all()
        threading.Thread(target=self._reconnect, name="sth-reconnect", daemon=True).start()

    def _reconnect(self) -> None:
        cfg = self.cfg
        while not self._exiting:
            time.sleep(cfg.reconnect_delay)
            if self._exiting:
                return
            try:
                socks = connect_all(cfg, cfg.connect_timeout)
            except OSError as err:
                log.warning("STH: reconnect failed (%s); retrying in %g s", err, cfg.reconnect_delay)
                continue
            headers_sent = self._headers_seen or self._input_from_topic or not self._in_reader_expects()
            data = sth.ping_data(cfg.instance_id, cfg.sequence_info, cfg.connect_info, os.getpid(),
                                 created_ms=cfg.created_ms, status=self._status,
                                 input_headers_sent=headers_sent)
            try:
                socks[STHChannel.MONITORING].sendall(sth.encode_runner_message(STHCode.PING, data))
                mon = self._out[int(STHChannel.MONITORING)]
                with mon.lock:
                    while mon.sending:  # a write to the lost socket still unwinding
                        mon.wake.wait(0.05)
                    # PANGs go first, before what waited (PING went directly)
                    for pang in reversed(self._pangs):
                        line = sth.encode_runner_message(STHCode.PANG, pang)
                        mon.outbox.appendleft(line)
                        mon.outbox_bytes += len(line)
            except OSError as err:
                for sock in socks.values():
                    _destroy(sock)
                log.warning("STH: PING after reconnect failed (%s); retrying in %g s", err, cfg.reconnect_delay)
                continue
            with self._lock:
                self._generation += 1
                generation = self._generation
                self._socks = socks
                self._connected = True
                self._control_decoder = sth.MessageDecoder()
                self._control_ended = threading.Event()
                if self._headers_seen or not self._in_reader.done:
                    self._in_reader = sth.InputHeaderReader(expect_headers=not headers_sent)
            self.reconnects += 1
            log.info("STH: reconnected (%d)", self.reconnects)
            self._install(generation, socks)
            return

    def _in_reader_expects(self) -> bool:
        return not self._in_reader.done or self._headers_seen

    # -- sending ---------------------------------------------------------------------------------
    def send(self, message: Message) -> bool:
        if isinstance(message, Exiting):
            self.exit_code = int(message.exit_code)
            return True  # STH has no EXITING: the exit code goes to /tmp/runner-<pid> (on_exit)
        code = message.code
        if code not in sth.RUNNER_TO_HOST_CODES or isinstance(message, Ping):
            return False
        data = self._sth_data(message)
        if data is None:
            return True  # a fact STH has no use for, or one it must not hear twice (docs/sth-compat.md §3)
        try:
            line = sth.encode_runner_message(code, data)
        except LocalProtocolError:
            if isinstance(message, Event):
                raise  # the Sequence learns its message cannot be sent, as on protocol v1
            log.warning("STH: message %s cannot be encoded; not sent", code)
            return False
        with self._lock:
            if self._exiting or not self._record_sent(message, data):
                return False
            connected = self._connected
        mon = self._out[int(STHChannel.MONITORING)]
        with mon.lock:
            if isinstance(message, Monitoring):
                if not connected:
                    return False  # a heartbeat is stale by the time the host is back
                line = _Heartbeat(line)
            elif mon.outbox_bytes + len(line) > MONITORING_LIMIT:
                log.warning("STH: MONITORING queue full; message %s dropped", code)
                return False
            mon.put(line)
        return True

    def _sth_data(self, message: Message) -> dict[str, Any] | None:
        """The STH body of a protocol-v1 message; None: not sent on STH."""
        match message:
            case Monitoring(healthy=healthy, stats=stats):
                if (stats or {}).get("starting"):
                    return None  # no verdict yet: STH's /health waits for the first heartbeat instead
                return {"healthy": bool(healthy)}
            case SequenceStopped(error=error):
                return {} if error is None else {"sequenceError": error}
            case Error(message=text, stack=stack, exit_code=exit_code):
                exit_code = exit_code or 0
                return {"exitCode": exit_code, "message": text, "errorCode": exit_code, "stack": stack or ""}
            case Pang(provides=provides, output_encoding=encoding):
                data = codec.to_body(message)
                if provides is not None:
                    data["outputEncoding"] = encoding  # STH's runners name it (null too) on the output side
                return self._sth_pang(data)
            case Event(name=name, message=payload):
                return {"eventName": name} if payload is None else {"eventName": name, "message": payload}
        return codec.to_body(message)

    def _sth_pang(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Each fact once: STH's hub (re)routes the ``requires`` topic into the Instance on every PANG
        with a content type, so topic data would arrive twice (ref §10). A ``requires`` PANG goes
        out only until a topic with a content type was announced (the first PANG always: it makes
        the Instance "running"); a ``provides`` PANG only when it names a topic.

        --input-topic without a requires declaration: the topic is announced with a content type
        so STH routes it (STH-Py sent contentType "" and the topic never arrived)."""
        if "provides" in data:
            return data if data.get("provides") else None
        if self._pangs and self._input_from_topic:
            return None
        topic = self.cfg.connect_info.get("inputTopic")
        if not data.get("requires") and isinstance(topic, str) and topic:
            data = {**data, "requires": topic, "contentType": data.get("contentType") or "text/plain"}
        return data

    def _record_sent(self, message: Message, data: dict[str, Any]) -> bool:
        """Under the lock: the lifecycle and status a message sent now moves to (False: refused)."""
        if type(message) in LIFECYCLE_MESSAGES:
            if not self._lifecycle.can_send(type(message)):
                return False  # it crossed with the host's (SEQUENCE_COMPLETED after KILL)
            self._lifecycle.apply(message, time.monotonic())
            if isinstance(message, SequenceCompleted):
                self._status = "completed"
            elif isinstance(message, Error):
                self._status = "errored"
        if isinstance(message, Pang):
            self._pangs.append(data)
            if data.get("requires") and data.get("contentType"):
                self._input_from_topic = True
                if not self._in_reader.done:
                    try:
                        self._in_reader.no_headers()
                    except LocalProtocolError:
                        pass
            if self._status == "starting":
                self._status = "running"
        return True

    def writer(self, channel: int) -> ChannelWriter:
        return self._writers[int(channel)]

    def consumed(self, channel: int, n: int) -> None:
        """The Sequence took ``n`` input bytes: the reader may read more (TCP flow control)."""
        channel = int(channel)
        if channel not in self._outstanding:
            return
        with self._window_cond:
            before = self._outstanding[channel]
            self._outstanding[channel] = max(0, before - n)
            if before >= INPUT_WINDOW > self._outstanding[channel]:
                self._window_cond.notify_all()

    def _notify_drained(self) -> None:
        with self._drained:
            self._drained.notify_all()

    def flush(self, timeout: float, grace: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        hard_deadline = deadline + max(0.0, grace)
        while True:
            now = time.monotonic()
            done = all(w.drained for w in self._writers.values())
            sendable = False
            for out in self._out.values():
                with out.lock:
                    done = done and out.idle
                    sendable = sendable or out.progressing(now)
            if done:
                return True
            # TCP's flow control is the credit here: a socket the host does not read stalls
            # its writer, and that is waited for only until ``deadline``.
            left = (hard_deadline if sendable else deadline) - now
            if left <= 0:
                return False
            with self._drained:
                self._drained.wait(min(left, 0.05))

    def close(self) -> None:
        """Half-close what the runner writes; never the channels it reads."""
        with self._lock:
            self._exiting = True
            socks = dict(self._socks)
        self._watchdog_wake.set()
        for out in self._out.values():
            with out.lock:
                out.wake.notify_all()
        for ch in OUTBOUND:
            sock = socks.get(int(ch))
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def on_exit(self, code: int) -> None:
        """Just before the process exits: STH's process adapter reads the code from this file."""
        write_exit_code(code, self.cfg.exit_code_dir)

    @property
    def broken(self) -> bool:
        return False  # a lost host is reconnected; the core never sees a broken STH transport

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def lifecycle_state(self) -> str:
        return self._lifecycle.state.value

    @property
    def channels(self) -> dict[str, ChannelWriter]:
        return {Channel(ch).name.lower(): w for ch, w in self._writers.items()}


def write_exit_code(code: int, directory: str = "/tmp") -> None:
    """``str(code)`` to ``<directory>/runner-<pid>`` (best effort: the runner exits anyway)."""
    path = os.path.join(directory, os.path.basename(sth.exit_code_file(os.getpid())))
    try:
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(int(code)))
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.write(2, f"runner: cannot write the exit code file {path}: {err}\n".encode())
        except OSError:
            pass


__all__ = ["STHConfig", "STHTransport", "connect_all", "write_exit_code"]


def _control_message(code: int, body: dict[str, Any]) -> Message | None:
    """The message an STH CONTROL line stands for (None: none a runner handles); ValueError if bad.

    Lenient where STH is: STOP's timeout defaults to 7000 ms, unknown keys are ignored."""
    if code == STHCode.STOP:
        timeout = body.get("timeout", 7000)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"STOP timeout {timeout!r} is not a number")
        return Stop(timeout_ms=float(timeout), can_keep_alive=bool(body.get("canCallKeepalive", False)))
    if code == STHCode.KILL:
        return Kill()
    if code == STHCode.MONITORING_RATE:
        rate = body.get("monitoringRate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            raise ValueError(f"monitoringRate {rate!r} is not a number >= 0")
        return MonitoringRate(rate=float(rate))
    if code == STHCode.MONITORING_REPLY:
        return MonitoringReply()
    if code == STHCode.EVENT:
        name = body.get("eventName")
        if not isinstance(name, str):
            raise ValueError(f"EVENT without a string eventName: {body!r}")
        source = body.get("source")
        return Event(name=name, message=body.get("message"), source=source if isinstance(source, str) else None)
    return None
