"""Protocol v1 of sequence-runner, sans-IO: imports only the standard library and msgpack.

See docs/protocol.md for the byte-level specification.
"""

from .connection import (
    Connection,
    ConnectionClosed,
    CreditAvailable,
    Data,
    DeadlineExpired,
    EndOfStream,
    Event,
    Message,
    Role,
)
from .constants import (
    COMPLETED_EXIT_CODES,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    PROTOCOL_VERSION,
    Channel,
    Code,
    ExitCode,
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
    UnknownChannel,
    UnknownMessage,
)
from .framer import IMPLEMENTATION as FRAMER_IMPLEMENTATION
from .lifecycle import Deadline, State

__all__ = [
    "COMPLETED_EXIT_CODES", "DEFAULT_MAX_FRAME_SIZE", "DEFAULT_WINDOW", "FRAMER_IMPLEMENTATION",
    "PROTOCOL_VERSION", "Channel", "Code", "Connection", "ConnectionClosed", "CreditAvailable", "Data",
    "Deadline", "DeadlineExpired", "EndOfStream", "Event", "ExitCode", "FlowControlError", "FrameTooLarge",
    "HandshakeError", "LocalProtocolError", "MalformedFrame", "Message", "ProtocolError", "Role", "State",
    "Status", "UnknownChannel", "UnknownMessage", "status_for_exit_code",
]
