"""Credit-based flow control per data channel (HTTP/2-style windows).

The receiver grants the sender a window of bytes per channel; the sender spends
it with DATA payloads and the receiver hands credit back as its application
consumes data. A reader therefore never has to stop reading the connection:
MESSAGE frames (control, monitoring, events) are never flow-controlled and never
wait behind data.
"""

from __future__ import annotations

from .errors import FlowControlError


class SendWindow:
    """Bytes this side may still send on one channel."""

    __slots__ = ("available",)

    def __init__(self, initial: int) -> None:
        self.available = initial

    def grant(self, n: int) -> None:
        self.available += n


class ReceiveWindow:
    """Bytes the peer may still send on one channel, and credit owed back to it.

    Credit is returned in batches (once at least half the window was consumed)
    so a stream of small chunks does not cause a CREDIT frame per chunk.
    """

    __slots__ = ("_consumed", "remaining", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.remaining = size
        self._consumed = 0

    def receive(self, n: int, channel: int) -> None:
        if n > self.remaining:
            raise FlowControlError(
                f"peer sent {n} bytes on channel {channel} with only {self.remaining} bytes of credit"
            )
        self.remaining -= n

    def consume(self, n: int) -> int:
        """Record that the application took ``n`` bytes; return credit to send now (0 for none yet)."""
        self._consumed += n
        if self._consumed * 2 < self.size:
            return 0
        credit, self._consumed = self._consumed, 0
        self.remaining += credit
        return credit

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed by the application."""
        return self.size - self.remaining - self._consumed
