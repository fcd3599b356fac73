"""The clock of a sans-IO deadline: one thread that acts when the deadline has passed.

The policy keeps the deadline (``StopPolicy.next_deadline``); this thread only
keeps time, so the deadline is kept while the Sequence blocks the event loop
(``while True: pass``): the thread gets the GIL every switch interval. One
thread for the life of the process, started with the first deadline, instead
of a ``threading.Timer`` per stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .stdio import diagnose

__all__ = ["DeadlineThread"]


class DeadlineThread:
    """Calls ``on_due(now)`` once ``deadline()`` (a monotonic time, or None) has passed.

    ``on_due`` must consume the deadline (the policy's ``expire``); call ``poke()`` whenever
    the deadline may have changed."""

    def __init__(self, deadline: Callable[[], float | None], on_due: Callable[[float], None], name: str) -> None:
        self._deadline = deadline
        self._on_due = on_due
        self._name = name
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def poke(self) -> None:
        """The deadline changed: look again (the thread starts on the first call)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    thread.start()
                    self._thread = thread
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # before reading the deadline: a change after this wakes the wait below
            deadline = self._deadline()
            if deadline is None:
                self._wake.wait()
                continue
            left = deadline - time.monotonic()
            if left > 0:
                self._wake.wait(left)
                continue
            try:
                self._on_due(time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - the clock must keep going whatever a handler did
                diagnose(f"runner: {self._name} failed: {exc!r}")
