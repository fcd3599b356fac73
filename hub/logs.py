"""The hub's own log: every record of the ``hub`` logger as one JSON line, for ``GET /log``.

Readers get the last ``REPLAY`` records, then live ones. Logging never waits for a
reader: one that falls ``QUEUE`` records behind loses the oldest and is told how many.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator

import anyio

REPLAY = 200
QUEUE = 1000

logger = logging.getLogger("hub")


class _Reader:
    def __init__(self) -> None:
        self.lines: deque[bytes] = deque(maxlen=QUEUE)
        self.dropped = 0
        self.wakeup = anyio.Event()


class LogFeed(logging.Handler):
    """A logging handler that keeps recent lines and fans them out to streaming readers."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self._recent: deque[bytes] = deque(maxlen=REPLAY)
        self._readers: set[_Reader] = set()
        self.closed = False

    def emit(self, record: logging.LogRecord) -> None:
        body = {
            "ts": int(record.created * 1000),
            "level": record.levelname if record.levelno != 5 else "TRACE",
            "from": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            body["exc"] = logging.Formatter().formatException(record.exc_info)
        line = json.dumps(body, default=str).encode() + b"\n"
        self._recent.append(line)
        for reader in self._readers:
            if len(reader.lines) == QUEUE:
                reader.dropped += 1
            reader.lines.append(line)
            reader.wakeup.set()

    def end_streams(self) -> None:
        """End every reader's stream (the hub shuts down). Not ``close()``: logging's own
        reconfiguration (uvicorn's dictConfig) closes every handler that exists."""
        self.closed = True
        for reader in self._readers:
            reader.wakeup.set()

    async def stream(self) -> AsyncIterator[bytes]:
        reader = _Reader()
        reader.lines.extend(self._recent)
        self._readers.add(reader)
        try:
            while not self.closed:
                if reader.dropped:
                    note = {"level": "WARN", "from": "hub.log", "msg": f"{reader.dropped} records dropped"}
                    reader.dropped = 0
                    yield json.dumps(note).encode() + b"\n"
                if reader.lines:
                    batch = b"".join(reader.lines)
                    reader.lines.clear()
                    yield batch
                    continue
                reader.wakeup = anyio.Event()
                await reader.wakeup.wait()
        finally:
            self._readers.discard(reader)
