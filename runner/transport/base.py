"""The interface between the runner core and a transport.

The core speaks protocol-v1 terms: the message classes of ``runner.protocol``
(``Stop``, ``Kill``, ``Event``, ``Pang``, ...) and ``runner.protocol.Channel``
data channels; a transport for another wire (STH) translates to and from them.
A transport owns its threads and sockets; it calls the core's
``TransportHandler`` from its reader thread and never from the event loop, so
control (stop, kill) is handled while the Sequence blocks the loop.

Bytes the runner writes go through one ``ChannelWriter`` per outbound data
channel: a bounded queue in front of the transport's flow control. Writers
block (threads), drop (the control thread, which must never wait) or register
a wake-up callback (the event loop), so memory stays bounded whatever the host
reads.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import Ping, Pong
from ..protocol.events import Message

#: Bytes a channel may queue beyond the transport's flow-control credit.
DEFAULT_PENDING_LIMIT = 1 << 20


class HandshakeFailed(Exception):
    """The host refused the runner or the handshake broke (exit 20)."""


class TransportHandler(Protocol):
    """The core, as a transport sees it. Called from the transport's reader thread."""

    def on_message(self, message: Message) -> None:
        """A CONTROL or EVENTS message after the handshake (Stop, Kill, Event, MonitoringRate, ...)."""

    def on_data(self, channel: int, chunks: list[bytes]) -> None:
        """A batch of bytes on STDIN or IN: everything one read delivered, in order."""

    def on_end(self, channel: int) -> None:
        """The host ended STDIN or IN."""

    def on_closed(self, error: BaseException | None) -> None:
        """The connection ended: None at a clean end of file, else what broke it."""


class Transport(ABC):
    """One connection to the host. All methods are thread-safe unless noted."""

    #: Framer implementation, shown in --version and PING ("cython"/"python").
    impl: str = "python"
    #: The host shows the process's real stderr as the instance's crash log (STH does): a failed
    #: Sequence's traceback goes there too, not only to the STDERR channel.
    stderr_is_crash_log: bool = False
    #: ``context.exit_timeout`` before the Sequence sets it: ms between SEQUENCE_COMPLETED and the
    #: exit (0 on protocol v1; STH mode's default, docs/sth-compat.md §3).
    exit_timeout_ms: int = 0

    @abstractmethod
    def handshake(self, hello: Ping, timeout: float) -> Pong:
        """Send ``hello``, wait for PONG and return it. HandshakeFailed on REJECT, a version
        mismatch, end of file or ``timeout`` seconds. Call once, before ``start``."""

    @abstractmethod
    def start(self, handler: TransportHandler) -> None:
        """Start the reader and writer threads; messages that came with PONG are delivered first."""

    @abstractmethod
    def send(self, message: Message) -> bool:
        """Queue a MONITORING/EVENTS message; never blocks. False (and nothing sent) when the
        lifecycle no longer allows it (a message that crossed with the host's) or the
        connection is gone."""

    @abstractmethod
    def writer(self, channel: int) -> ChannelWriter:
        """The writer of an outbound data channel (STDOUT, STDERR, OUT, LOG)."""

    @abstractmethod
    def consumed(self, channel: int, n: int) -> None:
        """The Sequence took ``n`` bytes of STDIN/IN: the host may send that much more."""

    @abstractmethod
    def flush(self, timeout: float, grace: float = 0.0) -> bool:
        """Wait until everything queued (channels and messages) is written; False if not.

        Waiting for flow control the host withholds (credit, a full socket) ends after
        ``timeout`` seconds: what the host does not take is its choice. Bytes the host
        can take (already within credit, a socket write that keeps progressing) are
        still waited for, up to ``timeout + grace`` in all."""

    @abstractmethod
    def close(self) -> None:
        """Stop writing and half-close so the host sees end of file. Does not flush."""

    def on_exit(self, code: int) -> None:
        """The process exits with ``code`` right after this returns (after ``close``). The STH
        transport writes STH's exit-code file here; other transports need nothing."""

    @property
    @abstractmethod
    def broken(self) -> bool:
        """True once the connection failed or ended; writes are dropped from then on."""


