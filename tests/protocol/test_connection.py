"""The sans-IO Connection: handshake, flow control, direction rules, timers, one way in and out."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgpack
import pytest
from frame_bytes import credit, data, end, message

from runner.protocol import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Alive,
    Channel,
    Code,
    Connection,
    ConnectionClosed,
    ConnectionEvent,
    CreditAvailable,
    Data,
    Deadline,
    DeadlineExpired,
    EndOfStream,
    Event,
    Exiting,
    FlowControlError,
    HandshakeError,
    Kill,
    LocalProtocolError,
    MalformedFrame,
    Monitoring,
    Ping,
    Pong,
    ProtocolError,
    Reject,
    RemoteProtocolError,
    Role,
    SequenceCompleted,
    SequenceStopped,
    State,
    Stop,
    UnknownMessage,
)
from runner.protocol.framer import IMPLEMENTATION


def drain(conn: Connection) -> list[ConnectionEvent]:
    events: list[ConnectionEvent] = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def feed(conn: Connection, raw: bytes, now: float = 0.0) -> list[ConnectionEvent]:
    conn.receive_data(raw, now)
    return drain(conn)


def pump(src: Connection, dst: Connection, now: float = 0.0) -> list[ConnectionEvent]:
    return feed(dst, b"".join(bytes(b) for b in src.data_to_send()), now)


def ping_body(**fields: Any) -> bytes:
    body = {"protocol": PROTOCOL_VERSION, "instanceId": "x", "maxFrameSize": 1 << 16, "window": 100}
    return msgpack.packb({**body, **fields})


def pair(window: int = 1 << 16) -> tuple[Connection, Connection]:
    runner, host = Connection(Role.RUNNER, window=window), Connection(Role.HOST, window=window)
    runner.send(Ping(instance_id="id-1", token="secret", pid=42))
    (ping,) = pump(runner, host)
    assert isinstance(ping, Ping) and ping.token == "secret" and ping.pid == 42
    assert (ping.protocol, ping.window, ping.impl) == (PROTOCOL_VERSION, window, IMPLEMENTATION)
    assert host.peer_hello == ping
    host.send(Pong(app_config={"k": "v"}, args=[1, "two"]))
    (pong,) = pump(host, runner)
    assert isinstance(pong, Pong) and pong.args == [1, "two"] and pong.app_config == {"k": "v"}
    assert runner.state == host.state == State.RUNNING
    return runner, host


def test_handshake_and_no_credit_before_it() -> None:
    runner = Connection(Role.RUNNER)
    assert runner.credit(Channel.OUT) == 0
    with pytest.raises(LocalProtocolError):
        runner.send(Monitoring(healthy=True))
    assert not runner.can_send(Monitoring)
    runner, host = pair(window=1000)
    assert runner.credit(Channel.OUT) == 1000 and host.credit(Channel.IN) == 1000
    assert runner.open and host.open and runner.can_send(Monitoring)


def test_next_event_says_when_it_needs_data() -> None:
    runner, host = pair()
    assert host.next_event() is NEED_DATA
    runner.send(Event(name="a"))
    runner.send(Event(name="b"))
    host.receive_data(b"".join(runner.data_to_send()))
    assert host.next_event() == Event(name="a")
    assert host.next_event() == Event(name="b")
    assert host.next_event() is NEED_DATA


def test_version_mismatch_is_rejected_with_a_reason() -> None:
    host = Connection(Role.HOST)
    host.receive_data(message(Channel.MONITORING, Code.PING, ping_body(protocol=99)))
    with pytest.raises(HandshakeError, match="protocol version 99"):
        host.next_event()
    (reject,) = feed(Connection(Role.RUNNER), b"".join(host.data_to_send()))
    assert isinstance(reject, Reject) and "99" in reject.reason


def test_reject_by_host_application() -> None:
    runner, host = Connection(Role.RUNNER), Connection(Role.HOST)
    runner.send(Ping(instance_id="id", token="wrong"))
    pump(runner, host)
    host.send(Reject(reason="wrong token for instance id"))
    (msg,) = pump(host, runner)
    assert msg == Reject(reason="wrong token for instance id") and runner.state == State.ERRORED
    assert not host.open and not runner.open
    with pytest.raises(LocalProtocolError):
        host.send(Pong())  # one handshake answer


def test_handshake_order_on_the_sending_side() -> None:
    runner, host = Connection(Role.RUNNER), Connection(Role.HOST)
    with pytest.raises(LocalProtocolError, match="Pong answers"):
        host.send(Pong())
    with pytest.raises(LocalProtocolError, match="sent by the runner"):
        host.send(Ping(instance_id="x"))
    runner.send(Ping(instance_id="x"))
    with pytest.raises(LocalProtocolError, match="already sent"):
        runner.send(Ping(instance_id="x"))
    with pytest.raises(LocalProtocolError, match="cannot end channel"):
        runner.send_end(Channel.OUT)


def test_messages_before_handshake_are_protocol_errors() -> None:
    host = Connection(Role.HOST)
    host.receive_data(message(Channel.MONITORING, Code.MONITORING, msgpack.packb({"healthy": True})))
    with pytest.raises(HandshakeError, match="before the handshake"):
        host.next_event()
    host = Connection(Role.HOST)
    host.receive_data(data(Channel.OUT, b"x"))
    with pytest.raises(HandshakeError, match="data on channel 6 before the handshake"):
        host.next_event()


# Issue 11 item 13: an unauthenticated peer pushed credit on IN to 12.9 GB before the handshake.
BEFORE_HANDSHAKE = [
    pytest.param(Role.HOST, credit(Channel.IN, 0xFFFFFFFF), "credit on channel 5", id="host-credit"),
    pytest.param(Role.HOST, end(Channel.OUT), "end of stream on channel 6", id="host-end"),
    pytest.param(Role.RUNNER, credit(Channel.OUT, 0xFFFFFFFF), "credit on channel 6", id="runner-credit"),
    pytest.param(Role.RUNNER, end(Channel.IN), "end of stream on channel 5", id="runner-end"),
]


@pytest.mark.parametrize("role,frame,what", BEFORE_HANDSHAKE)
def test_credit_and_end_before_the_handshake_are_refused(role: Role, frame: bytes, what: str) -> None:
    conn = Connection(role)
    if role is Role.RUNNER:
        conn.send(Ping(instance_id="x"))  # sent, PONG not received yet
    conn.receive_data(frame)
    with pytest.raises(HandshakeError, match=f"{what} before the handshake"):
        conn.next_event()
    assert conn.credit(Channel.OUT if role is Role.RUNNER else Channel.IN) == 0


def test_host_refuses_credit_between_ping_and_its_pong() -> None:
    host = Connection(Role.HOST)
    host.receive_data(message(Channel.MONITORING, Code.PING, ping_body()) + credit(Channel.IN, 1 << 30))
    assert isinstance(host.next_event(), Ping)  # the PING before the bad frame is handed out
    with pytest.raises(HandshakeError, match="credit on channel 5 before the handshake"):
        host.next_event()
    assert host.credit(Channel.IN) == 100  # only what the PING announced


def test_data_flow_credit_and_end() -> None:
    runner, host = pair(window=100)
    assert runner.send_data(Channel.OUT, b"a" * 150) == 100
    assert runner.send_data(Channel.OUT, b"more") == 0
    (chunk,) = pump(runner, host)
    assert isinstance(chunk, Data) and bytes(chunk.payload) == b"a" * 100
    host.consumed(Channel.OUT, 40)
    assert host.data_to_send() == []  # credit goes back in batches
    host.consumed(Channel.OUT, 10)
    (granted,) = pump(host, runner)
    assert granted == CreditAvailable(Channel.OUT, 50)
    runner.send_end(Channel.OUT)
    (ended,) = pump(runner, host)
    assert ended == EndOfStream(Channel.OUT)
    with pytest.raises(LocalProtocolError):
        runner.send_data(Channel.OUT, b"x")


def test_sending_beyond_credit_is_caught_by_the_receiver() -> None:
    _runner, host = pair(window=10)
    host.receive_data(data(Channel.OUT, b"x" * 11))
    with pytest.raises(FlowControlError, match="channel 6"):
        host.next_event()


def test_wrong_direction_and_wrong_role_codes() -> None:
    runner, host = pair()
    host.receive_data(data(Channel.IN, b"x"))  # the runner may not write IN
    with pytest.raises(MalformedFrame, match="channel 5"):
        host.next_event()
    runner, host = pair()
    host.receive_data(message(Channel.MONITORING, Code.STOP, msgpack.packb({"timeout": 1})))
    with pytest.raises(UnknownMessage, match="4001"):
        host.next_event()
    with pytest.raises(LocalProtocolError, match="sent by the host"):
        runner.send(Kill())
    assert not runner.can_send(Kill)
    with pytest.raises(LocalProtocolError):
        host.send_data(Channel.OUT, b"x")


def test_events_go_both_ways() -> None:
    runner, host = pair()
    host.send(Event(name="ping", message={"n": 1}, source="api"))
    assert pump(host, runner) == [Event(name="ping", message={"n": 1}, source="api")]
    runner.send(Event(name="pong"))
    assert pump(runner, host) == [Event(name="pong")]


def test_host_sends_kill_when_the_stop_deadline_passes() -> None:
    runner, host = pair()
    host.send(Stop(timeout_ms=2000), now=100.0)
    assert pump(host, runner, now=100.0) == [Stop(timeout_ms=2000, can_keep_alive=False)]
    assert runner.state == State.STOPPING
    assert host.next_deadline() == pytest.approx(102.0)
    host.handle_timer(101.0)
    assert drain(host) == []
    host.handle_timer(102.0)
    assert drain(host) == [DeadlineExpired(Deadline.STOP)]
    assert pump(host, runner) == [Kill()]
    assert runner.lifecycle.final_exit_code == 138


def test_keepalive_cancels_the_kill() -> None:
    runner, host = pair()
    host.send(Stop(timeout_ms=1000, can_keep_alive=True), now=0.0)
    pump(host, runner)
    assert runner.can_send(Alive)
    runner.send(Alive(keep_alive_ms=5000))
    assert pump(runner, host, now=0.5) == [Alive(keep_alive_ms=5000)]
    assert host.next_deadline() is None
    host.handle_timer(10.0)
    assert drain(host) == [] and host.data_to_send() == []


def test_can_send_skips_messages_that_crossed() -> None:
    runner, host = pair()
    assert not runner.can_send(Alive)  # no stop in progress: ALIVE would change nothing
    host.send(Kill())
    pump(host, runner)
    assert not runner.can_send(SequenceCompleted) and runner.can_send(Exiting)
    runner.send(Exiting(exit_code=137))
    assert not runner.can_send(Monitoring) and not runner.open


def test_exit_message_then_close() -> None:
    runner, host = pair()
    runner.send(SequenceCompleted(timeout_ms=0))
    runner.send(Exiting(exit_code=0))
    assert pump(runner, host) == [SequenceCompleted(timeout_ms=0), Exiting(exit_code=0)]
    assert host.state == State.EXITED and host.lifecycle.final_exit_code == 0
    assert feed(host, b"") == [ConnectionClosed()]
    assert feed(host, b"") == []  # closed once


def test_close_inside_a_frame_is_an_error() -> None:
    runner, host = pair()
    runner.send_data(Channel.OUT, b"abc")
    raw = b"".join(runner.data_to_send())
    assert feed(host, raw[:4]) == []
    host.receive_data(b"")
    with pytest.raises(MalformedFrame, match="inside a frame"):
        host.next_event()


def test_error_comes_after_the_events_before_the_bad_frame_and_stays() -> None:
    runner, host = pair()
    runner.send(Event(name="before"))
    host.receive_data(b"".join(runner.data_to_send()) + b"\xff\xff")
    assert host.next_event() == Event(name="before")
    with pytest.raises(MalformedFrame) as first:
        host.next_event()
    assert isinstance(first.value, RemoteProtocolError) and isinstance(first.value, ProtocolError)
    host.receive_data(b"more bytes are ignored")
    with pytest.raises(MalformedFrame):
        host.next_event()


def test_a_refused_frame_keeps_the_events_before_it() -> None:
    runner, host = pair(window=10)
    runner.send(Event(name="before"))
    raw = b"".join(runner.data_to_send())
    host.receive_data(raw + data(Channel.OUT, b"x" * 11) + data(Channel.OUT, b"y"))  # beyond credit
    assert host.next_event() == Event(name="before")
    with pytest.raises(FlowControlError):
        host.next_event()


def test_local_and_remote_errors_share_one_base() -> None:
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    for remote in (MalformedFrame, FlowControlError, HandshakeError, UnknownMessage):
        assert issubclass(remote, RemoteProtocolError)


def test_stop_deadline_still_decides_after_sequence_stopped() -> None:
    runner, host = pair()
    host.send(Stop(timeout_ms=2000), now=0.0)
    pump(host, runner)
    runner.send(SequenceStopped())
    assert pump(runner, host, now=0.5) == [SequenceStopped(error=None)]
    assert host.state == State.STOPPED and host.next_deadline() == pytest.approx(2.0)
    host.handle_timer(2.0)
    assert drain(host) == [DeadlineExpired(Deadline.STOP)]
    assert pump(host, runner) == [Kill()]


def test_a_bad_message_is_refused_before_anything_is_queued() -> None:
    runner, _host = pair()
    with pytest.raises(LocalProtocolError, match="'eventName'"):
        runner.send(Event(name=5))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        runner.send(Event(name="x", message=object()))
    assert runner.data_to_send() == []


def test_importing_the_protocol_is_cheap_and_side_effect_free() -> None:
    code = (
        "import sys; import runner, runner.protocol; "
        "bad = [m for m in ('asyncio', 'anyio', 'socket', 'psutil') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""



def test_a_data_header_spends_credit_and_the_payload_follows_it() -> None:
    runner, host = pair(window=1000)
    host.send_data_header(Channel.IN, 600)
    assert host.credit(Channel.IN) == 400
    with pytest.raises(LocalProtocolError):
        host.send_data_header(Channel.IN, 401)  # more than the credit left
    with pytest.raises(LocalProtocolError):
        host.send_data_header(Channel.OUT, 10)  # the host does not send on OUT
    stream = b"".join(bytes(b) for b in host.data_to_send()) + b"p" * 600  # the caller writes the payload
    events = feed(runner, stream)
    assert [type(e) for e in events] == [Data] and bytes(events[0].payload) == b"p" * 600


def test_a_detached_frame_is_counted_against_the_window_and_comes_as_no_event() -> None:
    runner, host = pair(window=1000)
    runner.send_data(Channel.OUT, b"a" * 10)
    runner.send_data(Channel.OUT, b"b" * 700)
    runner.send_data(Channel.OUT, b"c" * 5)
    stream = b"".join(bytes(b) for b in runner.data_to_send())
    first, second_header_and_part = stream[:17], stream[17:17 + 7 + 100]
    events = feed(host, first + second_header_and_part)
    assert [bytes(e.payload) for e in events if isinstance(e, Data)] == [b"a" * 10]
    assert host.detach_data(Channel.STDOUT) is None  # held on OUT, not STDOUT
    head, rest = host.detach_data(Channel.OUT) or (b"", -1)
    assert bytes(head) == b"b" * 100 and rest == 600
    assert host.detach_data(Channel.OUT) is None  # nothing held any more
    after = stream[17 + 7 + 100 + 600:]  # the caller took the 600 bytes itself
    events = feed(host, after)
    assert [bytes(e.payload) for e in events if isinstance(e, Data)] == [b"c" * 5]
    # 715 bytes spent of the 1000-byte window: 285 more may come, and no more
    runner.send_data(Channel.OUT, b"d" * 285)
    feed(host, b"".join(bytes(b) for b in runner.data_to_send()))
    assert host.next_event() is NEED_DATA
    host.receive_data(data(Channel.OUT, b"e"))
    with pytest.raises(FlowControlError):
        host.next_event()
