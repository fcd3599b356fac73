"""SIGTERM/SIGINT from the first moment of the process (docs/runner.md "Signals").

``install`` runs at start-up, before connecting, so a signal is never lost or
left to Python's defaults (a KeyboardInterrupt traceback, or nothing at all for
a container's PID 1, which ignores signals it has no handler for):

* before the handshake completes (connecting, waiting for PONG): the runner
  says so on stderr and exits ``EARLY_EXIT_CODE`` (138) at once. Nothing ran,
  nothing was produced, so there is nothing to stop or flush; the ``on_early_exit``
  hooks run first (STH mode writes its exit-code file there);
* from the handshake until the control plane takes over (``hand_over``), a
  signal is kept and delivered to it then;
* afterwards the control plane handles it (a graceful stop, exit 138; a second
  one: 137).

Why 138 before the handshake: SIGTERM/SIGINT ask the runner to stop, and 138
is what a stop ends with in every later phase; hosts report 138 as an ended
(not a failed) instance, which is right for an instance stopped on request
before it ran. 137 stays for kills (KILL, the host gone, a second signal);
a runner that really dies of a signal (SIGKILL) is reported by the host from
the process status.

Imported before PING, so it uses the interpreter's built-in ``_signal`` (always
loaded) rather than ``signal``, whose enum set-up costs about 1 ms of start-up.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs ~5 ms of start-up (it imports re); annotations only here
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeAlias

    Handler: TypeAlias = Callable[[int, Any], None]

try:
    import _signal as _sig  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - an interpreter without it
    import signal as _sig

EARLY_EXIT_CODE = 138
SIGNAL_NAMES = {int(_sig.SIGTERM): "SIGTERM", int(_sig.SIGINT): "SIGINT"}

#: Run (with the exit code) before an exit on a signal before the handshake.
on_early_exit: list[Callable[[int], None]] = []

# Python runs signal handlers on the main thread between bytecodes, and the functions below are
# called on the main thread too: no lock (one taken here could deadlock against the handler).
_handler: Handler | None = None
_handshake_done = False
_pending: list[int] = []


def install() -> None:
    """Handle SIGTERM and SIGINT from now on (main thread only)."""
    for signum in SIGNAL_NAMES:
        _sig.signal(signum, _on_signal)


def handshake_done() -> None:
    """The host knows the runner now: a signal waits for ``hand_over`` instead of exiting."""
    global _handshake_done
    _handshake_done = True


def hand_over(handler: Handler) -> None:
    """From now on ``handler`` gets the signals; one that came in the meantime is delivered now."""
    global _handler
    _handler = handler  # first: a signal from here on goes to it, not to _pending
    pending = list(_pending)
    del _pending[:len(pending)]
    for signum in pending:
        handler(signum, None)


def _on_signal(signum: int, frame: Any) -> None:
    handler = _handler
    if handler is None and _handshake_done:
        _pending.append(signum)
        return
    if handler is not None:
        handler(signum, frame)
        return
    _early_exit(signum)


def _early_exit(signum: int) -> None:
    code = EARLY_EXIT_CODE
    name = SIGNAL_NAMES.get(signum, f"signal {signum}")
    try:
        os.write(2, f"runner: {name} before the handshake completed; exiting {code} without "
                    "running the Sequence\n".encode())
    except OSError:
        pass
    for hook in on_early_exit:
        try:
            hook(code)
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass
    os._exit(code)


__all__ = ["EARLY_EXIT_CODE", "hand_over", "handshake_done", "install", "on_early_exit"]
