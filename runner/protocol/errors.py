"""Exception classes of the wire protocol.

They live in pure Python so that the Cython framer raises exactly these classes
(it imports them) and callers catch one hierarchy whichever framer is active.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """The peer broke protocol v1. The connection cannot continue.

    ``frames`` holds the frames decoded from the same ``decode()`` call before the
    error was found, so a receiver can still act on them (nothing is lost).
    """

    def __init__(self, message: str, frames: list[Any] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Any] = frames if frames is not None else []


class MalformedFrame(ProtocolError):
    """Bytes that are not a protocol v1 frame (wrong type byte, bad layout)."""


class FrameTooLarge(ProtocolError):
    """A frame announced a payload larger than the negotiated maximum."""


class UnknownChannel(ProtocolError):
    """A frame named a channel that protocol v1 does not define."""


class UnknownMessage(ProtocolError):
    """A message code that this protocol version does not define, or a bad body."""


class FlowControlError(ProtocolError):
    """The peer sent more bytes on a channel than it had credit for."""


class HandshakeError(ProtocolError):
    """The handshake failed: version, token, role or parameters do not match."""


class LocalProtocolError(Exception):
    """This side tried to do something the protocol does not allow (a bug or misuse)."""
