"""The sans-IO Connection: handshake, flow control, direction rules, timers."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest

from runner.protocol import (
    Channel,
    Code,
    Connection,
    ConnectionClosed,
    CreditAvailable,
    Data,
    Deadline,
    DeadlineExpired,
    EndOfStream,
    FlowControlError,
    HandshakeError,
    LocalProtocolError,
    MalformedFrame,
    Message,
    ProtocolError,
    Role,
    State,
    UnknownMessage,
)
from runner.protocol.framer import FrameEncoder


def pump(src: Connection, dst: Connection, now: float = 0.0) -> list:
    return dst.receive_data(b"".join(bytes(b) for b in src.data_to_send()), now)


def pair(window: int = 1 << 16) -> tuple[Connection, Connection]:
    runner, host = Connection(Role.RUNNER, window=window), Connection(Role.HOST, window=window)
    runner.send_ping("id-1", "secret", pid=42)
    (ping,) = pump(runner, host)
    assert isinstance(ping, Message) and ping.code == Code.PING
    assert ping.body["token"] == "secret" and ping.body["pid"] == 42
    host.accept(appConfig={"k": "v"}, args=[1, "two"])
    (pong,) = pump(host, runner)
    assert pong.code == Code.PONG and pong.body["args"] == [1, "two"]
    assert runner.state == host.state == State.RUNNING
    return runner, host


def test_handshake_and_no_credit_before_it() -> None:
    runner = Connection(Role.RUNNER)
    assert runner.credit(Channel.OUT) == 0
    with pytest.raises(LocalProtocolError):
        runner.send_message(Code.MONITORING, {"healthy": True})
    runner, host = pair(window=1000)
    assert runner.credit(Channel.OUT) == 1000 and host.credit(Channel.IN) == 1000


def test_version_mismatch_is_rejected_with_a_reason() -> None:
    host = Connection(Role.HOST)
    enc = FrameEncoder()
    body = {"protocol": 99, "instanceId": "x", "maxFrameSize": 1 << 16, "window": 100}
    enc.message(Channel.MONITORING, Code.PING, msgpack.packb(body))
    with pytest.raises(HandshakeError, match="protocol version 99"):
        host.receive_data(enc.take_bytes())
    (reject,) = Connection(Role.RUNNER).receive_data(b"".join(host.data_to_send()))
    assert reject.code == Code.REJECT and "99" in reject.body["reason"]


def test_reject_by_host_application() -> None:
    runner, host = Connection(Role.RUNNER), Connection(Role.HOST)
    runner.send_ping("id", "wrong")
    pump(runner, host)
    host.reject("wrong token for instance id")
    (msg,) = pump(host, runner)
    assert msg.code == Code.REJECT and runner.state == State.ERRORED


def test_messages_before_handshake_are_protocol_errors() -> None:
    host = Connection(Role.HOST)
    enc = FrameEncoder()
    enc.message(Channel.MONITORING, Code.MONITORING, msgpack.packb({"healthy": True}))
    with pytest.raises(ProtocolError, match="before the handshake"):
        host.receive_data(enc.take_bytes())
    enc.data(Channel.OUT, b"x")
    with pytest.raises(MalformedFrame):
        Connection(Role.HOST).receive_data(enc.take_bytes())


def test_data_flow_credit_and_end() -> None:
    runner, host = pair(window=100)
    assert runner.send_data(Channel.OUT, b"a" * 150) == 100
    assert runner.send_data(Channel.OUT, b"more") == 0
    (data,) = pump(runner, host)
    assert isinstance(data, Data) and bytes(data.payload) == b"a" * 100
    host.consumed(Channel.OUT, 40)
    assert host.data_to_send() == []  # credit goes back in batches
    host.consumed(Channel.OUT, 10)
    (credit,) = pump(host, runner)
    assert credit == CreditAvailable(Channel.OUT, 50)
    runner.send_end(Channel.OUT)
    (end,) = pump(runner, host)
    assert end == EndOfStream(Channel.OUT)
    with pytest.raises(LocalProtocolError):
        runner.send_data(Channel.OUT, b"x")


def test_sending_beyond_credit_is_caught_by_the_receiver() -> None:
    _runner, host = pair(window=10)
    enc = FrameEncoder()
    enc.data(Channel.OUT, b"x" * 11)
    with pytest.raises(FlowControlError, match="channel 6"):
        host.receive_data(enc.take_bytes())


def test_wrong_direction_and_wrong_role_codes() -> None:
    runner, host = pair()
    enc = FrameEncoder()
    enc.data(Channel.IN, b"x")  # the runner may not write IN
    with pytest.raises(MalformedFrame, match="channel 5"):
        host.receive_data(enc.take_bytes())
    runner, host = pair()
    enc.message(Channel.MONITORING, Code.STOP, msgpack.packb({"timeout": 1}))
    with pytest.raises(UnknownMessage, match="4001"):
        host.receive_data(enc.take_bytes())
    with pytest.raises(LocalProtocolError):
        runner.send_message(Code.KILL)
    with pytest.raises(LocalProtocolError):
        host.send_data(Channel.OUT, b"x")


def test_events_go_both_ways() -> None:
    runner, host = pair()
    host.send_message(Code.EVENT, {"eventName": "ping", "message": {"n": 1}})
    (event,) = pump(host, runner)
    assert event == Message(Code.EVENT, {"eventName": "ping", "message": {"n": 1}})
    runner.send_message(Code.EVENT, {"eventName": "pong", "message": None})
    assert pump(runner, host)[0].body["eventName"] == "pong"


def test_host_sends_kill_when_the_stop_deadline_passes() -> None:
    runner, host = pair()
    host.send_message(Code.STOP, {"timeout": 2000, "canCallKeepalive": False}, now=100.0)
    pump(host, runner, now=100.0)
    assert runner.state == State.STOPPING
    assert host.next_deadline() == pytest.approx(102.0)
    assert host.handle_timer(101.0) == []
    assert host.handle_timer(102.0) == [DeadlineExpired(Deadline.STOP)]
    (kill,) = pump(host, runner)
    assert kill.code == Code.KILL and runner.lifecycle.final_exit_code == 138


def test_keepalive_cancels_the_kill() -> None:
    runner, host = pair()
    host.send_message(Code.STOP, {"timeout": 1000, "canCallKeepalive": True}, now=0.0)
    pump(host, runner)
    runner.send_message(Code.ALIVE, {"keepAlive": 5000})
    pump(runner, host, now=0.5)
    assert host.next_deadline() is None
    assert host.handle_timer(10.0) == [] and host.data_to_send() == []


def test_exit_message_then_close() -> None:
    runner, host = pair()
    runner.send_message(Code.SEQUENCE_COMPLETED, {"timeout": 0})
    runner.send_message(Code.EXITING, {"exitCode": 0})
    events = pump(runner, host)
    assert [e.code for e in events] == [Code.SEQUENCE_COMPLETED, Code.EXITING]
    assert host.state == State.EXITED and host.lifecycle.final_exit_code == 0
    assert host.receive_data(b"") == [ConnectionClosed()]


def test_close_inside_a_frame_is_an_error() -> None:
    runner, host = pair()
    runner.send_data(Channel.OUT, b"abc")
    raw = b"".join(runner.data_to_send())
    host.receive_data(raw[:4])
    with pytest.raises(MalformedFrame, match="inside a frame"):
        host.receive_data(b"")


def test_error_keeps_the_events_before_the_bad_frame() -> None:
    runner, host = pair()
    runner.send_message(Code.EVENT, {"eventName": "before"})
    raw = b"".join(runner.data_to_send()) + b"\xff\xff"
    with pytest.raises(MalformedFrame) as info:
        host.receive_data(raw)
    assert [e.body["eventName"] for e in info.value.frames] == ["before"]


def test_importing_the_protocol_is_cheap_and_side_effect_free() -> None:
    code = (
        "import sys; import runner, runner.protocol; "
        "bad = [m for m in ('asyncio', 'anyio', 'socket', 'psutil') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_refused_frame_keeps_the_events_before_it() -> None:
    runner, host = pair(window=10)
    runner.send_message(Code.EVENT, {"eventName": "before"})
    raw = b"".join(runner.data_to_send())
    enc = FrameEncoder()
    enc.data(Channel.OUT, b"x" * 11)  # beyond credit: refused after decoding
    with pytest.raises(FlowControlError) as info:
        host.receive_data(raw + enc.take_bytes())
    assert [e.body["eventName"] for e in info.value.frames] == ["before"]


def test_stop_deadline_still_decides_after_sequence_stopped() -> None:
    runner, host = pair()
    host.send_message(Code.STOP, {"timeout": 2000, "canCallKeepalive": False}, now=0.0)
    pump(host, runner)
    runner.send_message(Code.SEQUENCE_STOPPED, {"sequenceError": None})
    pump(runner, host, now=0.5)
    assert host.state == State.STOPPED and host.next_deadline() == pytest.approx(2.0)
    assert host.handle_timer(2.0) == [DeadlineExpired(Deadline.STOP)]
    assert pump(host, runner)[0].code == Code.KILL