class ChannelWriter:
    """Bounded byte queue of one outbound channel in front of a transport's flow control.

    ``sink(data) -> n`` hands bytes to the transport (n may be less than len(data)
    when credit is short) and ``end()`` hands over the end of stream; both are called
    with ``lock`` held. The transport calls ``pump()`` (lock held) when credit arrives
    and ``fail()`` when the connection is gone.
    """

    def __init__(
        self,
        lock: threading.Lock,
        sink: Callable[[Any], int],
        end: Callable[[], None],
        limit: int = DEFAULT_PENDING_LIMIT,
    ) -> None:
        self._lock = lock
        self._sink = sink
        self._end = end
        self._space = threading.Condition(lock)
        self._pending: deque[Any] = deque()
        self.pending_bytes = 0
        self.limit = limit
        self.end_requested = False
        self.ended = False
        self.failed = False
        self.dropped = 0
        self.bytes = 0
        self.items = 0
        self._on_space: list[Callable[[], None]] = []
        #: Threads that must never wait here (the transport's reader): they drop instead.
        self.never_block: set[int] = set()

    # -- writing -----------------------------------------------------------
    def write(self, data: bytes, timeout: float | None = None) -> bool:
        """Queue ``data``, waiting while the queue is full. False if dropped (gone, timeout)."""
        if not data:
            return True
        nowait = threading.get_ident() in self.never_block
        with self._lock:
            while self.pending_bytes >= self.limit and not (self.failed or self.end_requested):
                if nowait or timeout == 0 or not self._space.wait(timeout):
                    self.dropped += len(data)
                    return False
            return self._queue(data)

    def offer(self, data: bytes, on_space: Callable[[], None]) -> bool:
        """Event-loop side: queue ``data`` if there is room, else remember ``on_space``
        (called once, from another thread, when there is) and return False."""
        with self._lock:
            if self.pending_bytes >= self.limit and not (self.failed or self.end_requested):
                self._on_space.append(on_space)
                return False
            self._queue(data)
            return True

    def _queue(self, data: Any) -> bool:
        if self.failed or self.end_requested:
            self.dropped += len(data)
            return False
        self.bytes += len(data)
        self.items += 1
        if not self._pending:
            taken = self._sink(data)
            if taken == len(data):
                return True
            data = memoryview(data)[taken:]
        self._pending.append(data)
        self.pending_bytes += len(data)
        return True

    def end(self) -> None:
        """End the stream once everything queued before has gone out."""
        with self._lock:
            self.end_requested = True
            self._space.notify_all()
            self.pump()

    # -- called by the transport with the lock held ---------------------------------
    def pump(self) -> None:
        """Move queued bytes into the transport as far as credit allows."""
        pending = self._pending
        while pending:
            head = pending[0]
            taken = self._sink(head)
            self.pending_bytes -= taken
            if taken < len(head):
                if taken:
                    pending[0] = memoryview(head)[taken:]
                break
            pending.popleft()
        if not pending and self.end_requested and not self.ended and not self.failed:
            self.ended = True
            self._end()
        if self.pending_bytes < self.limit:
            self._wake_writers()

    def fail(self) -> None:
        """The connection is gone: drop what is queued and release every waiter."""
        self.failed = True
        self.dropped += self.pending_bytes
        self._pending.clear()
        self.pending_bytes = 0
        self._wake_writers()

    def _wake_writers(self) -> None:
        self._space.notify_all()
        if self._on_space:
            callbacks, self._on_space = self._on_space, []
            for callback in callbacks:
                callback()

    @property
    def drained(self) -> bool:
        """Nothing queued here (the transport may still hold bytes to write)."""
        return not self._pending
