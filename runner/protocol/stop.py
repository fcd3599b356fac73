"""The stop, keepalive, kill and exit policy's numbers, each defined once (docs/protocol.md §5).

Both ends and every transport take their grace periods from here: the runner's
control plane, ``run --inline``, the STH translation, host_bridge's options and
the STH test host.
"""

from __future__ import annotations

#: A STOP without a timeout gives the stop handlers this long before KILL (STH's default).
DEFAULT_STOP_TIMEOUT_MS = 7000.0
#: Seconds a host waits for the runner to exit after SEQUENCE_STOPPED/COMPLETED or KILL before
#: escalating (STH's ``runnerExitDelay``).
DEFAULT_EXIT_GRACE = 15.0
#: A stop the runner starts itself on SIGTERM/SIGINT (and the CLI on Ctrl-C) gives the stop
#: handlers this long.
SIGNAL_STOP_TIMEOUT_MS = 5000.0
#: Seconds the kill handlers get on KILL (their whole budget, not each).
KILL_HANDLER_BUDGET = 0.1
#: The most a Sequence's ``context.exit_timeout`` may delay the exit after SEQUENCE_COMPLETED.
MAX_EXIT_TIMEOUT_MS = 10_000


def exit_delay_ms(exit_timeout: float | None) -> int:
    """Milliseconds between SEQUENCE_COMPLETED and the exit: the Sequence's ``exit_timeout``
    (None counts as 0) within 0..MAX_EXIT_TIMEOUT_MS."""
    return max(0, min(int(exit_timeout or 0), MAX_EXIT_TIMEOUT_MS))
