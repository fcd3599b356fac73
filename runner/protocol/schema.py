"""The wire schema of a message, derived from its dataclass (one definition per message).

A message class says everything once: its fields and their Python types. From
them this module derives the body's keys (snake_case attribute -> camelCase key
unless ``wire()`` names another), the accepted msgpack types (from the
annotation), and which keys are required (fields without a default). ``wire()``
adds what an annotation cannot say: a different key, "must not be negative", a
nullable field, or a field that is required on the wire although the sender may
leave it to the Connection (the handshake parameters).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from .constants import Code
from .records import FrozenRecord, checked_as

_NONE = type(None)
_WIRE = "wire"


@checked_as(frozen=True)
class WireField(FrozenRecord):
    """One key of a message body (made ~50 times at import: written by hand, records.py)."""

    __slots__ = __match_args__ = ("attr", "key", "types", "required", "nullable", "non_negative", "send_none")
    attr: str  # Python attribute of the message class
    key: str  # key in the msgpack map
    types: tuple[type, ...] | None  # accepted value types; None: any msgpack value
    required: bool  # a body without the key is refused
    nullable: bool  # null is a valid value (else null is refused like any wrong type)
    non_negative: bool  # a number below zero is refused
    send_none: bool  # a None value is sent as null (else the key is left out)

    def __init__(self, attr: str, key: str, types: tuple[type, ...] | None, required: bool, nullable: bool,
                 non_negative: bool, send_none: bool) -> None:
        for name, value in zip(self.__match_args__, (attr, key, types, required, nullable, non_negative, send_none)):
            object.__setattr__(self, name, value)


def wire(
    key: str | None = None,
    *,
    required: bool = False,
    non_negative: bool = False,
    nullable: bool = False,
    send_none: bool = False,
) -> dict[str, Any]:
    """``dataclasses.field(metadata=wire(...))``: what the field's name and annotation do not say."""
    return {
        _WIRE: {
            "key": key,
            "required": required,
            "non_negative": non_negative,
            "nullable": nullable or send_none,
            "send_none": send_none,
        }
    }


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _accepted_types(annotation: Any) -> tuple[type, ...] | None:
    """msgpack value types for an annotation: float takes ints too; ``X | None`` means X (None = absent)."""
    if annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not _NONE]
        if len(members) != 1:
            raise TypeError(f"unsupported message field type {annotation!r}")
        return _accepted_types(members[0])
    base = origin or annotation
    if base is float:
        return (int, float)
    if base in (str, bool, int, dict, list):
        return (base,)
    raise TypeError(f"unsupported message field type {annotation!r}")


def compile_fields(cls: type) -> tuple[WireField, ...]:
    """The wire fields of a message dataclass, in declaration order (the order keys are sent in)."""
    hints: dict[str, Any] | None = None
    out = []
    for f in dataclasses.fields(cls):
        annotation = f.type
        if isinstance(annotation, str):  # a module with postponed annotations: evaluate them
            hints = hints or typing.get_type_hints(cls)
            annotation = hints[f.name]
        meta = f.metadata.get(_WIRE, {})
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        out.append(
            WireField(
                attr=f.name,
                key=meta.get("key") or camel_case(f.name),
                types=_accepted_types(annotation),
                required=meta.get("required", False) or not has_default,
                nullable=meta.get("nullable", False),
                non_negative=meta.get("non_negative", False),
                send_none=meta.get("send_none", False),
            )
        )
    return tuple(out)


#: One field as the hot loops read it: (attr, key, exact, required, nullable, send_none, field).
#: ``exact`` holds the value classes accepted without a closer look (the accepted types minus
#: bool where bool is not accepted; empty for a non-negative field, whose sign is checked);
#: None: any value. Anything else goes through ``_check`` (subclasses, bool, sign, errors).
PlanItem = tuple[str, str, "frozenset[type] | None", bool, bool, bool, WireField]


def compile_plan(fields: tuple[WireField, ...]) -> tuple[PlanItem, ...]:
    """The fields of a message class prepared once for ``parse`` and ``encode_body``."""
    plan = []
    for f in fields:
        exact = None if f.types is None else frozenset() if f.non_negative else frozenset(f.types)
        plan.append((f.attr, f.key, exact, f.required, f.nullable, f.send_none, f))
    return tuple(plan)


def parse(plan: tuple[PlanItem, ...], body: Any, code: int, error: type[Exception]) -> dict[str, Any]:
    """The constructor arguments a body map of message ``code`` stands for (absent keys are left
    out: they take the field's default; unknown keys are ignored); ``error`` naming the field if
    it is not valid.

    Every message received goes through here once, so it is one loop over the class's
    precompiled plan, and the name of the message is only made for an error."""
    if not isinstance(body, dict):
        raise error(f"{message_name(code)} body must be a map, got {type(body).__name__}")
    kwargs: dict[str, Any] = {}
    for attr, key, exact, required, nullable, _, f in plan:
        if key not in body:
            if required:
                raise error(f"{message_name(code)} body lacks the required field {key!r}")
            continue
        value = kwargs[attr] = body[key]
        if exact is None or value.__class__ in exact or (value is None and nullable):
            continue
        _check(f, value, code, error)
    return kwargs


def encode_body(plan: tuple[PlanItem, ...], message: Any, code: int, error: type[Exception]) -> dict[str, Any]:
    """``to_body`` and the checks ``parse`` would make of that body, in one pass: what this
    side sends is held to the same schema as what it receives."""
    body: dict[str, Any] = {}
    for attr, key, exact, required, _, send_none, f in plan:
        value = getattr(message, attr)
        if value is None:
            if send_none:  # send_none implies nullable: null is valid
                body[key] = None
            elif required:
                raise error(f"{message_name(code)} body lacks the required field {key!r}")
            continue
        body[key] = value
        if exact is None or value.__class__ in exact:
            continue
        _check(f, value, code, error)
    return body


def _check(f: WireField, value: Any, code: int, error: type[Exception]) -> None:
    """The full check of a value the fast test did not pass (a subclass, a bool, a sign to see)."""
    if f.types is None or (value is None and f.nullable):
        return
    # bool is an int in Python; a number field must not take a bool.
    if isinstance(value, bool) and bool not in f.types:
        raise error(f"{message_name(code)} field {f.key!r} must be {_type_names(f)}, got bool")
    if not isinstance(value, f.types):
        raise error(f"{message_name(code)} field {f.key!r} must be {_type_names(f)}, got {type(value).__name__}")
    if f.non_negative and value < 0:  # type: ignore[operator]  # a number: checked above
        raise error(f"{message_name(code)} field {f.key!r} must not be negative, got {value}")


def message_name(code: int) -> str:
    """``STOP (4001)``, for error messages."""
    try:
        return f"{Code(code).name} ({code})"
    except ValueError:
        return str(code)


def _type_names(f: WireField) -> str:
    names = [t.__name__ for t in f.types or ()]
    if f.nullable:
        names.append("null")
    return " or ".join(names)


def to_body(fields: tuple[WireField, ...], message: Any) -> dict[str, Any]:
    """The body map of a message object: None values are left out unless the field sends null."""
    body: dict[str, Any] = {}
    for f in fields:
        value = getattr(message, f.attr)
        if value is not None or f.send_none:
            body[f.key] = value
    return body
