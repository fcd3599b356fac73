"""Message bodies: msgpack maps, checked against a small schema per code.

A MESSAGE frame carries ``(channel, code, body)`` where body is the msgpack
encoding of a map with string keys. ``encode_body``/``decode_body`` are the one
place that turns bodies into bytes and back; ``check_body`` names the field that
is wrong when a peer sends a bad one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from .constants import HOST_CODES, RUNNER_CODES, Channel, Code
from .errors import LocalProtocolError, UnknownMessage

_NUMBER = (int, float)
_ANY = object

# code -> {field: (accepted types, required)}; fields not listed are allowed
# (forward compatibility: a newer peer may add fields).
SCHEMA: dict[int, dict[str, tuple[Any, bool]]] = {
    Code.PING: {
        "protocol": (int, True),
        "instanceId": (str, True),
        "token": (str, False),
        "impl": (str, False),
        "maxFrameSize": (int, True),
        "window": (int, True),
        "capabilities": (list, False),
        "pid": (int, False),
        "created": (_NUMBER, False),
        "runnerVersion": (str, False),
        "python": (str, False),
    },
    Code.PONG: {
        "protocol": (int, True),
        "maxFrameSize": (int, True),
        "window": (int, True),
        "appConfig": (dict, False),
        "args": (list, False),
        "capabilities": (list, False),
    },
    Code.REJECT: {"reason": (str, True)},
    Code.MONITORING: {"healthy": (bool, True), "stats": (dict, False)},
    Code.ERROR: {"message": (str, True), "exitCode": (int, False), "stack": (str, False)},
    Code.SEQUENCE_STOPPED: {"sequenceError": ((dict, type(None)), False)},
    Code.ALIVE: {"keepAlive": (_NUMBER, False)},
    Code.SEQUENCE_COMPLETED: {"timeout": (_NUMBER, False)},
    Code.PANG: {
        "provides": (str, False),
        "requires": (str, False),
        "contentType": (str, False),
        "outputEncoding": ((str, type(None)), False),
    },
    Code.EXITING: {"exitCode": (int, True), "reason": (str, False)},
    Code.INPUT_CONTENT_TYPE: {"contentType": (str, True)},
    Code.STOP: {"timeout": (_NUMBER, True), "canCallKeepalive": (bool, False)},
    Code.KILL: {},
    Code.MONITORING_RATE: {"monitoringRate": (_NUMBER, True)},
    Code.MONITORING_REPLY: {},
    Code.EVENT: {"eventName": (str, True), "source": (str, False)},
}


#: Number fields that are durations, rates or sizes: a negative value is an error.
NON_NEGATIVE = frozenset({"timeout", "keepAlive", "monitoringRate", "maxFrameSize", "window", "pid"})


def channel_for(code: int) -> Channel:
    """The channel a message code travels on."""
    if code == Code.EVENT:
        return Channel.EVENTS
    if code in RUNNER_CODES:
        return Channel.MONITORING
    if code in HOST_CODES:
        return Channel.CONTROL
    raise LocalProtocolError(f"unknown message code {code}")


def _name(code: int) -> str:
    try:
        return f"{Code(code).name} ({code})"
    except ValueError:
        return str(code)


def check_body(code: int, body: Any, error: type[Exception] = UnknownMessage) -> dict[str, Any]:
    """Return ``body`` if it is a valid body for ``code``, else raise ``error`` naming the field."""
    schema = SCHEMA.get(code)
    if schema is None:
        raise error(f"unknown message code {code}")
    if not isinstance(body, dict):
        raise error(f"{_name(code)} body must be a map, got {type(body).__name__}")
    for field, (types, required) in schema.items():
        if field not in body:
            if required:
                raise error(f"{_name(code)} body lacks the required field {field!r}")
            continue
        value = body[field]
        if types is _ANY:
            continue
        # bool is an int in Python; a number field must not take a bool, and vice versa.
        if isinstance(value, bool) and types is not bool and not (isinstance(types, tuple) and bool in types):
            raise error(f"{_name(code)} field {field!r} must be {_type_names(types)}, got bool")
        if not isinstance(value, types):
            raise error(f"{_name(code)} field {field!r} must be {_type_names(types)}, got {type(value).__name__}")
        if field in NON_NEGATIVE and value < 0:
            raise error(f"{_name(code)} field {field!r} must not be negative, got {value}")
    return body


def _type_names(types: Any) -> str:
    if isinstance(types, tuple):
        return " or ".join("null" if t is type(None) else t.__name__ for t in types)
    return str(types.__name__)


def encode_body(code: int, body: Mapping[str, Any] | None = None) -> bytes:
    """msgpack bytes of a checked body (a bad body is this side's bug: LocalProtocolError)."""
    body = dict(body) if body else {}
    check_body(code, body, LocalProtocolError)
    try:
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"{_name(code)} body cannot be encoded: {exc}") from exc


def decode_body(code: int, raw: bytes | memoryview) -> dict[str, Any]:
    """Body map of a received message; UnknownMessage if it is not valid msgpack or breaks the schema."""
    if code not in SCHEMA:
        raise UnknownMessage(f"unknown message code {code}")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated classes for bad input
        raise UnknownMessage(f"{_name(code)} body is not valid msgpack: {exc}") from exc
    return check_body(code, body)
