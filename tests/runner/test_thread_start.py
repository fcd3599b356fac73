"""runner/thread_start.py: threads started by a helper thread, in order, without the caller waiting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
from testhost import REPO

from runner.thread_start import start_soon

pytestmark = pytest.mark.timeout(60)


class _Recorded(threading.Thread):
    """Records the order its start() is called in, and may hold the start until let go."""

    def __init__(self, name: str, order: list[str], hold: threading.Event | None = None) -> None:
        super().__init__(target=lambda: None, name=name, daemon=True)
        self.order = order
        self.hold = hold

    def start(self) -> None:
        if self.hold is not None:
            self.hold.wait()
        self.order.append(self.name)
        super().start()


def test_the_caller_does_not_wait_and_the_threads_start_in_order() -> None:
    order: list[str] = []
    hold = threading.Event()
    first = start_soon(_Recorded("first", order, hold))
    rest = [start_soon(_Recorded(name, order)) for name in ("second", "third")]
    assert order == []  # start_soon returned while the first start is held up on the helper
    assert not first.wait(0)
    hold.set()
    assert all(started.wait(30) for started in (first, *rest))
    assert order == ["first", "second", "third"]


def test_a_thread_queued_after_the_helper_finished_is_started_too() -> None:
    order: list[str] = []
    assert start_soon(_Recorded("one", order)).wait(30)
    assert start_soon(_Recorded("two", order)).wait(30)
    assert order == ["one", "two"]


def test_a_thread_that_cannot_start_ends_the_process_and_says_why() -> None:
    script = textwrap.dedent("""
        import threading, time
        from runner.thread_start import start_soon

        class Broken(threading.Thread):
            def start(self):
                raise RuntimeError("can't start new thread")

        start_soon(Broken(name="runner-broken"))
        time.sleep(30)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=str(REPO), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert "runner: cannot start the thread runner-broken: RuntimeError(\"can't start new thread\")" in proc.stderr


def test_a_forked_child_starts_its_own_threads_whatever_the_parent_had_queued() -> None:
    """A warm start forks the template: a helper busy in the parent at the fork does not exist in the
    child, and the child's threads must still start (runner/warm_template.py)."""
    script = textwrap.dedent("""
        import os, sys, threading
        from runner.thread_start import start_soon

        hold = threading.Event()

        class Held(threading.Thread):
            def start(self):
                hold.wait()
                super().start()

        start_soon(Held(target=lambda: None, daemon=True))  # the parent's helper waits in start()
        pid = os.fork()
        if pid == 0:
            started = start_soon(threading.Thread(target=lambda: None, daemon=True))
            os._exit(0 if started.wait(20) else 3)
        hold.set()
        sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=str(REPO), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
