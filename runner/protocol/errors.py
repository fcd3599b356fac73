"""Exception classes of the wire protocol.

One base, ``ProtocolError``, for both ways protocol v1 can be broken (as in h11):
``RemoteProtocolError`` when the peer broke it (the connection cannot continue)
and ``LocalProtocolError`` when this side tried to (a bug or misuse; nothing was
sent). They live in pure Python so that the Cython framer raises exactly these
classes (it imports them) and callers catch one hierarchy whichever framer is
active.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported before PING (runner/hello.py): it costs ~5 ms
if TYPE_CHECKING:
    from typing import Any


class ProtocolError(Exception):
    """Protocol v1 was broken, by the peer (RemoteProtocolError) or by this side (LocalProtocolError)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke protocol v1. The connection cannot continue.

    A decoder (the framer, or STH's line decoder) sets ``frames`` to what it decoded
    from the same call before it found the error, so nothing the peer sent before
    the bad bytes is lost. ``Connection`` does not use it: it hands out those events
    from ``next_event()`` first and raises the error after them.
    """

    def __init__(self, message: str, frames: list[Any] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Any] = frames if frames is not None else []


class MalformedFrame(RemoteProtocolError):
    """Bytes that are not a protocol v1 frame (wrong type byte, bad layout)."""


class FrameTooLarge(RemoteProtocolError):
    """A frame announced a payload larger than the negotiated maximum."""


class UnknownChannel(RemoteProtocolError):
    """A frame named a channel that protocol v1 does not define."""


class UnknownMessage(RemoteProtocolError):
    """A message code that this protocol version does not define, or a bad body."""


class FlowControlError(RemoteProtocolError):
    """The peer sent more bytes on a channel than it had credit for."""


class HandshakeError(RemoteProtocolError):
    """The handshake failed, or the peer sent something other than the handshake before it completed."""


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol does not allow (a bug or misuse)."""
