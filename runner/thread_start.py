"""The runner's own threads started by a helper thread: the main thread does not wait for them.

``threading.Thread.start`` returns once the new thread runs. Before its first PANG a runner starts
three (the transport's reader, the heartbeat, the fd pump), and each start made the main thread,
which is loading the runner and then the Sequence, wait for a new thread to be scheduled and to
take the GIL from it; on a busy machine that is a hand-over between cores each time. ``start_soon``
queues the thread instead and one helper thread (``_thread``: nobody waits for it) starts the queued
threads in order, while the main thread goes on. Measured side by side (the runner's wall time from
``runner.app``'s import to PANG, 40 rounds each, load 3-4): 41.6 -> 38.0, 36.7 -> 35.2 and
38.0 -> 34.9 ms; its CPU the same.

A thread queued here runs soon after, not at once: ``Started.wait`` is for code that must join it,
and ``wait_all`` for the runner once its first PANG is out (runner/runtime.py): from then on, as
before, the Sequence's run() finds the runner's threads running. A forked child (a warm start)
forgets what its parent had queued: those threads are the parent's.
If one cannot be started (the process is out of threads or memory) the runner cannot work: the
helper says why on the real stderr and ends the process (exit 1, as the uncaught exception in the
main thread did).
"""

from __future__ import annotations

import _thread
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

__all__ = ["Started", "start_soon", "wait_all"]


class Started:
    """Set once its thread runs (``Thread.start`` returned on the helper)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # released by the helper: a one-shot event without threading.Event's Condition

    def set(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        """True once set; False if ``timeout`` seconds passed first (None: no limit)."""
        if self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._lock.release()
            return True
        return False


_lock = _thread.allocate_lock()
_queue: list[tuple[threading.Thread, Started]] = []
#: Queued and not started yet, oldest first (``wait_all``).
_pending: list[Started] = []
_helper_running = False


def _forget_parent() -> None:
    """In a forked child: the parent's helper, its queue and its lock (perhaps held) stay behind."""
    global _lock, _helper_running
    _lock = _thread.allocate_lock()
    _queue.clear()
    _pending.clear()
    _helper_running = False


os.register_at_fork(after_in_child=_forget_parent)


def start_soon(thread: threading.Thread) -> Started:
    """Have ``thread`` started by the helper thread (made when none is running)."""
    global _helper_running
    started = Started()
    with _lock:
        _queue.append((thread, started))
        _pending.append(started)
        if _helper_running:
            return started
        _helper_running = True
    try:
        _thread.start_new_thread(_start_queued, ())
    except BaseException:
        with _lock:
            _helper_running = False
            _queue.remove((thread, started))
            _pending.remove(started)
        raise
    return started


def _start_queued() -> None:
    global _helper_running
    while True:
        with _lock:
            if not _queue:
                _helper_running = False
                return
            thread, started = _queue.pop(0)
        try:
            thread.start()
        except BaseException as exc:  # noqa: BLE001 - no caller to raise to: the runner cannot go on
            from .stdio import diagnose

            diagnose(f"runner: cannot start the thread {thread.name}: {exc!r}")
            os._exit(1)
        with _lock:
            _pending.remove(started)
        started.set()


def wait_all() -> None:
    """Return once every thread queued so far runs (the helper ends the process if one cannot)."""
    while True:
        with _lock:
            if not _pending:
                return
            oldest = _pending[0]
        oldest.wait(None)
