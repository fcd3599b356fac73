"""Message classes and their bodies: the schema derived from each class, checks that name the
bad field, and the exact body bytes the senders have always put on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.protocol import (
    Alive,
    Channel,
    Code,
    Error,
    Event,
    Exiting,
    InputContentType,
    Kill,
    LocalProtocolError,
    Monitoring,
    MonitoringRate,
    MonitoringReply,
    Pang,
    Ping,
    Pong,
    Reject,
    Role,
    SequenceCompleted,
    SequenceStopped,
    Stop,
    UnknownMessage,
)
from runner.protocol.codec import channel_for, decode, encode, from_body, packer, to_body
from runner.protocol.events import MESSAGES, Message, message
from runner.protocol.schema import compile_fields, wire

EXAMPLES: list[Message] = [
    Ping(instance_id="i", token="t", protocol=1, max_frame_size=4096, window=10, impl="python",
         capabilities=["x"], pid=3, created=1.5, runner_version="0.1", python="3.11.7"),
    Monitoring(healthy=True, stats={"rss": 1}),
    Error(message="boom", stack="tb", exit_code=23),
    SequenceStopped(error={"message": "m", "stack": ""}),
    Alive(keep_alive_ms=100.0),
    SequenceCompleted(timeout_ms=0),
    Pang(requires="topic", content_type="text/plain"),
    Exiting(exit_code=0, reason="done"),
    InputContentType(content_type="application/x-ndjson"),
    Pong(protocol=1, max_frame_size=4096, window=10, app_config={"k": 1}, args=[1], capabilities=[]),
    Stop(timeout_ms=7000, can_keep_alive=True),
    Kill(),
    MonitoringRate(rate=0.5),
    MonitoringReply(),
    Reject(reason="no"),
    Event(name="e", message=[1, {"a": None}], source="api"),
]


def test_one_class_per_code_with_its_channel() -> None:
    assert sorted(MESSAGES) == sorted(int(c) for c in Code)
    assert {type(e) for e in EXAMPLES} == set(MESSAGES.values())
    for code, cls in MESSAGES.items():
        assert cls.code == code
        expected = {Role.RUNNER: Channel.MONITORING, Role.HOST: Channel.CONTROL, None: Channel.EVENTS}
        assert cls.channel == expected[cls.sender] == channel_for(code)
    assert Stop.sender is Role.HOST and Ping.sender is Role.RUNNER and Event.sender is None
    with pytest.raises(LocalProtocolError):
        channel_for(1234)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: Message) -> None:
    assert decode(event.code, encode(event)) == event


SENT_BODIES = [
    # What the runner and host_bridge have always sent, byte for byte (key order included).
    (Stop(timeout_ms=7000, can_keep_alive=False), {"timeout": 7000, "canCallKeepalive": False}),
    (Kill(), {}),
    (SequenceStopped(), {"sequenceError": None}),
    (Pang(requires="", content_type="text/plain"), {"requires": "", "contentType": "text/plain"}),
    (Pang(provides="t", content_type="text/plain"), {"provides": "t", "contentType": "text/plain"}),
    (Error(message="m", stack="s", exit_code=22), {"message": "m", "stack": "s", "exitCode": 22}),
    (Exiting(exit_code=137, reason="killed"), {"exitCode": 137, "reason": "killed"}),
    (Alive(keep_alive_ms=5.0), {"keepAlive": 5.0}),
    (SequenceCompleted(timeout_ms=0), {"timeout": 0}),
    (Event(name="x"), {"eventName": "x"}),
    (Event(name="x", message={"n": 1}, source="s"), {"eventName": "x", "message": {"n": 1}, "source": "s"}),
    (MonitoringRate(rate=2), {"monitoringRate": 2}),
    (Monitoring(healthy=False, stats={}), {"healthy": False, "stats": {}}),
]


@pytest.mark.parametrize("event,body", SENT_BODIES, ids=lambda v: type(v).__name__)
def test_bodies_on_the_wire_are_unchanged(event: Message, body: dict[str, Any]) -> None:
    assert to_body(event) == body
    assert encode(event) == msgpack.packb(body, use_bin_type=True)


def test_golden_stop_body_decodes_with_defaults() -> None:
    assert decode(Code.STOP, bytes.fromhex("81a774696d656f7574cd03e8")) == Stop(timeout_ms=1000)
    assert decode(Code.KILL, b"\x80") == Kill()


@pytest.mark.parametrize(
    "code,body,needle",
    [
        (Code.STOP, {}, "'timeout'"),
        (Code.STOP, {"timeout": "soon"}, "'timeout'"),
        (Code.STOP, {"timeout": True}, "'timeout'"),
        (Code.MONITORING, {"healthy": 1}, "'healthy'"),
        (Code.MONITORING, {"healthy": True, "stats": None}, "'stats'"),
        (Code.EVENT, {"eventName": 5}, "'eventName'"),
        (Code.PING, {"protocol": 1}, "'instanceId'"),
        (Code.PANG, {"outputEncoding": 7}, "'outputEncoding' must be str or null"),
    ],
)
def test_bad_bodies_name_the_field(code: Code, body: dict[str, Any], needle: str) -> None:
    with pytest.raises(UnknownMessage, match=needle):
        decode(code, msgpack.packb(body))
    with pytest.raises(LocalProtocolError, match=needle):
        from_body(code, body, LocalProtocolError)


def test_bad_values_in_a_message_object_are_this_sides_error() -> None:
    with pytest.raises(LocalProtocolError, match="'timeout'"):
        encode(Stop(timeout_ms="soon"))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="must not be negative"):
        encode(Alive(keep_alive_ms=-1))
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        encode(Event(name="x", message={1, 2}))


def test_the_precompiled_checks_take_what_the_schema_takes_on_both_sides() -> None:
    class Name(str):
        pass

    pack = packer().pack
    # A subclass of an accepted type passes (the fast test looks at exact classes only)...
    assert decode(Code.EVENT, encode(Event(name=Name("n")), pack)) == Event(name="n")
    # ...a bool where a number is expected does not, sent or received, nor a negative number.
    with pytest.raises(LocalProtocolError, match="'exitCode' must be int, got bool"):
        encode(Exiting(exit_code=True), pack)
    with pytest.raises(UnknownMessage, match="'exitCode' must be int, got bool"):
        decode(Code.EXITING, msgpack.packb({"exitCode": True}))
    with pytest.raises(LocalProtocolError, match="'timeout' must be int or float, got bool"):
        encode(Stop(timeout_ms=True), pack)
    with pytest.raises(LocalProtocolError, match="lacks the required field 'eventName'"):
        encode(Event(name=None), pack)  # type: ignore[arg-type]
    # A Packer that failed on one body packs the next one whole (nothing of the failed one left).
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        encode(Event(name="x", message=[1, object()]), pack)
    assert msgpack.unpackb(encode(Event(name="y", message=2), pack)) == {"eventName": "y", "message": 2}
    # A decoded message is the constructed one: equal, hashed alike, frozen.
    got = decode(Code.STOP, msgpack.packb({"timeout": 5}))
    assert got == Stop(timeout_ms=5) and hash(got) == hash(Stop(timeout_ms=5)) and not got.can_keep_alive
    with pytest.raises(AttributeError):
        got.timeout_ms = 1  # type: ignore[misc]


def test_not_a_map_and_not_msgpack() -> None:
    with pytest.raises(UnknownMessage, match="must be a map"):
        decode(Code.KILL, msgpack.packb([1, 2]))
    with pytest.raises(UnknownMessage, match="not valid msgpack"):
        decode(Code.KILL, b"\xc1")
    with pytest.raises(UnknownMessage, match="not valid msgpack"):
        decode(Code.KILL, b"\x81")  # truncated map
    with pytest.raises(UnknownMessage, match="unknown message code"):
        decode(1, b"\x80")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode(Code.KILL, msgpack.packb({"future": 1})) == Kill()
    assert decode(Code.EXITING, msgpack.packb({"exitCode": 1, "signal": 9})) == Exiting(exit_code=1)


def test_null_only_where_a_field_allows_it() -> None:
    assert decode(Code.SEQUENCE_STOPPED, msgpack.packb({"sequenceError": None})) == SequenceStopped()
    assert decode(Code.SEQUENCE_STOPPED, msgpack.packb({})) == SequenceStopped()
    assert decode(Code.PANG, msgpack.packb({"outputEncoding": None})) == Pang()
    with pytest.raises(UnknownMessage, match="'reason' must be str, got NoneType"):
        decode(Code.EXITING, msgpack.packb({"exitCode": 0, "reason": None}))


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from(sorted(MESSAGES)), raw=st.binary(max_size=64))
def test_garbage_bodies_raise_only_unknown_message(code: int, raw: bytes) -> None:
    try:
        decode(code, raw)
    except UnknownMessage:
        pass


@pytest.mark.parametrize("code,body", [(Code.STOP, {"timeout": -1}), (Code.MONITORING_RATE, {"monitoringRate": -0.5})])
def test_negative_durations_and_rates_are_refused(code: Code, body: dict[str, Any]) -> None:
    with pytest.raises(UnknownMessage, match="must not be negative"):
        decode(code, msgpack.packb(body))


def test_the_schema_is_derived_from_the_class() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Sample(Message):
        some_name: str
        count: int | None = None
        ratio: float = field(default=0.0, metadata=wire("r", non_negative=True))
        anything: Any = None

    by_key = {f.key: f for f in compile_fields(Sample)}
    assert list(by_key) == ["someName", "count", "r", "anything"]
    assert by_key["someName"].required and by_key["someName"].types == (str,)
    assert not by_key["count"].required and by_key["count"].types == (int,)
    assert by_key["r"].types == (int, float) and by_key["r"].non_negative
    assert by_key["anything"].types is None


def test_a_message_class_with_an_unsupported_type_or_a_taken_code_is_refused() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Odd(Message):
        when: set[int]

    with pytest.raises(TypeError, match="unsupported message field type"):
        compile_fields(Odd)
    with pytest.raises(ValueError, match="defined twice"):
        message(Code.KILL, Role.HOST)(Odd)
