"""Transitional: the code-and-body Connection API of before typed events.

``runner.protocol.Connection`` is this class until every consumer uses
``runner.protocol.connection.Connection`` (``send(event)``/``next_event()``);
then this module goes. Nothing new may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import codec, events
from .connection import Connection
from .constants import PROTOCOL_VERSION, Code
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    CreditAvailable,
    Data,
    DeadlineExpired,
    EndOfStream,
    Pong,
    Reject,
)
from .framer import IMPLEMENTATION


@dataclass(slots=True)
class Message:
    """Deprecated: a message as its code and body map (the message classes in events.py replace it)."""

    code: int
    body: dict[str, Any]


Event = Data | EndOfStream | Message | CreditAvailable | ConnectionClosed | DeadlineExpired


class LegacyConnection(Connection):
    """Connection with the old methods: lists of events, ``err.frames``, codes and body maps."""

    def receive_data(  # type: ignore[override]
        self, data: bytes | bytearray | memoryview, now: float = 0.0
    ) -> list[Event]:
        """Deprecated: the events these bytes complete; a protocol error carries the earlier ones in
        ``.frames``."""
        super().receive_data(data, now)
        return self._drain()

    def handle_timer(self, now: float) -> list[Event]:  # type: ignore[override]
        super().handle_timer(now)
        return self._drain()

    def _drain(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                event = self.next_event()
            except RemoteProtocolError as err:
                err.frames = out
                raise
            if event is NEED_DATA:
                return out
            if isinstance(event, events.Message):
                out.append(Message(event.code, codec.to_body(event)))
            else:
                out.append(event)

    def _hello_body(self) -> dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "impl": IMPLEMENTATION, "maxFrameSize": self.max_frame_size,
                "window": self.window}

    def send_ping(self, instance_id: str, token: str = "", **extra: Any) -> None:
        """Deprecated: ``send(Ping(...))``."""
        body = {**extra, **self._hello_body(), "instanceId": instance_id, "token": token}
        self.send(codec.from_body(Code.PING, body, LocalProtocolError))

    def accept(self, now: float = 0.0, **fields: Any) -> None:
        """Deprecated: ``send(Pong(...))``."""
        event = codec.from_body(Code.PONG, {**fields, **self._hello_body()}, LocalProtocolError)
        assert isinstance(event, Pong)
        self.send(event, now)

    def reject(self, reason: str, now: float = 0.0) -> None:
        """Deprecated: ``send(Reject(reason=...))``."""
        self.send(Reject(reason=reason), now)

    def send_message(self, code: int, body: Mapping[str, Any] | None = None, now: float = 0.0) -> None:
        """Deprecated: ``send(event)``."""
        if code in (Code.PING, Code.PONG, Code.REJECT):
            raise LocalProtocolError("use send_ping/accept/reject for the handshake")
        self.send(codec.from_body(code, dict(body) if body else {}, LocalProtocolError), now)
