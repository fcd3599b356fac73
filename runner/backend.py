"""The runner's ContextBackend: what the Sequence's ``context`` does, as protocol messages.

``emit`` sends EVENT, ``keep_alive`` asks the StopControl (ALIVE only during a stop
that allows it), ``end()``/``destroy(err)`` send SEQUENCE_STOPPED, and
``stop_timeout_ms`` reads the stop's deadline. Called on the event loop by AppContext
(runner/sequence/context.py); nothing here waits.
"""

from __future__ import annotations

from typing import Any

from .protocol import Event, SequenceStopped
from .stopping import StopControl, error_body
from .transport.base import Transport

__all__ = ["RunnerBackend"]


class RunnerBackend:
    def __init__(self, transport: Transport, stops: StopControl) -> None:
        self._transport = transport
        self._stops = stops

    def emit(self, event_name: str, message: Any) -> None:
        try:
            self._transport.send(Event(name=str(event_name), message=message))
        except Exception as exc:  # an unencodable message is the Sequence's error, not a crash
            raise TypeError(f"event {event_name!r} cannot be sent: {exc}") from exc

    def keep_alive(self, ms: float) -> None:
        self._stops.keep_alive(ms)

    def end(self) -> None:
        self._transport.send(SequenceStopped())

    def destroy(self, error: BaseException | None) -> None:
        body = error_body(error) if isinstance(error, BaseException) else (
            {"message": str(error), "stack": ""} if error is not None else None)
        self._transport.send(SequenceStopped(error=body))

    def stop_time_remaining_ms(self) -> float | None:
        return self._stops.remaining_ms()
