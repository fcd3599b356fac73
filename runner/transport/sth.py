"""Scramjet Transform Hub's runner protocol: nine TCP connections, JSON lines (docs/sth-compat.md).

An 0.18-style host (``STHConfig.profile``, runner/transport/sth_profile.py) takes eight (no
PACKAGE) and never sends MONITORING_REPLY, so there is no reply watchdog; the rest is the same.

The runner core speaks protocol-v1 terms (the message classes of ``runner.protocol``
and ``Channel``); what each becomes on STH's wire is ``STHTranslator``'s
(runner/protocol/sth_translator.py). This module moves the bytes:

* one TCP connection per channel, each opened with ``instance id + digit``;
  all nine stay open both ways until the process exits. The runner never
  half-closes a connection it reads (0 STDIN, 3 CONTROL, 5 IN, 8 PACKAGE);
  ending a channel it writes is ``shutdown(SHUT_WR)`` of that socket only;
* flow control is TCP's: every outbound socket has its own writer thread and
  a bounded queue (sth_sockets.py), so a host that does not read OUT never holds
  back MONITORING or any other channel; inbound IN/STDIN are read only while the
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
import socket
import threading
import time

from ..protocol import Channel, Event, InputContentType, Monitoring, Ping, Pong
from ..protocol.errors import LocalProtocolError
from ..protocol.events import Message
from ..protocol.sth import STHChannel
from ..protocol.sth_translator import STHTranslator
from .base import ChannelWriter, HandshakeFailed, Transport, TransportHandler
from .sth_connect import STHConfig, connect_all, destroy, write_exit_code
from .sth_sockets import Heartbeat, InputWindows, Outbound, any_hung_up, half_close

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..hello import STHEarlyPing

log = logging.getLogger("runner")

RECV_SIZE = 256 * 1024
#: MONITORING bytes held while the host cannot take them (messages beyond it are refused).
MONITORING_LIMIT = 1 << 20
#: IN/STDIN EOF is the end of input unless the host is gone: STH-Node waits 500 ms for CONTROL to
#: end too. Here CONTROL and the outbound connections (which a host never ends while it is there)
#: are asked at once (POLLRDHUP: the peer's FIN has arrived, even behind unread data) and for at
#: most this long: a host that goes away closes all nine within one turn of its loop (or its exit),
#: so their FINs follow IN's by microseconds, while a real end of input no longer waits half a
#: second before run() can finish (issue 13 part 3).
EOF_SETTLE = 0.002

#: The channels the runner reads; PACKAGE only where the host opens it (STH 1.0.x, not 0.18.x).
INBOUND = (STHChannel.STDIN, STHChannel.CONTROL, STHChannel.IN, STHChannel.PACKAGE)
OUTBOUND = (STHChannel.STDOUT, STHChannel.STDERR, STHChannel.MONITORING, STHChannel.OUT, STHChannel.LOG)
DATA_OUT = (Channel.STDOUT, Channel.STDERR, Channel.OUT, Channel.LOG)


class STHTransport(Transport):
    impl = "sth"
    stderr_is_crash_log = True  # STH-Py's tracebacks reach its real stderr, which STH keeps

    def __init__(self, cfg: STHConfig, early: STHEarlyPing) -> None:
        self.cfg = cfg
        #: The nine connections, PING, the CONTROL bytes up to PONG and the first PANG, as runner.hello
        #: made, wrote and read them (handshake checks them and takes them over).
        self._early_ping: STHEarlyPing | None = early
        self.exit_timeout_ms = cfg.exit_timeout_ms
        self._lock = threading.Lock()  # transport state and the translator (not the channels)
        self._drained = threading.Condition(self._lock)
        self._handler: TransportHandler | None = None
        self._sth = STHTranslator(cfg.instance_id, cfg.sequence_info, cfg.connect_info, cfg.created_ms)
        self._out = {int(ch): Outbound(self, int(ch), whole_items=ch == STHChannel.MONITORING) for ch in OUTBOUND}
        self._writers: dict[int, ChannelWriter] = {int(ch): self._out[int(ch)].attach_writer() for ch in DATA_OUT}
        self._socks: dict[int, socket.socket] = {}
        self._generation = 0  # of the set of sockets: threads of a lost set stop acting
        self._connected = False
        self._exiting = False
        self._early: list[Message] = []  # CONTROL messages that came with PONG
        self._reply_deadline: float | None = None
        self._last_control = 0.0
        self._watchdog_wake = threading.Event()
        self._control_ended = threading.Event()  # of the current generation
        self._ended: set[int] = set()  # inbound channels whose end was delivered
        self._windows = InputWindows((int(STHChannel.STDIN), int(STHChannel.IN)))
        #: The channels read: on an 0.18-style host there is no PACKAGE (8), and nothing of the
        #: runner's uses it (its BPMux frames are dropped on 1.0.x: no context.hub).
        self._inbound = tuple(ch for ch in INBOUND if ch < cfg.profile.channels)
        self.reconnects = 0

    # -- the handshake (main thread, before the loop exists) ------------------------------------
    def handshake(self, hello: Ping, timeout: float) -> Pong:
        """Take over what runner/hello.py did: the nine connections, the PING, the CONTROL bytes up
        to PONG and the first PANG. The translator builds the PING and the PANG from the same values
        and must get the very bytes written: it is the one authority on STH's wire format."""
        early, self._early_ping = self._early_ping, None
        if early is None:
            raise HandshakeFailed("the STH handshake was already taken over: a runner bug")
        self._socks = early.socks
        self._connected = True
        if self._sth.ping(hello, os.getpid(), time.monotonic()) != early.frame:
            raise HandshakeFailed("the PING written at start-up (runner/hello.py) is not the one the "
                                  "translator builds from the same values: a runner bug")
        pong = self._handshake_lines(early.control)
        if pong is None:
            raise HandshakeFailed("runner/hello.py saw PONG in CONTROL bytes where the translator finds "
                                  "none: a runner bug")
        if self._sth.first_pang() != early.pang:
            raise HandshakeFailed("the PANG written at start-up (runner/hello.py) is not the one the "
                                  "translator builds: a runner bug")
        return pong

    def _handshake_lines(self, chunk: bytes) -> Pong | None:
        """The CONTROL bytes read until PONG: the PONG; what came with it (or before it) is
        delivered after it."""
        messages, notes = self._sth.control(chunk)
        _log_notes(notes)
        pong = None
        for message in messages:
            if isinstance(message, Pong) and pong is None and not self._sth.handshake_done:
                self._sth.accept_pong(message, time.monotonic())
                pong = message
                continue
            if pong is None:
                log.info("STH: %s before PONG, delivered after it", message.code)
            self._early.append(message)
        return pong

    # -- threads -------------------------------------------------------------------------------
    def start(self, handler: TransportHandler) -> None:
        self._handler = handler
        with self._lock:
            generation = self._generation
            socks = dict(self._socks)
        for out in self._out.values():
            threading.Thread(target=out.run, name=f"sth-writer-{out.channel}", daemon=True).start()
        early, self._early = self._early, []
        for message in early:
            self._deliver(message)
        self._install(generation, socks)
        if self.cfg.reply_timeout > 0:  # 0 when the host never replies (0.18.x) or when told so
            threading.Thread(target=self._watchdog, name="sth-reply-watchdog", daemon=True).start()

    def _install(self, generation: int, socks: dict[int, socket.socket]) -> None:
        """Hand a (new) set of sockets to the writers and start readers for it."""
        for ch, out in self._out.items():
            out.use(socks[ch])
        for ch in self._inbound:
            threading.Thread(target=self._read_loop, args=(generation, int(ch), socks[ch]),
                             name=f"sth-reader-{int(ch)}", daemon=True).start()

    def _read_loop(self, generation: int, channel: int, sock: socket.socket) -> None:
        ident = threading.get_ident()
        for writer in self._writers.values():
            writer.never_block.add(ident)
        error: OSError | None = None
        while True:
            if channel in self._windows and not self._windows.wait(channel, lambda: self._reading(generation)):
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
        if generation == self._generation:
            self._on_eof(generation, channel, error)

    def _reading(self, generation: int) -> bool:
        """Readers of ``generation`` go on (not after a reconnect replaced them, nor while exiting)."""
        return generation == self._generation and not self._exiting

    def _on_bytes(self, channel: int, data: bytes) -> None:
        if channel == STHChannel.CONTROL:
            with self._lock:
                self._reply_deadline = None
                self._last_control = time.monotonic()
                messages, notes = self._sth.control(data)
            _log_notes(notes)
            for message in messages:
                self._deliver(message)
        elif channel == STHChannel.IN:
            if int(Channel.IN) in self._ended:
                return
            with self._lock:
                parts, note = self._sth.input(data)
            if note is not None:
                log.error("STH: %s", note)
            for part in parts:
                if isinstance(part, InputContentType):
                    self._core().on_message(part)
                else:
                    self._input(Channel.IN, part)
        elif channel == STHChannel.STDIN and int(Channel.STDIN) not in self._ended:
            self._input(Channel.STDIN, data)
        # PACKAGE (8): BPMux frames of the hub tunnel, read and dropped

    def _input(self, channel: Channel, chunk: bytes) -> None:
        self._windows.delivered(int(channel), len(chunk))
        self._core().on_data(channel, [chunk])

    def _core(self) -> TransportHandler:
        assert self._handler is not None
        return self._handler

    def _on_eof(self, generation: int, channel: int, error: OSError | None) -> None:
        if channel == STHChannel.CONTROL:
            with self._lock:
                messages, notes = self._sth.control(None)
            _log_notes(notes)
            for message in messages:
                self._deliver(message)
            self._control_ended.set()
            self._disconnect(generation, f"CONTROL failed: {error}" if error else "the host ended CONTROL")
            return
        if channel not in (STHChannel.IN, STHChannel.STDIN):
            return
        # STH-Node: IN EOF with the other connections also ended is a disconnect, not the end of input
        if self._host_hung_up() or generation != self._generation or error is not None:
            return
        with self._lock:
            note = self._sth.input_ended() if channel == STHChannel.IN else None
            if channel in self._ended:
                return
            self._ended.add(channel)
        if note is not None:
            log.error("STH: %s", note)
        self._core().on_end(Channel(channel))

    def _host_hung_up(self) -> bool:
        """Whether CONTROL or an outbound connection has ended too, within EOF_SETTLE."""
        if self._control_ended.is_set():
            return True
        with self._lock:
            others = [s for ch, s in self._socks.items() if ch == STHChannel.CONTROL or ch in OUTBOUND]
        return any_hung_up(others, EOF_SETTLE) or self._control_ended.is_set()

    def _deliver(self, message: Message) -> None:
        """A CONTROL message to the core; one that fails is logged and skipped."""
        handler = self._handler
        if handler is None:
            self._early.append(message)
            return
        if isinstance(message, Pong):
            log.debug("STH: PONG %s", message)  # the answer to a reconnect's PING
            return
        with self._lock:
            note = self._sth.received(message, time.monotonic())
        if note is not None:
            log.info("STH: %s", note)
        try:
            handler.on_message(message)
        except Exception as exc:  # noqa: BLE001 - a bad message never kills the reader
            log.warning("STH: skipping CONTROL message %s: %s", message.code, exc)

    # -- disconnect and reconnect (ref §3.8g) --------------------------------------------------------
    def heartbeat_written(self, started: float) -> None:
        """A heartbeat went out (its write began at ``started``): expect a CONTROL line after it."""
        with self._lock:
            if (self._reply_deadline is None and self.cfg.reply_timeout > 0
                    and self._last_control < started):
                self._reply_deadline = started + self.cfg.reply_timeout
                self._watchdog_wake.set()

    def _watchdog(self) -> None:
        while not self._exiting:
            deadline = self._reply_deadline
            left = 1.0 if deadline is None else deadline - time.monotonic()
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

    def lost(self, sock: socket.socket, error: OSError) -> None:
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
            out.use(None)
        for sock in socks.values():
            destroy(sock)
        self._windows.wake_all()
        threading.Thread(target=self._reconnect, name="sth-reconnect", daemon=True).start()

    def _reconnect(self) -> None:
        cfg = self.cfg
        while not self._exiting:
            time.sleep(cfg.reconnect_delay)
            if self._exiting:
                return
            try:
                socks = connect_all(cfg.host, cfg.port, cfg.instance_id, cfg.connect_timeout, cfg.profile.channels)
            except OSError as err:
                log.warning("STH: reconnect failed (%s); retrying in %g s", err, cfg.reconnect_delay)
                continue
            try:
                self._greet(socks)
            except OSError as err:
                for sock in socks.values():
                    destroy(sock)
                log.warning("STH: PING after reconnect failed (%s); retrying in %g s", err, cfg.reconnect_delay)
                continue
            with self._lock:
                self._generation += 1
                generation = self._generation
                self._socks = socks
                self._connected = True
                self._control_ended = threading.Event()
                self._sth.reconnected()
            self.reconnects += 1
            log.info("STH: reconnected (%d)", self.reconnects)
            self._install(generation, socks)
            return

    def _greet(self, socks: dict[int, socket.socket]) -> None:
        """PING on the new MONITORING socket, and the PANGs first in line before what waited."""
        with self._lock:
            ping, pangs = self._sth.reconnect_ping(os.getpid()), self._sth.pang_lines()
        socks[STHChannel.MONITORING].sendall(ping)
        mon = self._out[int(STHChannel.MONITORING)]
        with mon.lock:
            while mon.sending:  # a write to the lost socket still unwinding
                mon.wake.wait(0.05)
            mon.put_first(pangs)

    # -- sending ---------------------------------------------------------------------------------
    def send(self, message: Message) -> bool:
        with self._lock:
            if self._exiting:
                return False
            try:
                line = self._sth.outgoing(message, time.monotonic())
            except LocalProtocolError:
                if isinstance(message, Event):
                    raise  # the Sequence learns its message cannot be sent, as on protocol v1
                log.warning("STH: message %s cannot be encoded; not sent", message.code)
                return False
            connected = self._connected
        if not isinstance(line, bytes):
            return line  # nothing to write: accepted, or refused
        mon = self._out[int(STHChannel.MONITORING)]
        with mon.lock:
            if isinstance(message, Monitoring):
                if not connected:
                    return False  # a heartbeat is stale by the time the host is back
                line = Heartbeat(line)
            elif mon.outbox_bytes + len(line) > MONITORING_LIMIT:
                log.warning("STH: MONITORING queue full; message %s dropped", message.code)
                return False
            mon.put(line)
        return True

    def writer(self, channel: int) -> ChannelWriter:
        return self._writers[int(channel)]

    def consumed(self, channel: int, n: int) -> None:
        """The Sequence took ``n`` input bytes: the reader may read more (TCP flow control)."""
        self._windows.consumed(int(channel), n)

    @property
    def exiting(self) -> bool:
        return self._exiting

    def notify_drained(self) -> None:
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
                half_close(sock)

    def on_exit(self, code: int) -> None:
        """Just before the process exits: STH 1.0's process adapter reads the code from this file
        (an 0.18-style host takes the process's own exit code: no file to leave behind)."""
        if self.cfg.profile.exit_code_file:
            write_exit_code(code, self.cfg.exit_code_dir)

    @property
    def broken(self) -> bool:
        return False  # a lost host is reconnected; the core never sees a broken STH transport


def _log_notes(notes: list[str]) -> None:
    for note in notes:
        log.warning("STH: %s", note)


__all__ = ["STHConfig", "STHTransport", "connect_all", "write_exit_code"]
