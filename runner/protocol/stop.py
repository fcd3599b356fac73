"""The stop, keepalive, kill and exit policy, in one place (docs/protocol.md §5), sans-IO.

``StopPolicy`` is the runner's side of a stop, used by the runner process
(runner/stopping.py) and by ``run --inline`` (runner/cli/inline.py): what a
stop's deadline is, what keepalive does, what the end of the stop handlers
means, which exit code a KILL gives. The host's side (KILL at the stop
deadline, the exit grace after it) is the lifecycle table's
(``Lifecycle``/``Connection.next_deadline``). Time enters as ``now`` (seconds
of any monotonic clock); whoever holds a policy keeps the clock, calls
``expire(now)`` once ``next_deadline()`` has passed, and serialises its calls.

The numbers below are the only definition of each grace period: the runner,
``run --inline``, the STH translation, host_bridge's options and the STH test
host take them from here.
"""

from __future__ import annotations

import enum

from .constants import ExitCode

#: A STOP without a timeout gives the stop handlers this long before KILL (STH's default).
DEFAULT_STOP_TIMEOUT_MS = 7000.0
#: Seconds a host waits for the runner to exit after SEQUENCE_STOPPED/COMPLETED or KILL before
#: escalating (STH's ``runnerExitDelay``).
DEFAULT_EXIT_GRACE = 15.0
#: A stop the runner starts itself on SIGTERM/SIGINT gives the stop handlers this long (the CLI's
#: ``--stop-timeout`` default for Ctrl-C is the same number: tests/e2e/test_cli_layout.py checks).
SIGNAL_STOP_TIMEOUT_MS = 5000.0
#: Seconds the kill handlers get on KILL (their whole budget, not each).
KILL_HANDLER_BUDGET = 0.1
#: Seconds from the start of the runner's exit until it stops waiting for anything the host holds
#: up (credit it does not give, a socket it does not read): one deadline for every step.
EXIT_BUDGET = 0.5
#: The most a Sequence's ``context.exit_timeout`` may delay the exit after SEQUENCE_COMPLETED.
MAX_EXIT_TIMEOUT_MS = 10_000
#: ``context.exit_timeout`` in STH mode unless set (docs/sth-compat.md §3): well below STH's
#: 15 s exit watchdog; protocol v1 exits at once (0).
STH_EXIT_TIMEOUT_MS = 1000


def exit_delay_ms(exit_timeout: float | None) -> int:
    """Milliseconds between SEQUENCE_COMPLETED and the exit: the Sequence's ``exit_timeout``
    (None counts as 0) within 0..MAX_EXIT_TIMEOUT_MS."""
    return max(0, min(int(exit_timeout or 0), MAX_EXIT_TIMEOUT_MS))


class KeepAlive(enum.Enum):
    """What a Sequence's ``keep_alive()`` does now."""

    SEND = "send"  # allowed: ALIVE goes out, this stop has no deadline any more
    NOT_ALLOWED = "not allowed"  # a stop is in progress that does not allow keepalive: ignored
    NO_STOP = "no stop"  # outside a stop keepalive means nothing


class StopPolicy:
    """One stop at a time: its deadline, keepalive, and what the end of its handlers means.

    A stop begins (``begin``: STOP from the host, or a signal) with a timeout and whether
    keepalive is allowed, and the Sequence's stop handlers run. Then the first of these decides:

    * a handler asks for keepalive and the stop allows it (``keep_alive`` -> SEND): ALIVE goes
      out and the stop has no deadline any more; the Sequence keeps running;
    * the handlers finish (``handlers_finished`` -> True): SEQUENCE_STOPPED with their error, then
      the runner waits for KILL;
    * the deadline passes (``expire`` -> the stop's timeout): SEQUENCE_STOPPED with an error saying
      so, and the runner exits 138;
    * run() completes (``completed``): the stop needs no deadline; SEQUENCE_COMPLETED goes out if the
      lifecycle still allows it.

    A newer stop replaces an older one: the older handlers finishing then decide nothing. Once
    any stop began, KILL ends the runner with 138 (stopped), else 137 (killed).
    """

    def __init__(self) -> None:
        #: A stop began at some point (even if it has been kept alive since).
        self.stop_requested = False
        self._stop_id = 0
        self._deadline: float | None = None
        self._timeout_ms = 0.0
        self._can_keep_alive = False

    def begin(self, timeout_ms: float, can_keep_alive: bool, now: float) -> int:
        """A stop begins now; returns its id for ``handlers_finished``. A negative timeout is 0."""
        self.stop_requested = True
        self._stop_id += 1
        self._timeout_ms = max(0.0, float(timeout_ms))
        self._deadline = now + self._timeout_ms / 1000.0
        self._can_keep_alive = can_keep_alive
        return self._stop_id

    def keep_alive(self) -> KeepAlive:
        """The Sequence asked to keep running."""
        if self._deadline is None:
            return KeepAlive.NO_STOP
        if not self._can_keep_alive:
            return KeepAlive.NOT_ALLOWED
        self._deadline = None  # the host cancels its KILL; so does the runner
        return KeepAlive.SEND

    def handlers_finished(self, stop_id: int) -> bool:
        """The handlers of stop ``stop_id`` finished: True if that ends the stop (SEQUENCE_STOPPED
        goes out); False if it decides nothing (a newer stop, the deadline passed, keepalive, or
        run() completed first)."""
        if stop_id != self._stop_id or self._deadline is None:
            return False
        self._deadline = None
        return True

    def completed(self) -> None:
        """run() completed: a stop still in progress no longer needs its deadline."""
        self._deadline = None

    def next_deadline(self) -> float | None:
        return self._deadline

    def expire(self, now: float) -> float | None:
        """The stop's timeout in ms if its deadline has passed by ``now`` (consumed), else None."""
        if self._deadline is None or now < self._deadline:
            return None
        self._deadline = None
        return self._timeout_ms

    def remaining_ms(self, now: float) -> float | None:
        """Milliseconds left before the stop's deadline; None when no stop is pending."""
        deadline = self._deadline
        return None if deadline is None else max(0.0, (deadline - now) * 1000.0)

    def kill_exit_code(self) -> int:
        """The exit code KILL gives now: 138 after a stop, else 137."""
        return int(ExitCode.STOPPED if self.stop_requested else ExitCode.KILLED)
