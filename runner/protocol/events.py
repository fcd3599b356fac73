"""Everything a Connection hands out or takes in, one class per kind (as in h11).

Messages: one frozen dataclass per message code (docs/protocol.md §3). The class
is the message's only definition: ``@message(code, sender)`` registers it, and
its fields give the body's keys, types and required keys (schema.py derives
them), so the codec, the role checks and the lifecycle table all key on the
class. Send one with ``Connection.send(Stop(timeout_ms=5000))``; receive with
``match event: case Stop(timeout_ms=timeout): ...``.

Data-plane events (Data, EndOfStream, CreditAvailable) are plain slotted
classes, not messages: they are made once per frame on the data path, where a
frozen dataclass costs measurably more.
"""

# No ``from __future__ import annotations`` here: real annotation objects let schema.py read the
# field types without typing.get_type_hints(), which compiles every annotation string (it doubled the
# import time of this module, and every runner imports it before its PING).
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar

from .constants import Channel, Code, Role
from .schema import WireField, compile_fields, wire


class Message:
    """Base of every message class. ``code``, ``sender`` and ``channel`` are set by ``@message``."""

    __slots__ = ()
    code: ClassVar[int]
    #: The role that sends it; None: either side (EVENT).
    sender: ClassVar[Role | None]
    channel: ClassVar[Channel]
    wire_fields: ClassVar[tuple[WireField, ...]]


#: code -> message class, filled by ``@message``.
MESSAGES: dict[int, type[Message]] = {}
_M = TypeVar("_M", bound=Message)


def message(code: Code, sender: Role | None) -> Callable[[type[_M]], type[_M]]:
    """Register a message dataclass under ``code``, sent by ``sender`` (None: both sides)."""

    def register(cls: type[_M]) -> type[_M]:
        if int(code) in MESSAGES:
            raise ValueError(f"message code {int(code)} is defined twice")
        cls.code = int(code)
        cls.sender = sender
        cls.channel = {Role.RUNNER: Channel.MONITORING, Role.HOST: Channel.CONTROL, None: Channel.EVENTS}[sender]
        cls.wire_fields = compile_fields(cls)
        MESSAGES[int(code)] = cls
        return cls

    return register


# -- runner -> host, on MONITORING ---------------------------------------------------------


@message(Code.PING, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
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
@dataclass(frozen=True, slots=True, kw_only=True)
class Monitoring(Message):
    """Heartbeat: ``healthy`` and ``stats`` (rss, cpu, loopLagMs, channels; §7)."""

    healthy: bool
    stats: dict[str, Any] | None = None


@message(Code.ERROR, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """The Sequence failed (load: exit 22, run: 23); EXITING follows."""

    message: str
    stack: str | None = None
    exit_code: int | None = None


@message(Code.SEQUENCE_STOPPED, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceStopped(Message):
    """Stop handlers finished (or end()/destroy()); ``error`` is None or ``{message, stack}``."""

    error: dict[str, Any] | None = field(default=None, metadata=wire("sequenceError", send_none=True))


@message(Code.ALIVE, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
class Alive(Message):
    """A stop handler asked to keep running (§5)."""

    keep_alive_ms: float | None = field(default=None, metadata=wire("keepAlive", non_negative=True))


@message(Code.SEQUENCE_COMPLETED, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceCompleted(Message):
    """run() finished and its output was sent; the runner exits after ``timeout_ms``."""

    timeout_ms: float | None = field(default=None, metadata=wire("timeout", non_negative=True))


@message(Code.PANG, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pang(Message):
    """Topics and content types the Sequence declares: input side with ``requires``, output with ``provides``."""

    requires: str | None = None
    provides: str | None = None
    content_type: str | None = None
    output_encoding: str | None = field(default=None, metadata=wire(nullable=True))


@message(Code.EXITING, Role.RUNNER)
@dataclass(frozen=True, slots=True, kw_only=True)
class Exiting(Message):
    """The runner's last message: it exits with ``exit_code``."""

    exit_code: int
    reason: str | None = None


# -- host -> runner, on CONTROL --------------------------------------------------------------


@message(Code.INPUT_CONTENT_TYPE, Role.HOST)
@dataclass(frozen=True, slots=True, kw_only=True)
class InputContentType(Message):
    """Content type of IN, sent before the first IN byte."""

    content_type: str


@message(Code.PONG, Role.HOST)
@dataclass(frozen=True, slots=True, kw_only=True)
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
@dataclass(frozen=True, slots=True, kw_only=True)
class Stop(Message):
    """Graceful stop: run the stop handlers within ``timeout_ms`` (§5)."""

    timeout_ms: float = field(metadata=wire("timeout", non_negative=True))
    can_keep_alive: bool = field(default=False, metadata=wire("canCallKeepalive"))


@message(Code.KILL, Role.HOST)
@dataclass(frozen=True, slots=True, kw_only=True)
class Kill(Message):
    """Kill now (§5)."""


@message(Code.MONITORING_RATE, Role.HOST)
@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringRate(Message):
    """Heartbeats per second (0 turns them off)."""

    rate: float = field(metadata=wire("monitoringRate", non_negative=True))


@message(Code.MONITORING_REPLY, Role.HOST)
@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringReply(Message):
    """The host's answer to a heartbeat (optional in v1)."""


@message(Code.REJECT, Role.HOST)
@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(Message):
    """The handshake is refused; the host closes the connection after it."""

    reason: str


# -- both directions, on EVENTS ----------------------------------------------------------------


@message(Code.EVENT, None)
@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Message):
    """A named event with any msgpack value (None: no message)."""

    name: str = field(metadata=wire("eventName"))
    message: Any = None
    source: str | None = None


# -- data plane and connection events ---------------------------------------------------------


@dataclass(slots=True)
class Data:
    """Bytes on a data channel (``payload`` may be a memoryview; copy it to keep it)."""

    channel: int
    payload: Any


@dataclass(slots=True)
class EndOfStream:
    """The peer will send no more data on ``channel``."""

    channel: int


@dataclass(slots=True)
class CreditAvailable:
    """The peer granted credit: ``available`` bytes may now be sent on ``channel``."""

    channel: int
    available: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection."""


class Deadline(str, enum.Enum):
    STOP = "stop"  # the stop timeout: the host sends KILL unless keepalive was requested
    EXIT = "exit"  # the runner should have exited by now


@dataclass(frozen=True, slots=True)
class DeadlineExpired:
    """A lifecycle deadline passed (the host role has already queued KILL if due)."""

    kind: Deadline


class Sentinel(enum.Enum):
    NEED_DATA = "need data"


#: What ``next_event()`` returns when every event so far was handed out (read more, then
#: ``receive_data``). An enum member, so ``event is NEED_DATA`` narrows the type for mypy.
NEED_DATA: Final = Sentinel.NEED_DATA

ConnectionEvent = Data | EndOfStream | CreditAvailable | ConnectionClosed | DeadlineExpired | Message
