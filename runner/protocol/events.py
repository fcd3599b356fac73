"""Everything a Connection hands out or takes in, one class per kind (as in h11).

Messages: one frozen dataclass per message code (docs/protocol.md §3). The class
is the message's only definition: ``@message(code, sender)`` makes it a frozen
keyword-only dataclass and registers it (reading the fields itself, schema.collect_fields:
dataclasses is imported only when asked about a message), and its fields give the body's keys,
types and required keys (schema.py derives them), so the codec, the role checks
and the lifecycle table all key on the class. Send one with ``Connection.send(Stop(timeout_ms=5000))``; receive with
``match event: case Stop(timeout_ms=timeout): ...``.

Data-plane and connection events (Data, EndOfStream, CreditAvailable,
ConnectionClosed, DeadlineExpired) are not messages: small slotted classes written
by hand (records.py), as a dataclass would make them but without generating their
methods at import; Data, EndOfStream and CreditAvailable are made once per frame on
the data path, where a frozen class costs measurably more.
"""

# No ``from __future__ import annotations`` here: real annotation objects let schema.py read the
# field types without typing.get_type_hints(), which compiles every annotation string (it doubled the
# import time of this module, and every runner imports it before its PING).
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

if TYPE_CHECKING:
    from dataclasses import Field

from .constants import Channel, Code, Role
from .records import FrozenRecord, Record, checked_as, frozen_error
from .schema import (
    MISSING,
    FieldSpec,
    PlanItem,
    WireField,
    collect_fields,
    compile_fields,
    compile_plan,
    field,
    wire,
)

_T = TypeVar("_T")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:  # the standard library has it only from 3.11; at run time it is a no-op anyway

    def dataclass_transform(**_: Any) -> Callable[[_T], _T]:
        return lambda decorated: decorated


