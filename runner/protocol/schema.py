"""The wire schema of a message, derived from its class body (one definition per message).

A message class says everything once: its fields and their Python types. From
them this module derives the body's keys (snake_case attribute -> camelCase key
unless ``wire()`` names another), the accepted msgpack types (from the
annotation), and which keys are required (fields without a default). ``wire()``
adds what an annotation cannot say: a different key, "must not be negative", a
nullable field, or a field that is required on the wire although the sender may
leave it to the Connection (the handshake parameters).

``field()`` and ``collect_fields`` read a message class body as ``@dataclass`` would (with
``kw_only``), without importing dataclasses: every runner makes the message classes before its
first PANG, and dataclasses (with copy) was ~0.8 ms of that. ``compile_fields`` also takes a
real dataclass.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Union

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


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: A field without a default (the counterpart of ``dataclasses.MISSING``).
MISSING: Any = _Missing()


class FieldSpec:
    """One field of a message class: what ``field()`` says in its body, completed by ``collect_fields``."""

    __slots__ = ("default", "metadata", "name", "type")

    def __init__(self, default: Any = MISSING, metadata: Mapping[str, Any] | None = None) -> None:
        self.name = ""
        self.type: Any = None
        self.default = default
        self.metadata: Mapping[str, Any] = metadata or {}

    def __repr__(self) -> str:
        return f"FieldSpec(name={self.name!r}, type={self.type!r}, default={self.default!r})"


def field(*, default: Any = MISSING, metadata: Mapping[str, Any] | None = None) -> Any:
    """A message field with ``wire()`` metadata and, if given, a plain default (the message classes'
    ``dataclasses.field``; a factory is refused: message fields are immutable values)."""
    return FieldSpec(default, metadata)


def collect_fields(cls: type) -> tuple[FieldSpec, ...]:
    """The fields ``cls``'s body declares, in order, as ``@dataclass(kw_only=True)`` reads them: an
    annotation is a field (ClassVar is not), its class attribute its default (a ``field()`` is
    replaced by its default, or removed when it has none)."""
    out = []
    own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - the body's own, without importing inspect
    for name, annotation in own.items():
        if annotation is ClassVar or typing.get_origin(annotation) is ClassVar or (
                isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar"))):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, FieldSpec) else FieldSpec(value)
        spec.name, spec.type = name, annotation
        if spec.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, spec.default)
        out.append(spec)
    return tuple(out)


def wire(
    key: str | None = None,
    *,
    required: bool = False,
    non_negative: bool = False,
    nullable: bool = False,
    send_none: bool = False,
) -> dict[str, Any]:
    """``field(metadata=wire(...))``: what the field's name and annotation do not say."""
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


def _declared(cls: type) -> list[tuple[str, Any, bool, Mapping[str, Any]]]:
    """(name, annotation, has a default, metadata) per field of a message class or a dataclass."""
    specs = cls.__dict__.get("message_fields")
    if specs is not None:
        return [(f.name, f.type, f.default is not MISSING, f.metadata) for f in specs]
    import dataclasses  # a dataclass (tests, tools): not a runner's messages

    return [(f.name, f.type, f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
             f.metadata) for f in dataclasses.fields(cls)]


def compile_fields(cls: type) -> tuple[WireField, ...]:
    """The wire fields of a message class (or a dataclass), in declaration order (the order keys are sent in)."""
    hints: dict[str, Any] | None = None
    out = []
    for name, annotation, has_default, metadata in _declared(cls):
        if isinstance(annotation, str):  # a module with postponed annotations: evaluate them
            hints = hints or typing.get_type_hints(cls)
            annotation = hints[name]
        meta = metadata.get(_WIRE, {})
        out.append(
            WireField(
                attr=name,
                key=meta.get("key") or camel_case(name),
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
