"""Message bodies: schema checks name the bad field; round trips through msgpack."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.protocol import Channel, Code, LocalProtocolError, UnknownMessage
from runner.protocol.codec import SCHEMA, channel_for, decode_body, encode_body


def test_every_code_has_a_channel() -> None:
    for code in Code:
        channel = channel_for(code)
        assert channel in (Channel.CONTROL, Channel.MONITORING, Channel.EVENTS)
    assert channel_for(Code.EVENT) == Channel.EVENTS
    assert channel_for(Code.STOP) == Channel.CONTROL
    assert channel_for(Code.PING) == Channel.MONITORING
    with pytest.raises(LocalProtocolError):
        channel_for(1234)


def test_round_trip() -> None:
    body = {"timeout": 1000, "canCallKeepalive": True}
    assert decode_body(Code.STOP, encode_body(Code.STOP, body)) == body


@pytest.mark.parametrize(
    "code,body,needle",
    [
        (Code.STOP, {}, "'timeout'"),
        (Code.STOP, {"timeout": "soon"}, "'timeout'"),
        (Code.STOP, {"timeout": True}, "'timeout'"),
        (Code.MONITORING, {"healthy": 1}, "'healthy'"),
        (Code.EVENT, {"eventName": 5}, "'eventName'"),
        (Code.PING, {"protocol": 1}, "'instanceId'"),
    ],
)
def test_bad_bodies_name_the_field(code: Code, body: dict, needle: str) -> None:
    raw = msgpack.packb(body)
    with pytest.raises(UnknownMessage, match=needle):
        decode_body(code, raw)
    with pytest.raises(LocalProtocolError, match=needle):
        encode_body(code, body)


def test_not_a_map_and_not_msgpack() -> None:
    with pytest.raises(UnknownMessage, match="must be a map"):
        decode_body(Code.KILL, msgpack.packb([1, 2]))
    with pytest.raises(UnknownMessage, match="not valid msgpack"):
        decode_body(Code.KILL, b"\xc1")
    with pytest.raises(UnknownMessage, match="not valid msgpack"):
        decode_body(Code.KILL, b"\x81")  # truncated map
    with pytest.raises(UnknownMessage, match="unknown message code"):
        decode_body(1, b"\x80")


def test_unknown_fields_are_kept_for_forward_compatibility() -> None:
    assert decode_body(Code.KILL, msgpack.packb({"future": 1})) == {"future": 1}


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from(sorted(SCHEMA)), raw=st.binary(max_size=64))
def test_garbage_bodies_raise_only_unknown_message(code: int, raw: bytes) -> None:
    try:
        decode_body(code, raw)
    except UnknownMessage:
        pass


@pytest.mark.parametrize(
    "code,body", [(Code.STOP, {"timeout": -1}), (Code.MONITORING_RATE, {"monitoringRate": -0.5})]
)
def test_negative_durations_and_rates_are_refused(code: Code, body: dict) -> None:
    with pytest.raises(UnknownMessage, match="must not be negative"):
        decode_body(code, msgpack.packb(body))
