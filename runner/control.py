"""The control plane: stop, kill, events and exits, handled off the event loop.

The transport's reader thread calls ``on_message``/``on_data``/``on_end``/
``on_closed`` here. Nothing in this module waits for the event loop: work that
must run on the loop (stop handlers, event callbacks) is handed over, and the
deadlines around it are kept by threads, so KILL and the stop deadline take
effect while the Sequence blocks the loop (``while True: pass``): the reader
thread gets the GIL every switch interval. Every exit goes through ``exit``:
kill handlers, flush what was produced, EXITING, os._exit, all within one exit
budget (``EXIT_BUDGET``): waiting for credit the host withholds ends there,
bytes the host can take are still written (``SENDABLE_GRACE``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .protocol import (
    Alive,
    Channel,
    Event,
    ExitCode,
    Exiting,
    InputContentType,
    Kill,
    MonitoringRate,
    SequenceStopped,
    Stop,
)
from .protocol.events import Message
from .protocol.stop import KILL_HANDLER_BUDGET, SIGNAL_STOP_TIMEOUT_MS
from .stdio import Stdio, diagnose
from .transport.base import Transport

log = logging.getLogger("runner")

#: Seconds from the start of an exit until the runner stops waiting for anything the host
#: holds up (credit it does not give, a socket it does not read). One deadline for every step.
EXIT_BUDGET = 0.5
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
MAX_EARLY_EVENTS = 1000


def error_body(error: BaseException | None) -> dict[str, str] | None:
    """``{message, stack}`` of an exception, as SEQUENCE_STOPPED/ERROR carry it."""
    if error is None:
        return None
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {"message": f"{type(error).__name__}: {error}", "stack": stack}


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


class ControlPlane:
    """TransportHandler (control thread side) and ContextBackend (Sequence side)."""

    def __init__(self, transport: Transport, stdio: Stdio | None = None) -> None:
        self.transport = transport
        self.stdio = stdio
        self.context: Any = None  # the AppContext, once created
        self.loop: Any = None  # the asyncio loop, once running
        self.bridge: Any = None  # LoopBridge into the loop (never blocks)
        self.on_input: Callable[[int, list[bytes] | None], None] | None = None  # IN batches/end
        self.on_rate: Callable[[float], None] | None = None
        self.input_content_type: str | None = None
        self.stop_requested = False
        self._lock = threading.Lock()
        self._stop_generation = 0
        self._stop_deadline: float | None = None
        self._stop_can_keepalive = False
        self._keepalive_sent = False
        self._stop_timer: threading.Timer | None = None
        self._early_events: list[tuple[str, Any]] = []
        self._early_input: list[tuple[int, list[bytes] | None]] = []
        self._exiting = threading.Lock()
        self._exit_started = False
        self._control_thread: int | None = None
        self._signals = 0
        self.in_bytes = 0
        self.in_items = 0
        #: Run on every exit, after EXITING and before the process ends (bounded by CLEANUP_BUDGET).
        self.at_exit: list[Callable[[], None]] = []

    # -- wiring --------------------------------------------------------------------
    def attach_loop(self, loop: Any, bridge: Any, context: Any) -> None:
        """The loop runs: deliver what arrived while the Sequence was loading."""
        with self._lock:
            self.loop, self.bridge, self.context = loop, bridge, context
            events, self._early_events = self._early_events, []
        for name, message in events:
            loop.call_soon_threadsafe(context.dispatch_event, name, message)

    def attach_input(self, on_input: Callable[[int, list[bytes] | None], None]) -> None:
        with self._lock:
            self.on_input = on_input
            early, self._early_input = self._early_input, []
        for channel, batch in early:
            on_input(channel, batch)

    # -- TransportHandler (reader thread) ------------------------------------------------
    def on_message(self, message: Message) -> None:
        self._control_thread = threading.get_ident()
        if self._exit_started:
            return  # keep reading (credit still arrives) but act on nothing else
        match message:
            case Kill() if self.stop_requested:  # the KILL that ends a stop: stopped, not killed
                self.exit(int(ExitCode.STOPPED), "stopped by the host", kill_handlers=True)
            case Kill():
                self.exit(int(ExitCode.KILLED), "killed by the host", kill_handlers=True)
            case Stop(timeout_ms=timeout_ms, can_keep_alive=can_keep_alive):
                self.start_stop(float(timeout_ms), bool(can_keep_alive))
            case Event(name=name, message=payload):
                self._event(name, payload)
            case MonitoringRate(rate=rate):
                if self.on_rate is not None:
                    self.on_rate(float(rate))
            case InputContentType(content_type=content_type):
                self.input_content_type = content_type
            # MonitoringReply: nothing to do

    def on_data(self, channel: int, chunks: list[bytes]) -> None:
        if channel == Channel.STDIN:
            if self.stdio is not None:
                self.stdio.stdin.feed(chunks)
            return
        self.in_bytes += sum(map(len, chunks))
        self.in_items += len(chunks)
        self._input(channel, chunks)

    def on_end(self, channel: int) -> None:
        if channel == Channel.STDIN:
            if self.stdio is not None:
                self.stdio.stdin.end()
            return
        self._input(channel, None)

    def on_closed(self, error: BaseException | None) -> None:
        self._control_thread = None  # the reader stops: nothing left to keep reading for
        if error is None:
            reason = "the host closed the connection"
        else:
            reason = f"connection to the host failed: {type(error).__name__}: {error}"
            diagnose(f"runner: {reason}")
        self.exit(int(ExitCode.KILLED), reason, kill_handlers=True, host_gone=error is None)

    def _input(self, channel: int, batch: list[bytes] | None) -> None:
        with self._lock:
            target = self.on_input
            if target is None:
                self._early_input.append((channel, batch))
                return
        target(channel, batch)

    def _event(self, name: str, message: Any) -> None:
        with self._lock:
            if self.loop is None:
                if len(self._early_events) < MAX_EARLY_EVENTS:
                    self._early_events.append((name, message))
                return
        self.loop.call_soon_threadsafe(self.context.dispatch_event, name, message)

    # -- stop ------------------------------------------------------------------------------
    def start_stop(self, timeout_ms: float, can_keepalive: bool, *, then_exit: bool = False) -> None:
        """Run the stop handlers on the loop under a deadline kept by a timer thread."""
        timeout_ms = max(0.0, timeout_ms)
        with self._lock:
            self.stop_requested = True
            self._stop_generation += 1
            generation = self._stop_generation
            self._stop_deadline = time.monotonic() + timeout_ms / 1000.0
            self._stop_can_keepalive = can_keepalive
            self._keepalive_sent = False
            self._cancel_timer()
            timer = threading.Timer(timeout_ms / 1000.0, self._stop_deadline_passed, (generation, timeout_ms))
            timer.daemon = True
            self._stop_timer = timer
            bridge, context = self.bridge, self.context
        timer.start()
        log.info("stop requested: timeout %s ms, canCallKeepalive %s", timeout_ms, can_keepalive)
        if bridge is None or context is None:  # still loading: no handler can exist yet
            self._stop_finished(generation, None, then_exit)
            return
        bridge.start(self._run_stop_handlers, generation, timeout_ms, can_keepalive, then_exit)

    async def _run_stop_handlers(self, generation: int, timeout_ms: float, can_keepalive: bool,
                                 then_exit: bool) -> None:
        error = await self.context.run_stop_handlers(timeout_ms, can_keepalive)
        self._stop_finished(generation, error, then_exit)

    def _stop_finished(self, generation: int, error: BaseException | None, then_exit: bool) -> None:
        with self._lock:
            if generation != self._stop_generation or self._stop_deadline is None:
                return  # a newer STOP took over, or the deadline already acted
            self._stop_deadline = None
            self._cancel_timer()
            kept_alive = self._keepalive_sent and self._stop_can_keepalive
        if kept_alive and not then_exit:
            log.info("stop handlers finished; the Sequence asked to keep running")
            return
        self.transport.send(SequenceStopped(error=error_body(error)))
        log.info("stop handlers finished%s; waiting for KILL", f" with {error!r}" if error else "")
        if then_exit:
            self.exit(int(ExitCode.STOPPED), "stopped by a signal")

    def _stop_deadline_passed(self, generation: int, timeout_ms: float) -> None:
        with self._lock:
            if generation != self._stop_generation or self._stop_deadline is None:
                return
            self._stop_deadline = None
        message = f"stop handlers did not finish within the stop timeout of {timeout_ms:g} ms"
        self.transport.send(SequenceStopped(error={"message": message, "stack": ""}))
        self.exit(int(ExitCode.STOPPED), message, kill_handlers=True)

    def stop_overtaken(self) -> None:
        """run() completed: a stop still in progress no longer needs its deadline."""
        with self._lock:
            self._stop_deadline = None
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None

    # -- signals (main thread, between bytecodes) ----------------------------------------------
    def on_signal(self, signum: int, _frame: Any = None) -> None:
        """SIGTERM/SIGINT: first a graceful stop then exit 138; a second one kills (137)."""
        self._signals += 1
        if self._signals == 1:
            threading.Thread(target=self.start_stop, args=(SIGNAL_STOP_TIMEOUT_MS, False),
                             kwargs={"then_exit": True}, name="runner-signal", daemon=True).start()
        else:
            threading.Thread(target=self.exit, args=(int(ExitCode.KILLED), f"signal {signum}"),
                             kwargs={"kill_handlers": True}, name="runner-signal", daemon=True).start()

    # -- ContextBackend (called by AppContext on the loop) -------------------------------------
    def emit(self, event_name: str, message: Any) -> None:
        try:
            self.transport.send(Event(name=str(event_name), message=message))
        except Exception as exc:  # an unencodable message is the Sequence's error, not a crash
            raise TypeError(f"event {event_name!r} cannot be sent: {exc}") from exc

    def keep_alive(self, ms: float) -> None:
        with self._lock:
            in_stop = self._stop_deadline is not None
            allowed = in_stop and self._stop_can_keepalive
            if allowed:
                self._keepalive_sent = True
                self._stop_deadline = None  # the host cancels its kill; so do we
                self._cancel_timer()
        if allowed:
            self.transport.send(Alive(keep_alive_ms=float(ms or 0)))
        elif in_stop:
            log.info("keep_alive(%s) ignored: this stop does not allow keepalive", ms)
        else:
            log.debug("keep_alive(%s) outside a stop has no effect", ms)

    def end(self) -> None:
        self.transport.send(SequenceStopped())

    def destroy(self, error: BaseException | None) -> None:
        body = error_body(error) if isinstance(error, BaseException) else (
            {"message": str(error), "stack": ""} if error is not None else None)
        self.transport.send(SequenceStopped(error=body))

    def stop_time_remaining_ms(self) -> float | None:
        deadline = self._stop_deadline
        if deadline is None:
            return None
        return max(0.0, (deadline - time.monotonic()) * 1000.0)

    # -- exit --------------------------------------------------------------------------------------
    def exit(self, code: int, reason: str, *, kill_handlers: bool = False, host_gone: bool = False) -> None:
        """Flush what the Sequence produced, send EXITING and end the process. Never returns,
        except on the transport's reader thread, which must go on reading meanwhile; a
        second caller waits here while the first one exits."""
        if not self._exiting.acquire(blocking=False):
            if threading.get_ident() == self._control_thread:
                return
            threading.Event().wait()
        self._exit_started = True
        if threading.get_ident() == self._control_thread:
            # Exit on another thread so the reader goes on reading: the host's CREDIT is what
            # lets the output produced so far go out before EXITING.
            threading.Thread(target=self._exit, args=(code, reason, kill_handlers, host_gone),
                             name="runner-exit").start()
            return
        self._exit(code, reason, kill_handlers, host_gone)

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
        if kill_handlers and self.context is not None:
            budget = min(KILL_HANDLER_BUDGET, left())
            bounded(lambda: self.context.run_kill_handlers(budget), budget + 0.02, "runner-kill-handlers")
        # Every descendant ends with the runner (setsid'd ones too: they were adopted), before the
        # stdio flush so pipes they hold open close.
        bounded(self._end_descendants, max(left(), DESCENDANTS_BUDGET), "runner-descendants")
        transport = self.transport
        if not host_gone and not transport.broken:
            if self.stdio is not None:
                stdio = self.stdio
                bounded(lambda: stdio.flush(left()), left(), "runner-flush")
            for channel in (Channel.OUT, Channel.STDOUT, Channel.STDERR, Channel.LOG):
                transport.writer(channel).end()
            # Everything produced goes out before EXITING, as far as the host's credit allows:
            # waiting for credit ends at the deadline, sendable bytes are still written.
            if not transport.flush(left(), SENDABLE_GRACE):
                diagnose(f"runner: output the host did not take within {EXIT_BUDGET:g} s was dropped "
                         f"before exit {code}")
            transport.send(Exiting(exit_code=code, reason=reason))
            transport.flush(left(), SENDABLE_GRACE)
        transport.close()
        bounded(lambda: transport.on_exit(code), max(left(), 0.5), "runner-on-exit")
        if self.at_exit:
            hooks = list(self.at_exit)
            if not bounded(lambda: [hook() for hook in hooks], CLEANUP_BUDGET, "runner-cleanup"):
                diagnose(f"runner: clean-up did not finish within {CLEANUP_BUDGET:g} s; exiting anyway")
        os._exit(code)
