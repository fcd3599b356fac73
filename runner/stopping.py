"""The runner's stops: the Sequence's stop handlers under the StopPolicy's deadline.

A stop begins with STOP from the host (``ControlHandler``) or with SIGTERM/SIGINT
(``on_signal``: a stop that ends in exit 138; a second signal exits 137). The stop
handlers run on the event loop (handed over through the LoopBridge, never waited
for); the policy (runner/protocol/stop.py) decides what their end, a keepalive and
the deadline mean, and one ``DeadlineThread`` keeps the deadline while the
Sequence may be blocking the loop. Reports go to the host as ALIVE or
SEQUENCE_STOPPED; a passed deadline exits 138 through the ExitPath.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from .deadline_thread import DeadlineThread
from .exiting import ExitPath
from .protocol import Alive, ExitCode, SequenceStopped
from .protocol.stop import SIGNAL_STOP_TIMEOUT_MS, KeepAlive, StopPolicy
from .transport.base import Transport

if TYPE_CHECKING:
    from .bridge import LoopBridge
    from .sequence.context import AppContext

log = logging.getLogger("runner")

__all__ = ["StopControl", "error_body"]


def error_body(error: BaseException | None) -> dict[str, str] | None:
    """``{message, stack}`` of an exception, as SEQUENCE_STOPPED/ERROR carry it."""
    if error is None:
        return None
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {"message": f"{type(error).__name__}: {error}", "stack": stack}


class StopControl:
    """Owns the runner's StopPolicy; every call is serialised by one lock."""

    def __init__(self, transport: Transport, exits: ExitPath) -> None:
        self._transport = transport
        self._exits = exits
        self._policy = StopPolicy()
        self._lock = threading.Lock()
        self._clock = DeadlineThread(self._next_deadline, self._deadline_passed, "runner-stop-deadline")
        self._loop: tuple[LoopBridge, AppContext] | None = None
        self._signals = 0

    def attach(self, bridge: LoopBridge, context: AppContext) -> None:
        """The loop runs: stop handlers can run from now on (before, a stop ends at once)."""
        with self._lock:
            self._loop = (bridge, context)

    @property
    def stop_requested(self) -> bool:
        return self._policy.stop_requested

    def kill_exit_code(self) -> int:
        return self._policy.kill_exit_code()

    # -- a stop ------------------------------------------------------------------------------
    def start(self, timeout_ms: float, can_keep_alive: bool, *, then_exit: bool = False) -> None:
        """Run the stop handlers on the loop under the policy's deadline; ``then_exit``: exit 138
        once they finish (a stop asked for by a signal)."""
        with self._lock:
            stop_id = self._policy.begin(timeout_ms, can_keep_alive, time.monotonic())
            loop = self._loop
        self._clock.poke()
        log.info("stop requested: timeout %s ms, canCallKeepalive %s", max(0.0, timeout_ms), can_keep_alive)
        if loop is None:  # still loading: no handler can exist yet
            self._handlers_finished(stop_id, None, then_exit)
            return
        bridge, context = loop
        bridge.start(self._run_handlers, context, stop_id, timeout_ms, can_keep_alive, then_exit)

    async def _run_handlers(self, context: AppContext, stop_id: int, timeout_ms: float, can_keep_alive: bool,
                            then_exit: bool) -> None:
        error = await context.run_stop_handlers(max(0.0, timeout_ms), can_keep_alive)
        self._handlers_finished(stop_id, error, then_exit)

    def _handlers_finished(self, stop_id: int, error: BaseException | None, then_exit: bool) -> None:
        with self._lock:
            ends_the_stop = self._policy.handlers_finished(stop_id)
        if not ends_the_stop:
            return  # a newer stop took over, keepalive, or the deadline already acted
        self._transport.send(SequenceStopped(error=error_body(error)))
        log.info("stop handlers finished%s; waiting for KILL", f" with {error!r}" if error else "")
        if then_exit:
            self._exits.exit(int(ExitCode.STOPPED), "stopped by a signal")

    def _next_deadline(self) -> float | None:
        with self._lock:
            return self._policy.next_deadline()

    def _deadline_passed(self, now: float) -> None:
        with self._lock:
            timeout_ms = self._policy.expire(now)
        if timeout_ms is None:
            return
        message = f"stop handlers did not finish within the stop timeout of {timeout_ms:g} ms"
        self._transport.send(SequenceStopped(error={"message": message, "stack": ""}))
        self._exits.exit(int(ExitCode.STOPPED), message, kill_handlers=True)

    def completed(self) -> None:
        """run() completed: a stop still in progress no longer needs its deadline."""
        with self._lock:
            self._policy.completed()

    # -- the Sequence's side (AppContext, through RunnerBackend) -----------------------------------
    def keep_alive(self, ms: float) -> None:
        with self._lock:
            verdict = self._policy.keep_alive()
        if verdict is KeepAlive.SEND:
            self._transport.send(Alive(keep_alive_ms=float(ms or 0)))
        elif verdict is KeepAlive.NOT_ALLOWED:
            log.info("keep_alive(%s) ignored: this stop does not allow keepalive", ms)
        else:
            log.debug("keep_alive(%s) outside a stop has no effect", ms)

    def remaining_ms(self) -> float | None:
        with self._lock:
            return self._policy.remaining_ms(time.monotonic())

    # -- signals (main thread, between bytecodes) -------------------------------------------------
    def on_signal(self, signum: int, _frame: Any = None) -> None:
        """SIGTERM/SIGINT: first a graceful stop then exit 138; a second one kills (137)."""
        self._signals += 1
        if self._signals == 1:
            threading.Thread(target=self.start, args=(SIGNAL_STOP_TIMEOUT_MS, False),
                             kwargs={"then_exit": True}, name="runner-signal", daemon=True).start()
        else:
            threading.Thread(target=self._exits.exit, args=(int(ExitCode.KILLED), f"signal {signum}"),
                             kwargs={"kill_handlers": True}, name="runner-signal", daemon=True).start()
