"""Protocol v1 of sequence-runner, sans-IO: imports only the standard library and msgpack.

See docs/protocol.md for the byte-level specification. ``Connection`` takes bytes
and gives events (``receive_data``/``next_event``), takes messages and gives bytes
(``send``/``data_to_send``); every message is a class in ``events``.
"""

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

__all__ = [
    "COMPLETED_EXIT_CODES", "DEFAULT_MAX_FRAME_SIZE", "DEFAULT_WINDOW", "FRAMER_IMPLEMENTATION", "NEED_DATA",
    "PROTOCOL_VERSION", "Alive", "Channel", "Code", "Connection", "ConnectionClosed", "ConnectionEvent",
    "CreditAvailable", "Data", "Deadline", "DeadlineExpired", "EndOfStream", "Error", "Event", "ExitCode",
    "Exiting", "FlowControlError", "FrameTooLarge", "HandshakeError", "InputContentType", "Kill",
    "LocalProtocolError", "MalformedFrame", "Message", "Monitoring", "MonitoringRate", "MonitoringReply",
    "Pang", "Ping", "Pong", "ProtocolError", "Reject", "RemoteProtocolError", "Role", "SequenceCompleted",
    "SequenceStopped", "State", "Status", "Stop", "UnknownChannel", "UnknownMessage", "status_for_exit_code",
]
