"""Protocol v1 of sequence-runner, sans-IO: imports only the standard library and msgpack.

See docs/protocol.md for the byte-level specification. ``Connection`` takes bytes
and gives events (``receive_data``/``next_event``), takes messages and gives bytes
(``send``/``data_to_send``); every message is a class in ``events``.

Importing the package imports none of its modules: a name is imported from its module when
first asked for (PEP 562). So ``runner.protocol.framer`` or ``.constants`` alone, for the
runner's PING (runner/hello.py) or a hub, does not pay for the messages and the Connection.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .connection import Connection, ConnectionEvent
    from .constants import (
        COMPLETED_EXIT_CODES,
        DEFAULT_MAX_FRAME_SIZE,
        DEFAULT_WINDOW,
        PROTOCOL_VERSION,
        Channel,
        Code,
        ExitCode,
        Role,
        Status,
        status_for_exit_code,
    )
    from .errors import (
        FlowControlError,
        FrameTooLarge,
        HandshakeError,
        LocalProtocolError,
        MalformedFrame,
        ProtocolError,
        RemoteProtocolError,
        UnknownChannel,
        UnknownMessage,
    )
    from .events import (
        NEED_DATA,
        Alive,
        ConnectionClosed,
        CreditAvailable,
        Data,
        Deadline,
        DeadlineExpired,
        EndOfStream,
        Error,
        Event,
        Exiting,
        InputContentType,
        Kill,
        Message,
        Monitoring,
        MonitoringRate,
        MonitoringReply,
        Pang,
        Ping,
        Pong,
        Reject,
        SequenceCompleted,
        SequenceStopped,
        Stop,
    )
    from .framer import IMPLEMENTATION as FRAMER_IMPLEMENTATION
    from .lifecycle import State

#: name -> (module, name in it)
_WHERE: dict[str, tuple[str, str]] = {
    "Connection": ("connection", "Connection"),
    "ConnectionEvent": ("connection", "ConnectionEvent"),
    "COMPLETED_EXIT_CODES": ("constants", "COMPLETED_EXIT_CODES"),
    "DEFAULT_MAX_FRAME_SIZE": ("constants", "DEFAULT_MAX_FRAME_SIZE"),
    "DEFAULT_WINDOW": ("constants", "DEFAULT_WINDOW"),
    "PROTOCOL_VERSION": ("constants", "PROTOCOL_VERSION"),
    "Channel": ("constants", "Channel"),
    "Code": ("constants", "Code"),
    "ExitCode": ("constants", "ExitCode"),
    "Role": ("constants", "Role"),
    "Status": ("constants", "Status"),
    "status_for_exit_code": ("constants", "status_for_exit_code"),
    "FlowControlError": ("errors", "FlowControlError"),
    "FrameTooLarge": ("errors", "FrameTooLarge"),
    "HandshakeError": ("errors", "HandshakeError"),
    "LocalProtocolError": ("errors", "LocalProtocolError"),
    "MalformedFrame": ("errors", "MalformedFrame"),
    "ProtocolError": ("errors", "ProtocolError"),
    "RemoteProtocolError": ("errors", "RemoteProtocolError"),
    "UnknownChannel": ("errors", "UnknownChannel"),
    "UnknownMessage": ("errors", "UnknownMessage"),
    "NEED_DATA": ("events", "NEED_DATA"),
    "Alive": ("events", "Alive"),
    "ConnectionClosed": ("events", "ConnectionClosed"),
    "CreditAvailable": ("events", "CreditAvailable"),
    "Data": ("events", "Data"),
    "Deadline": ("events", "Deadline"),
    "DeadlineExpired": ("events", "DeadlineExpired"),
    "EndOfStream": ("events", "EndOfStream"),
    "Error": ("events", "Error"),
    "Event": ("events", "Event"),
    "Exiting": ("events", "Exiting"),
    "InputContentType": ("events", "InputContentType"),
    "Kill": ("events", "Kill"),
    "Message": ("events", "Message"),
    "Monitoring": ("events", "Monitoring"),
    "MonitoringRate": ("events", "MonitoringRate"),
    "MonitoringReply": ("events", "MonitoringReply"),
    "Pang": ("events", "Pang"),
    "Ping": ("events", "Ping"),
    "Pong": ("events", "Pong"),
    "Reject": ("events", "Reject"),
    "SequenceCompleted": ("events", "SequenceCompleted"),
    "SequenceStopped": ("events", "SequenceStopped"),
    "Stop": ("events", "Stop"),
    "FRAMER_IMPLEMENTATION": ("framer", "IMPLEMENTATION"),
    "State": ("lifecycle", "State"),
}


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where[0]}"), where[1])
    globals()[name] = value
    return value


__all__ = [
    "COMPLETED_EXIT_CODES", "DEFAULT_MAX_FRAME_SIZE", "DEFAULT_WINDOW", "FRAMER_IMPLEMENTATION", "NEED_DATA",
    "PROTOCOL_VERSION", "Alive", "Channel", "Code", "Connection", "ConnectionClosed", "ConnectionEvent",
    "CreditAvailable", "Data", "Deadline", "DeadlineExpired", "EndOfStream", "Error", "Event", "ExitCode",
    "Exiting", "FlowControlError", "FrameTooLarge", "HandshakeError", "InputContentType", "Kill",
    "LocalProtocolError", "MalformedFrame", "Message", "Monitoring", "MonitoringRate", "MonitoringReply",
    "Pang", "Ping", "Pong", "ProtocolError", "Reject", "RemoteProtocolError", "Role", "SequenceCompleted",
    "SequenceStopped", "State", "Status", "Stop", "UnknownChannel", "UnknownMessage", "status_for_exit_code",
]
