"""Every exit of the runner process, on one path (docs/runner.md "Every exit is one path").

Kill handlers (bounded), the runner's descendants ended, what the Sequence
produced flushed, EXITING, the transport closed, clean-up hooks, ``os._exit``:
all within one exit budget (``EXIT_BUDGET``). Waiting for credit the host
withholds ends at the budget; bytes the host can take are still written
(``SENDABLE_GRACE``). Nothing here waits for the event loop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .protocol import Channel, ExitCode, Exiting
from .protocol.stop import EXIT_BUDGET, KILL_HANDLER_BUDGET
from .stdio import Stdio, diagnose
from .transport.base import Transport

log = logging.getLogger("runner")

#: Beyond the budget, output that the host can take (within credit, being written) is still
#: written for at most this long: never exit with sendable output buffered.
SENDABLE_GRACE = 2.0
#: GIL switch interval while exiting: each hand-over between the exit's threads otherwise waits
#: up to 5 ms for a main thread that spins in bytecode.
EXIT_SWITCH_INTERVAL = 0.0005
#: Seconds the clean-up after EXITING (removing an unpacked package) may take before the process
#: ends anyway; what is left is in a predictable place a hub can remove (docs/runner.md "Packages").
CLEANUP_BUDGET = 5.0
#: At least this long for ending the runner's descendants (SIGTERM, 0.1 s, SIGKILL, 0.05 s).
DESCENDANTS_BUDGET = 0.3

__all__ = ["CLEANUP_BUDGET", "EXIT_BUDGET", "ExitPath", "bounded"]


def bounded(fn: Callable[[], Any], timeout: float, name: str) -> bool:
    """Run ``fn`` on a helper thread, wait at most ``timeout``; False if it did not finish."""
    thread = threading.Thread(target=_quiet(fn), name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def _quiet(fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - best effort on the way out
            diagnose(f"runner: {fn!r} failed while exiting: {exc!r}")

    return call


class ExitPath:
    """The one way out of the runner process."""

    def __init__(self, transport: Transport, stdio: Stdio | None) -> None:
        self._transport = transport
        self._stdio = stdio
        self._kill_handlers: Callable[[float], None] | None = None
        self._exiting = threading.Lock()
        #: An exit has begun: the control side acts on nothing more.
        self.started = False
        #: Run on every exit, after EXITING and before the process ends (bounded by CLEANUP_BUDGET).
        self.at_exit: list[Callable[[], None]] = []

    def use_kill_handlers(self, run_kill_handlers: Callable[[float], None]) -> None:
        """The Sequence's kill handlers (``AppContext.run_kill_handlers``), once it has a context."""
        self._kill_handlers = run_kill_handlers

    def exit(self, code: int, reason: str, *, kill_handlers: bool = False, host_gone: bool = False) -> None:
        """Flush what the Sequence produced, send EXITING and end the process: never returns.
        A second caller waits here while the first one exits."""
        if not self._begin():
            threading.Event().wait()
        self._exit(code, reason, kill_handlers, host_gone)

    def exit_in_background(self, code: int, reason: str, *, kill_handlers: bool = False) -> None:
        """``exit`` on its own thread, returning at once: for the transport's reader, which must go on
        reading meanwhile (the host's CREDIT is what lets the output produced so far go out before
        EXITING). Nothing happens if an exit has begun already."""
        if self._begin():
            threading.Thread(target=self._exit, args=(code, reason, kill_handlers, False),
                             name="runner-exit").start()

    def _begin(self) -> bool:
        if not self._exiting.acquire(blocking=False):
            return False
        self.started = True
        return True

    @staticmethod
    def _end_descendants() -> None:
        from .reaper import end_descendants

        survivors = end_descendants()
        if survivors:
            text = f"{len(survivors)} descendant process(es) still running after SIGKILL: {survivors}"
            log.warning("%s", text)
            diagnose(f"runner: {text}")

    def _exit(self, code: int, reason: str, kill_handlers: bool, host_gone: bool) -> None:
        deadline = time.monotonic() + EXIT_BUDGET

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            sys.setswitchinterval(EXIT_SWITCH_INTERVAL)
        except ValueError:  # pragma: no cover - a positive interval is always accepted
            pass
        log.info("exiting with %s: %s", code, reason)
        if code not in (0, int(ExitCode.KILLED), int(ExitCode.STOPPED)):
            diagnose(f"runner: {reason}")  # the host's crash log is the process's real stderr
        run_kill_handlers = self._kill_handlers
        if kill_handlers and run_kill_handlers is not None:
            budget = min(KILL_HANDLER_BUDGET, left())
            bounded(lambda: run_kill_handlers(budget), budget + 0.02, "runner-kill-handlers")
        # Every descendant ends with the runner (setsid'd ones too: they were adopted), before the
        # stdio flush so pipes they hold open close.
        bounded(self._end_descendants, max(left(), DESCENDANTS_BUDGET), "runner-descendants")
        transport = self._transport
        if not host_gone and not transport.broken:
            self._flush(code, reason, left)
        transport.close()
        if not bounded(lambda: transport.on_exit(code), max(left(), 0.5), "runner-on-exit"):
            # The helper thread did not get to run in time (a busy Sequence thread): the exit-code
            # file (STH) must still be written, so do it here, where we hold the GIL.
            _quiet(lambda: transport.on_exit(code))()
        if self.at_exit:
            hooks = list(self.at_exit)
            if not bounded(lambda: [hook() for hook in hooks], CLEANUP_BUDGET, "runner-cleanup"):
                diagnose(f"runner: clean-up did not finish within {CLEANUP_BUDGET:g} s; exiting anyway")
        os._exit(code)

    def _flush(self, code: int, reason: str, left: Callable[[], float]) -> None:
        """Everything produced goes out before EXITING, as far as the host's credit allows: waiting
        for credit ends at the deadline, sendable bytes are still written."""
        transport = self._transport
        if self._stdio is not None:
            stdio = self._stdio
            bounded(lambda: stdio.flush(left()), left(), "runner-flush")
        for channel in (Channel.OUT, Channel.STDOUT, Channel.STDERR, Channel.LOG):
            transport.writer(channel).end()
        if not transport.flush(left(), SENDABLE_GRACE):
            diagnose(f"runner: output the host did not take within {EXIT_BUDGET:g} s was dropped "
                     f"before exit {code}")
        transport.send(Exiting(exit_code=code, reason=reason))
        transport.flush(left(), SENDABLE_GRACE)