class Message:
    """Base of every message class: frozen, compared and hashed by value, keyword-only.

    ``code``, ``sender``, ``channel`` and ``wire_fields`` are set by ``@message``. Every runner
    imports this module before its first PANG, so the methods a dataclass would generate for each of
    the 16 classes (with one ``exec`` per method: two thirds of the import time) are written once
    here instead; type checkers see frozen keyword-only dataclasses (``@message`` is a
    ``dataclass_transform``), and ``dataclasses.fields``/``replace`` work on them.
    """

    __slots__ = ()
    code: ClassVar[int]
    #: The role that sends it; None: either side (EVENT).
    sender: ClassVar[Role | None]
    channel: ClassVar[Channel]
    wire_fields: ClassVar[tuple[WireField, ...]]
    #: wire_fields prepared once for the codec's per-message loops (schema.compile_plan).
    wire_plan: ClassVar[tuple[PlanItem, ...]]
    #: The fields the class body declares (schema.collect_fields).
    message_fields: ClassVar[tuple[FieldSpec, ...]]
    #: Every field's attribute, and the defaults of those that have one (for __init__).
    field_names: ClassVar[frozenset[str]]
    field_defaults: ClassVar[dict[str, Any]]
    #: Bytes of the msgpack body a received message was decoded from (0: made on this side).
    #: Not a field: not sent, compared, hashed or shown.
    body_size: ClassVar[int] = 0

    if not TYPE_CHECKING:  # type checkers take the signature and frozenness from @message

        def __init__(self, **kwargs: Any) -> None:
            if not kwargs.keys() <= self.field_names:
                unknown = sorted(kwargs.keys() - self.field_names)
                raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}")
            values = self.__dict__  # not through __setattr__: the instance is frozen
            values.update(self.field_defaults)
            values.update(kwargs)
            if len(values) < len(self.field_names):
                missing = sorted(self.field_names - values.keys())
                raise TypeError(f"{type(self).__name__}() lacks the keyword arguments {missing}")

        def __setattr__(self, name: str, value: Any) -> None:
            raise frozen_error(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise frozen_error(f"cannot delete field {name!r}")

    @classmethod
    def from_checked(cls, kwargs: dict[str, Any], body_size: int = 0) -> "Message":
        """The message of constructor arguments ``schema.parse`` returned: every key a field and
        every field without a default present, so __init__'s keyword checks are skipped."""
        message = object.__new__(cls)
        values = message.__dict__
        values.update(cls.field_defaults)
        values.update(kwargs)
        if body_size:
            values["body_size"] = body_size
        return message

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f.attr) == getattr(other, f.attr) for f in self.wire_fields)

    def __hash__(self) -> int:
        return hash((self.__class__, *(getattr(self, f.attr) for f in self.wire_fields)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.attr}={getattr(self, f.attr)!r}" for f in self.wire_fields)
        return f"{type(self).__name__}({fields})"


#: code -> message class, filled by ``@message``.
MESSAGES: dict[int, type[Message]] = {}
_M = TypeVar("_M", bound=Message)


class _DataclassFields:
    """``__dataclass_fields__`` of a message class, made when first asked for: ``dataclasses.fields``,
    ``replace``, ``asdict`` and ``is_dataclass`` work on messages as on the dataclasses they were,
    while a runner, which asks none of them, never imports dataclasses for them."""

    def __get__(self, instance: object, owner: type) -> "dict[str, Field[Any]]":
        specs: tuple[FieldSpec, ...] | None = owner.__dict__.get("message_fields")
        if specs is None:  # Message itself, or a class @message did not make: not a dataclass
            raise AttributeError("__dataclass_fields__")
        import dataclasses

        made: dict[str, Field[Any]] = {}
        for spec in specs:
            default = spec.default if spec.default is not MISSING else dataclasses.MISSING
            made_field: Any = dataclasses.field(default=default, metadata=spec.metadata, kw_only=True)
            made_field.name, made_field.type = spec.name, spec.type
            made_field._field_type = dataclasses._FIELD  # type: ignore[attr-defined]  # as @dataclass marks it
            made[spec.name] = made_field
        owner.__dataclass_fields__ = made  # type: ignore[attr-defined]  # once per class
        return made


Message.__dataclass_fields__ = _DataclassFields()  # type: ignore[attr-defined]


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
def message(code: Code, sender: Role | None) -> Callable[[type[_M]], type[_M]]:
    """Make a message class (a frozen keyword-only dataclass) of ``code``, sent by ``sender``
    (None: both sides), and register it."""

    def register(cls: type[_M]) -> type[_M]:
        if int(code) in MESSAGES:
            raise ValueError(f"message code {int(code)} is defined twice")
        # Only the fields, read as @dataclass(kw_only=True) reads them: Message has the methods.
        cls.message_fields = collect_fields(cls)
        # keyword-only fields: no positional patterns, as for a kw_only dataclass
        cls.__match_args__ = ()  # type: ignore[attr-defined,misc]
        cls.code = int(code)
        cls.sender = sender
        cls.channel = {Role.RUNNER: Channel.MONITORING, Role.HOST: Channel.CONTROL, None: Channel.EVENTS}[sender]
        cls.wire_fields = compile_fields(cls)
        cls.wire_plan = compile_plan(cls.wire_fields)
        cls.field_names = frozenset(f.name for f in cls.message_fields)
        cls.field_defaults = {f.name: f.default for f in cls.message_fields if f.default is not MISSING}
        MESSAGES[int(code)] = cls
        return cls

    return register


def replaced(message: _M, **changes: Any) -> _M:
    """A copy of ``message`` with ``changes``, as ``dataclasses.replace`` makes it (through __init__,
    so an unknown name is refused), without importing dataclasses before a runner's PING."""
    values = {name: getattr(message, name) for name in message.field_names}
    values.update(changes)
    made: _M = type(message)(**values)
    return made


# -- runner -> host, on MONITORING ---------------------------------------------------------


@message(Code.PING, Role.RUNNER)
class Ping(Message):
    """The runner's hello, its first frame (§4). ``Connection.send`` fills in protocol, impl,
    max_frame_size and window from the connection."""

    instance_id: str
    token: str = ""
    protocol: int = field(default=0, metadata=wire(required=True))
    max_frame_size: int = field(default=0, metadata=wire(required=True, non_negative=True))
    window: int = field(default=0, metadata=wire(required=True, non_negative=True))
    impl: str | None = None
    capabilities: list[str] | None = None
    pid: int | None = field(default=None, metadata=wire(non_negative=True))
    created: float | None = None  # ms since the epoch
    runner_version: str | None = None
    python: str | None = None


@message(Code.MONITORING, Role.RUNNER)
class Monitoring(Message):
    """Heartbeat: ``healthy`` and ``stats`` (rss, cpu, loopLagMs, channels; §7)."""

    healthy: bool
    stats: dict[str, Any] | None = None


@message(Code.ERROR, Role.RUNNER)
class Error(Message):
    """The Sequence failed (load: exit 22, run: 23); EXITING follows."""

    message: str
    stack: str | None = None
    exit_code: int | None = None


@message(Code.SEQUENCE_STOPPED, Role.RUNNER)
class SequenceStopped(Message):
    """Stop handlers finished (or end()/destroy()); ``error`` is None or ``{message, stack}``."""

    error: dict[str, Any] | None = field(default=None, metadata=wire("sequenceError", send_none=True))


@message(Code.ALIVE, Role.RUNNER)
class Alive(Message):
    """A stop handler asked to keep running (§5)."""

    keep_alive_ms: float | None = field(default=None, metadata=wire("keepAlive", non_negative=True))


@message(Code.SEQUENCE_COMPLETED, Role.RUNNER)
class SequenceCompleted(Message):
    """run() finished and its output was sent; the runner exits after ``timeout_ms``."""

    timeout_ms: float | None = field(default=None, metadata=wire("timeout", non_negative=True))


@message(Code.PANG, Role.RUNNER)
class Pang(Message):
    """Topics and content types the Sequence declares: input side with ``requires``, output with ``provides``."""

    requires: str | None = None
    provides: str | None = None
    content_type: str | None = None
    output_encoding: str | None = field(default=None, metadata=wire(nullable=True))


@message(Code.EXITING, Role.RUNNER)
class Exiting(Message):
    """The runner's last message: it exits with ``exit_code``."""

    exit_code: int
    reason: str | None = None


# -- host -> runner, on CONTROL --------------------------------------------------------------


@message(Code.INPUT_CONTENT_TYPE, Role.HOST)
class InputContentType(Message):
    """Content type of IN, sent before the first IN byte."""

    content_type: str


@message(Code.PONG, Role.HOST)
class Pong(Message):
    """The host's handshake reply. ``Connection.send`` fills in protocol, impl, max_frame_size
    and window from the connection."""

    protocol: int = field(default=0, metadata=wire(required=True))
    max_frame_size: int = field(default=0, metadata=wire(required=True, non_negative=True))
    window: int = field(default=0, metadata=wire(required=True, non_negative=True))
    impl: str | None = None
    app_config: dict[str, Any] | None = None
    args: list[Any] | None = None
    capabilities: list[str] | None = None


@message(Code.STOP, Role.HOST)
class Stop(Message):
    """Graceful stop: run the stop handlers within ``timeout_ms`` (§5)."""

    timeout_ms: float = field(metadata=wire("timeout", non_negative=True))
    can_keep_alive: bool = field(default=False, metadata=wire("canCallKeepalive"))


@message(Code.KILL, Role.HOST)
class Kill(Message):
    """Kill now (§5)."""


@message(Code.MONITORING_RATE, Role.HOST)
class MonitoringRate(Message):
    """Heartbeats per second (0 turns them off)."""

    rate: float = field(metadata=wire("monitoringRate", non_negative=True))


@message(Code.MONITORING_REPLY, Role.HOST)
class MonitoringReply(Message):
    """The host's answer to a heartbeat (optional in v1)."""


@message(Code.REJECT, Role.HOST)
class Reject(Message):
    """The handshake is refused; the host closes the connection after it."""

    reason: str


# -- both directions, on EVENTS ----------------------------------------------------------------


@message(Code.EVENT, None)
class Event(Message):
    """A named event with any msgpack value (None: no message)."""

    name: str = field(metadata=wire("eventName"))
    message: Any = None
    source: str | None = None


# -- data plane and connection events ---------------------------------------------------------


@checked_as(eq=True)
class Data(Record):
    """Bytes on a data channel (``payload`` may be a memoryview; copy it to keep it)."""

    __slots__ = ("channel", "payload")
    __match_args__ = ("channel", "payload")
    channel: int
    payload: Any

    def __init__(self, channel: int, payload: Any) -> None:
        self.channel = channel
        self.payload = payload


@checked_as(eq=True)
class EndOfStream(Record):
    """The peer will send no more data on ``channel``."""

    __slots__ = ("channel",)
    __match_args__ = ("channel",)
    channel: int

    def __init__(self, channel: int) -> None:
        self.channel = channel


@checked_as(eq=True)
class CreditAvailable(Record):
    """The peer granted credit: ``available`` bytes may now be sent on ``channel``."""

    __slots__ = ("available", "channel")
    __match_args__ = ("channel", "available")
    channel: int
    available: int

    def __init__(self, channel: int, available: int) -> None:
        self.channel = channel
        self.available = available


@checked_as(frozen=True)
class ConnectionClosed(FrozenRecord):
    """The peer closed its side of the connection."""

    __slots__ = ()


class Deadline(str, enum.Enum):
    STOP = "stop"  # the stop timeout: the host sends KILL unless keepalive was requested
    EXIT = "exit"  # the runner should have exited by now


@checked_as(frozen=True)
class DeadlineExpired(FrozenRecord):
    """A lifecycle deadline passed (the host role has already queued KILL if due)."""

    __slots__ = ("kind",)
    __match_args__ = ("kind",)
    kind: Deadline

    def __init__(self, kind: Deadline) -> None:
        object.__setattr__(self, "kind", kind)


class Sentinel(enum.Enum):
    NEED_DATA = "need data"


#: What ``next_event()`` returns when every event so far was handed out (read more, then
#: ``receive_data``). An enum member, so ``event is NEED_DATA`` narrows the type for mypy.
NEED_DATA: Final = Sentinel.NEED_DATA

ConnectionEvent = Data | EndOfStream | CreditAvailable | ConnectionClosed | DeadlineExpired | Message
