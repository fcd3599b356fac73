"""The sockets of STH's protocol: nine connections, one writer thread per outbound socket.

The nine connections are opened by ``connect_all`` (runner/transport/sth_connect.py). ``Outbound``
is one outbound socket's queue and the thread that writes it, so a host that
does not read OUT never holds back MONITORING or any other channel (TCP's flow
control is the credit here). The exit-code file STH's process adapter reads is
written by runner/transport/sth_connect.py's ``write_exit_code``. What the bytes mean is runner/protocol/sth_translator.py's.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .base import ChannelWriter

#: Bytes a writer thread takes from its ChannelWriter at a time (beyond it, the ChannelWriter queues).
OUTBOX_LIMIT = 256 * 1024
IOV_MAX = 512
#: A socket write that has not finished for this long is held up by the host (TCP's "no credit").
WRITE_STALLED = 0.1
#: Input bytes delivered to the core and not yet taken by the Sequence before the reader pauses.
INPUT_WINDOW = 1 << 20


_HANGUP = select.POLLRDHUP | select.POLLHUP | select.POLLERR


def any_hung_up(socks: list[socket.socket], timeout: float) -> bool:
    """Whether the peer ended any of ``socks`` (POLLRDHUP: its FIN has arrived, even behind unread
    data), waiting at most ``timeout`` seconds. A socket closed here counts as hung up."""
    poller = select.poll()
    for sock in socks:
        try:
            poller.register(sock, _HANGUP)
        except (OSError, ValueError):  # already closed: this session is over
            return True
    return bool(poller.poll(timeout * 1000))


def half_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class InputWindows:
    """TCP as the flow control of what the runner reads (IN, STDIN): a channel's reader pauses
    while ``INPUT_WINDOW`` bytes it delivered wait for the Sequence, so input memory is bounded."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._outstanding = dict.fromkeys(channels, 0)

    def __contains__(self, channel: int) -> bool:
        return channel in self._outstanding

    def delivered(self, channel: int, n: int) -> None:
        with self._cond:
            self._outstanding[channel] += n

    def consumed(self, channel: int, n: int) -> None:
        """The Sequence took ``n`` bytes: a paused reader may read again."""
        if channel not in self._outstanding:
            return
        with self._cond:
            before = self._outstanding[channel]
            self._outstanding[channel] = max(0, before - n)
            if before >= INPUT_WINDOW > self._outstanding[channel]:
                self._cond.notify_all()

    def wait(self, channel: int, reading: Callable[[], bool]) -> bool:
        """Until the channel has room (True), or ``reading()`` says the reader must stop (False)."""
        with self._cond:
            while self._outstanding[channel] >= INPUT_WINDOW:
                if not reading():
                    return False
                self._cond.wait(0.5)
        return reading()

    def wake_all(self) -> None:
        """Paused readers look again (their connection is gone)."""
        with self._cond:
            self._cond.notify_all()


class Heartbeat(bytes):
    """A MONITORING heartbeat line: writing one arms the reply watchdog."""


class OutboundOwner(Protocol):
    """What an Outbound tells the transport."""

    @property
    def exiting(self) -> bool: ...

    def notify_drained(self) -> None: ...

    def heartbeat_written(self, started: float) -> None: ...

    def lost(self, sock: socket.socket, error: OSError) -> None: ...


class Outbound:
    """One outbound socket: an outbox of buffers and the thread that writes them."""

    def __init__(self, owner: OutboundOwner, channel: int, whole_items: bool) -> None:
        self.owner = owner
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

    def attach_writer(self) -> ChannelWriter:
        """The ChannelWriter in front of this socket (data channels)."""
        self.writer = ChannelWriter(self.lock, self.sink, self.end)
        return self.writer

    def put(self, data: Any) -> None:
        """Lock held."""
        self.outbox.append(data)
        self.outbox_bytes += len(data)
        self.wake.notify()

    def put_first(self, lines: list[bytes]) -> None:
        """Lock held: ``lines`` go before everything queued (a reconnect's PANGs)."""
        for line in reversed(lines):
            self.outbox.appendleft(line)
            self.outbox_bytes += len(line)

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

    def use(self, sock: socket.socket | None) -> None:
        """A new socket (a reconnect), or None while disconnected."""
        with self.lock:
            self.sock = sock
            if sock is not None and self.end_sent:  # ended before a reconnect: end it on the new socket too
                half_close(sock)
            self.wake.notify_all()

    @property
    def idle(self) -> bool:
        """Lock held: everything handed over is written (and the end sent, if asked)."""
        return not self.outbox and not self.sending and (not self.end_requested or self.end_sent)

    def progressing(self, now: float) -> bool:
        """Lock held: a write is under way and the host is taking it (not stalled)."""
        return self.sending and now - self.progress_at < WRITE_STALLED

    def _idle_wait(self) -> None:
        """Lock held: nothing being written; tell flush() and wait to be woken."""
        self.sending = False
        self.owner.notify_drained()
        self.wake.wait()

    def _next_batch(self) -> tuple[socket.socket, list[Any]] | None:
        """Lock held: wait for a socket and something to write (None: the process exits)."""
        while True:
            if self.owner.exiting:
                self.sending = False
                self.owner.notify_drained()
                return None
            sock = self.sock
            if sock is not None and (self.outbox or (self.end_requested and not self.end_sent)):
                self.sending = True
                self.progress_at = time.monotonic()
                return sock, list(self.outbox)
            self._idle_wait()

    def run(self) -> None:
        while True:
            with self.lock:
                batch = self._next_batch()
            if batch is None:
                return
            sock, items = batch
            started = self.progress_at
            sent_items, partial, error = send_items(sock, items) if items else (0, 0, None)
            with self.lock:
                heartbeat_sent = self._written(sock, sent_items, partial, error)
            if heartbeat_sent and error is None:
                self.owner.heartbeat_written(started)
            if error is not None:
                self.owner.lost(sock, error)
                with self.lock:
                    while self.sock is sock and not self.owner.exiting:
                        self._idle_wait()

    def _written(self, sock: socket.socket, sent_items: int, partial: int, error: OSError | None) -> bool:
        """Lock held: take what went out off the outbox; True if a heartbeat was among it."""
        if sent_items or partial:
            self.progress_at = time.monotonic()
        heartbeat_sent = False
        for _ in range(sent_items):
            item = self.outbox.popleft()
            self.outbox_bytes -= len(item)
            heartbeat_sent = heartbeat_sent or type(item) is Heartbeat
        if partial and not self.whole_items:
            head = self.outbox[0]
            self.outbox[0] = memoryview(head)[partial:]
            self.outbox_bytes -= partial
        if error is None and not self.outbox and self.end_requested and not self.end_sent:
            self.end_sent = True
            half_close(sock)
        if self.writer is not None and self.outbox_bytes < OUTBOX_LIMIT:
            self.writer.pump()  # the ChannelWriter shares this lock
        return heartbeat_sent


def send_items(sock: socket.socket, items: list[Any]) -> tuple[int, int, OSError | None]:
    """sendmsg every item: (items fully sent, bytes of the next one sent, the error that stopped it)."""
    views = [memoryview(b).cast("B") for b in items]
    first, offset = 0, 0  # offset: bytes of views[first] already sent
    while first < len(views):
        batch = views[first:first + IOV_MAX]
        if offset:
            batch[0] = batch[0][offset:]
        try:
            sent = sock.sendmsg(batch)
        except OSError as err:
            return first, offset, err
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
    return len(views), 0, None
