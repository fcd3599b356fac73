"""Message bodies: msgpack maps, checked against the schema each message class declares.

A MESSAGE frame carries ``(channel, code, body)`` where body is the msgpack
encoding of a map with string keys. ``encode``/``decode`` are the one place that
turns message objects into body bytes and back; a bad body names the field that
is wrong. Keys a message class does not declare are ignored (a newer peer may add
fields). The schema itself is not written here: it is derived from the classes in
events.py (see schema.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from . import schema
from .constants import Channel
from .errors import LocalProtocolError, ProtocolError, UnknownMessage
from .events import MESSAGES, Message


def message_class(code: int, error: type[ProtocolError] = UnknownMessage) -> type[Message]:
    """The class of message ``code``, or ``error`` for a code protocol v1 does not define."""
    cls = MESSAGES.get(code)
    if cls is None:
        raise error(f"unknown message code {code}")
    return cls


def channel_for(code: int) -> Channel:
    """The channel a message code travels on."""
    return message_class(code, LocalProtocolError).channel


def to_body(event: Message) -> dict[str, Any]:
    """The body map of ``event`` (fields that are None are left out, unless they send null)."""
    return schema.to_body(event.wire_fields, event)


def from_body(code: int, body: Any, error: type[ProtocolError] = UnknownMessage) -> Message:
    """The message a body map stands for; ``error`` naming the field if the body is not valid."""
    cls = message_class(code, error)
    return cls.from_checked(schema.parse(cls.wire_plan, body, code, error))


def packer() -> msgpack.Packer:
    """A Packer for ``encode``: one per Connection (a Packer is not shared between threads),
    about half the cost of msgpack.packb, which builds one per call."""
    return msgpack.Packer(use_bin_type=True)


def encode(event: Message, pack: Callable[[Any], bytes] | None = None) -> bytes:
    """msgpack bytes of the body of ``event`` (a bad value is this side's bug: LocalProtocolError).

    The body is checked against the schema as a received one would be; ``pack`` is a
    ``packer().pack`` (default: msgpack.packb)."""
    body = schema.encode_body(event.wire_plan, event, event.code, LocalProtocolError)
    try:
        if pack is None:
            return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
        return pack(body)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"{schema.message_name(event.code)} body cannot be encoded: {exc}") from exc


def decode(code: int, raw: bytes | memoryview) -> Message:
    """The message a received body stands for; UnknownMessage if it is not valid msgpack or breaks the schema."""
    cls = message_class(code)
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated classes for bad input
        raise UnknownMessage(f"{schema.message_name(code)} body is not valid msgpack: {exc}") from exc
    return cls.from_checked(schema.parse(cls.wire_plan, body, code, UnknownMessage), len(raw))
