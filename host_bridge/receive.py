"""The boundary where protocol events from the runner become Instance state.

The link's reader (and its timer) hand each decoded batch to ``Receiver.on_events``
synchronously, before it reads again: data goes into the per-channel buffers,
messages update the InstanceInfo, the heartbeat monitor, the event hub and the
"run() has started" signal. Nothing from runner.protocol leaves this module
except through those plain objects.

"run() has started": protocol v1 has no message for it. The first sign wins:
a heartbeat whose stats carry ``loopLagMs`` (the runner adds it once the
Sequence's event loop runs, which it starts by calling run(); docs/runner.md),
PANG with ``provides`` (sent once run() returned its result), an EVENT from the
Sequence (only run()'s context can emit), output on OUT, SEQUENCE_COMPLETED, or
ERROR with exit code 23 (run() raised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.protocol import (
    Alive,
    Channel,
    CreditAvailable,
    Data,
    Deadline,
    DeadlineExpired,
    EndOfStream,
    Error,
    Event,
    ExitCode,
    Exiting,
    Monitoring,
    Pang,
    SequenceCompleted,
    SequenceStopped,
)
from runner.protocol.connection import ConnectionEvent

from .channels import ByteChannel, keepable
from .events import EventHub, EventMessage
from .info import InstanceInfo
from .process import TailBuffer
from .stats import HeartbeatMonitor

#: Hub-facing channel names.
CHANNEL_NAMES = {
    "stdout": Channel.STDOUT,
    "stderr": Channel.STDERR,
    "output": Channel.OUT,
    "log": Channel.LOG,
}


class Receiver:
    """Everything the runner sends, kept for the application until it reads it."""

    def __init__(
        self,
        info: InstanceInfo,
        monitor: HeartbeatMonitor,
        events: EventHub,
        on_consumed: Callable[[int, int], None],
        on_credit: Callable[[int], None],
        on_running: Callable[[], None],
        on_exit_deadline: Callable[[], None],
        now: Callable[[], float],
    ) -> None:
        self.info = info
        self.monitor = monitor
        self.channels = {int(ch): ByteChannel(int(ch), on_consumed) for ch in CHANNEL_NAMES.values()}
        self.events = events
        self.stderr_tail = TailBuffer()
        self.input_content_type_sent: str | None = None  # set by the Instance once it named one
        self._on_credit = on_credit
        self._on_running = on_running
        self._on_exit_deadline = on_exit_deadline
        self._now = now

    def channel(self, name: str) -> ByteChannel:
        try:
            return self.channels[CHANNEL_NAMES[name]]
        except KeyError:
            raise ValueError(f"unknown channel {name!r}: expected one of {', '.join(CHANNEL_NAMES)}") from None

    def on_events(self, events: list[ConnectionEvent]) -> None:
        for event in events:
            if event.__class__ is Event:  # the hot message first, before the match's class tests
                self._on_event(event)
                continue
            match event:
                case Data(channel=channel, payload=payload):
                    self._on_data(channel, payload)
                case CreditAvailable(channel=channel):
                    self._on_credit(channel)
                case EndOfStream(channel=channel):
                    if channel in self.channels:
                        self.channels[channel].end()
                case DeadlineExpired(kind=Deadline.EXIT):
                    self._on_exit_deadline()
                case _:
                    self._on_message(event)

    def mark_output(self) -> None:
        """Output went past the channels (spliced into a pipe): run() has started all the same."""
        self._on_running()

    def on_data(self, number: int, payload: Any) -> None:
        """Bytes of a data channel that came outside a Data event (the rest of a spliced frame)."""
        self._on_data(number, payload)

    def _on_data(self, number: int, payload: Any) -> None:
        channel = self.channels.get(number)
        if channel is None:
            return
        if number == Channel.STDERR:
            data = bytes(payload)
            self.stderr_tail.feed(data)
            channel.feed(data)
        elif channel.discarding:
            channel.feed(payload)  # only counted, never kept
        else:
            if number == Channel.OUT:
                self._on_running()
            channel.feed(keepable(payload))

    def _on_message(self, event: ConnectionEvent) -> None:
        info = self.info
        match event:
            case Monitoring(healthy=healthy, stats=stats):
                body: dict[str, Any] = {"healthy": healthy} if stats is None else {"healthy": healthy, "stats": stats}
                beat = self.monitor.beat(body, self._now())
                if beat.loop_lag_ms is not None:
                    self._on_running()
            case Event():
                self._on_event(event)
            case Pang():
                self._on_pang(event)
            case Alive(keep_alive_ms=keep_alive_ms):
                info.keepalive_ms = float(keep_alive_ms or 0)
            case SequenceStopped(error=error):
                info.sequence_error = error
            case SequenceCompleted():
                self._on_running()
            case Error(message=message, stack=stack, exit_code=exit_code):
                info.runner_error = {"message": message, "stack": stack, "exitCode": exit_code}
                if exit_code == ExitCode.FAILED_DURING_EXECUTION:
                    self._on_running()
            case Exiting(exit_code=exit_code, reason=reason):
                info.reported_exit_code = exit_code
                info.exit_announced = True
                info.exit_reason = reason

    def _on_event(self, event: Event) -> None:
        self._on_running()
        # Sized by the body it came in (no second msgpack of the message to weigh it).
        self.events.publish(EventMessage(event.name, event.message, event.source), event.body_size or None)

    def _on_pang(self, pang: Pang) -> None:
        info = self.info
        if pang.provides is not None:
            self._on_running()
            info.provides = pang.provides
            info.output_content_type = pang.content_type or info.output_content_type
            info.output_encoding = pang.output_encoding
        if pang.requires is not None:
            info.requires = pang.requires
            if not self.input_content_type_sent:
                info.input_content_type = pang.content_type or info.input_content_type

    def close(self) -> None:
        """The connection is gone: readers drain what is buffered, then end."""
        for channel in self.channels.values():
            channel.end()
        self.events.close()
        self.monitor.close()
