"""The Sequence's output to this process's stdout, written on a thread of its own.

A write to a pipe blocks while the reader is behind; on the event loop it would stop
everything else meanwhile (the input being fed, the runner's frames being read), so the
two directions of a bulk run would take turns instead of overlapping. The thread writes
what the loop hands it, in order, up to ``MAX_QUEUED`` chunks ahead (each at most the
1 MiB host_bridge joins): beyond that the loop waits, as a slow reader should make it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

import anyio

MAX_QUEUED = 8


class StdoutWriter:
    def __init__(self, fd: int, on_gone: Callable[[], None]) -> None:
        self.fd = fd
        self.broken = False  # the reader went away (EPIPE) or fd is unusable: output is dropped
        self._on_gone = on_gone
        self._lock = threading.Lock()
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED)
        #: Chunks handed to write() and not written yet (the loop adds, the thread subtracts).
        self._unwritten = 0
        self._thread = threading.Thread(target=self._run, name="runner-cli-stdout", daemon=True)
        self._thread.start()

    def idle(self) -> bool:
        """Everything handed over is written: bytes put into fd now come after all of it."""
        return self._unwritten == 0

    async def write(self, chunk: bytes) -> None:
        with self._lock:
            self._unwritten += 1
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:
            await anyio.to_thread.run_sync(self._queue.put, chunk)

    async def close(self) -> None:
        """Everything handed over is written (or dropped after EPIPE) when this returns."""
        await anyio.to_thread.run_sync(self._finish)

    def _finish(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if not self.broken:
                self._write_all(chunk)
            with self._lock:
                self._unwritten -= 1

    def _write_all(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:  # EPIPE (`| head`), or fd 1 is gone: drop the rest quietly
            self.broken = True
            self._on_gone()
