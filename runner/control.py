"""The reader side of the runner: what the transport's reader thread hands over.

``ControlHandler`` is the core's ``TransportHandler``. Nothing here waits for
the event loop: a STOP starts the StopControl (its handlers run on the loop,
its deadline on its own thread), KILL and the end of the connection go to the
ExitPath, events and input reach the loop through the LoopBridge (kept while
the Sequence is still loading), STDIN goes to ``sys.stdin``'s buffer. So KILL
and the stop deadline take effect while the Sequence blocks the loop
(``while True: pass``): the reader thread gets the GIL every switch interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .exiting import ExitPath
from .protocol import Channel, Event, ExitCode, InputContentType, Kill, MonitoringRate, Stop
from .protocol.events import Message
from .stdio import Stdio, diagnose
from .stopping import StopControl

if TYPE_CHECKING:
    from .bridge import LoopBridge
    from .sequence.context import AppContext

#: Events that arrive while the Sequence is loading are kept (up to this many) for its callbacks.
MAX_EARLY_EVENTS = 1000

__all__ = ["ControlHandler"]

InputSink = Callable[[int, "list[bytes] | None"], None]


class ControlHandler:
    """TransportHandler: called from the transport's reader thread(s), never from the loop."""

    def __init__(self, stdio: Stdio | None, stops: StopControl, exits: ExitPath,
                 on_rate: Callable[[float], None]) -> None:
        self._stdio = stdio
        self._stops = stops
        self._exits = exits
        self._on_rate = on_rate
        #: INPUT_CONTENT_TYPE from the host, if it sent one (before the first IN byte).
        self.input_content_type: str | None = None
        self.in_bytes = 0
        self.in_items = 0
        self._lock = threading.Lock()
        self._events_to: tuple[LoopBridge, AppContext] | None = None
        self._input_to: InputSink | None = None
        self._early_events: list[tuple[str, Any]] = []
        self._early_input: list[tuple[int, list[bytes] | None]] = []

    # -- wiring (the loop runs) --------------------------------------------------------------
    def attach_loop(self, bridge: LoopBridge, context: AppContext) -> None:
        """Events go to the Sequence's callbacks from now on; those that came while it loaded first."""
        with self._lock:
            self._events_to = (bridge, context)
            events, self._early_events = self._early_events, []
        for name, message in events:
            bridge.call(context.dispatch_event, name, message)

    def attach_input(self, on_input: InputSink) -> None:
        """IN batches (None: END) go to ``on_input`` from now on; those that came before first."""
        with self._lock:
            self._input_to = on_input
            early, self._early_input = self._early_input, []
        for channel, batch in early:
            on_input(channel, batch)

    # -- TransportHandler ---------------------------------------------------------------------
    def on_message(self, message: Message) -> None:
        if self._exits.started:
            return  # keep reading (credit still arrives) but act on nothing else
        match message:
            case Kill():  # after a stop, the KILL that ends it: stopped (138), not killed (137)
                code = self._stops.kill_exit_code()
                reason = "stopped by the host" if code == ExitCode.STOPPED else "killed by the host"
                self._exits.exit_in_background(code, reason, kill_handlers=True)
            case Stop(timeout_ms=timeout_ms, can_keep_alive=can_keep_alive):
                self._stops.start(float(timeout_ms), bool(can_keep_alive))
            case Event(name=name, message=payload):
                self._event(name, payload)
            case MonitoringRate(rate=rate):
                self._on_rate(float(rate))
            case InputContentType(content_type=content_type):
                self.input_content_type = content_type
            # MonitoringReply: nothing to do

    def on_data(self, channel: int, chunks: list[bytes]) -> None:
        if channel == Channel.STDIN:
            if self._stdio is not None:
                self._stdio.stdin.feed(chunks)
            return
        self.in_bytes += sum(map(len, chunks))
        self.in_items += len(chunks)
        self._input(channel, chunks)

    def on_end(self, channel: int) -> None:
        if channel == Channel.STDIN:
            if self._stdio is not None:
                self._stdio.stdin.end()
            return
        self._input(channel, None)

    def on_closed(self, error: BaseException | None) -> None:
        """The reader stops (nothing left to keep reading for): the exit runs on this thread."""
        if error is None:
            reason = "the host closed the connection"
        else:
            reason = f"connection to the host failed: {type(error).__name__}: {error}"
            diagnose(f"runner: {reason}")
        self._exits.exit(int(ExitCode.KILLED), reason, kill_handlers=True, host_gone=error is None)

    def _input(self, channel: int, batch: list[bytes] | None) -> None:
        with self._lock:
            target = self._input_to
            if target is None:
                self._early_input.append((channel, batch))
                return
        target(channel, batch)

    def _event(self, name: str, message: Any) -> None:
        with self._lock:
            target = self._events_to
            if target is None:
                if len(self._early_events) < MAX_EARLY_EVENTS:
                    self._early_events.append((name, message))
                return
        bridge, context = target
        bridge.call(context.dispatch_event, name, message)
