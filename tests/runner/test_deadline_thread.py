"""DeadlineThread (runner/deadline_thread.py): one thread keeps a sans-IO deadline, however it moves."""

from __future__ import annotations

import threading
import time

from runner.deadline_thread import DeadlineThread


class Clocked:
    def __init__(self) -> None:
        self.deadline: float | None = None
        self.fired: list[float] = []
        self.done = threading.Event()

    def expire(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.fired.append(now)
            self.done.set()


def test_it_fires_once_at_the_deadline_and_follows_a_moved_one() -> None:
    state = Clocked()
    clock = DeadlineThread(lambda: state.deadline, state.expire, "test-deadline")
    state.deadline = time.monotonic() + 30  # far away ...
    clock.poke()
    time.sleep(0.05)
    assert state.fired == []
    due = state.deadline = time.monotonic() + 0.1  # ... then moved earlier
    clock.poke()
    assert state.done.wait(5)
    assert len(state.fired) == 1 and state.fired[0] >= due
    state.done.clear()
    state.deadline = time.monotonic() + 0.05  # the same thread keeps the next one
    clock.poke()
    assert state.done.wait(5)
    assert len(state.fired) == 2


def test_a_cancelled_deadline_does_not_fire() -> None:
    state = Clocked()
    clock = DeadlineThread(lambda: state.deadline, state.expire, "test-deadline")
    state.deadline = time.monotonic() + 0.1
    clock.poke()
    state.deadline = None
    clock.poke()
    assert not state.done.wait(0.3)
