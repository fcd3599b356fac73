"""Unit tests of runner/protocol/sth_translator.py: protocol v1 <-> STH, no sockets, no threads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.protocol import (
    Alive,
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
    SequenceCompleted,
    SequenceStopped,
    State,
    Stop,
)
from runner.protocol.sth_translator import ACCEPTED, REFUSED, STHTranslator, control_message

IID = "0123456789abcdef0123456789abcdef0123"
HELLO = Ping(instance_id=IID, token="", created=1000)


def translator(**connect_info: Any) -> STHTranslator:
    return STHTranslator(IID, {"id": "seq"}, connect_info, created_ms=42)


def running(**connect_info: Any) -> STHTranslator:
    """A translator past the handshake."""
    tr = translator(**connect_info)
    tr.ping(HELLO, pid=7, now=0.0)
    tr.accept_pong(Pong(), 0.0)
    return tr


def line(code: int, data: dict[str, Any]) -> bytes:
    return json.dumps([code, data]).encode() + b"\n"


def decoded(raw: bytes) -> list[Any]:
    assert raw.endswith(b"\r\n")
    return list(json.loads(raw))


# -- CONTROL lines -> messages ---------------------------------------------------------------------


def test_control_lines_become_messages() -> None:
    tr = running()
    data = b"".join([
        line(4001, {"timeout": 2500, "canCallKeepalive": True}),
        line(4001, {}),
        line(4002, {}),
        line(4003, {"monitoringRate": 2}),
        line(4004, {}),
        line(5001, {"eventName": "ping", "message": {"a": 1}, "source": "other"}),
        line(5001, {"eventName": "bare"}),
    ])
    messages, notes = tr.control(data)
    assert notes == []
    assert messages == [
        Stop(timeout_ms=2500.0, can_keep_alive=True),
        Stop(timeout_ms=7000.0, can_keep_alive=False),  # STH's default stop timeout
        Kill(),
        MonitoringRate(rate=2.0),
        MonitoringReply(),
        Event(name="ping", message={"a": 1}, source="other"),
        Event(name="bare", message=None, source=None),
    ]


def test_pong_falls_back_to_the_connect_info() -> None:
    tr = translator(appConfig={"k": 1}, args=["a"])
    assert tr.control(line(4000, {}))[0] == [Pong(app_config={"k": 1}, args=["a"])]
    assert tr.control(line(4000, {"appConfig": {}, "args": []}))[0] == [Pong(app_config={}, args=[])]


def test_bad_control_lines_and_messages_are_skipped_with_a_note() -> None:
    tr = running()
    data = (b"not json\n" + line(4001, {"timeout": "soon"}) + line(4003, {"monitoringRate": -1})
            + line(5001, {"message": 1}) + line(3013, {"contentType": "text/plain"}) + line(4002, {}))
    messages, notes = tr.control(data)
    assert messages == [Kill()]  # what follows a bad line is still decoded
    assert len(notes) == 5
    assert "bad CONTROL line" in notes[0] and "line 1 is not JSON" in notes[0]
    assert "STOP timeout 'soon' is not a number" in notes[1]
    assert "monitoringRate -1 is not a number >= 0" in notes[2]
    assert "EVENT without a string eventName" in notes[3]
    assert notes[4] == "ignoring CONTROL code 3013 (no handler in a runner)"


def test_a_last_control_line_without_newline_counts_at_the_end() -> None:
    tr = running()
    assert tr.control(b'[4002, {}]') == ([], [])
    assert tr.control(None) == ([Kill()], [])


def test_control_message_is_none_for_codes_a_runner_has_no_handler_for() -> None:
    assert control_message(3001, {}, {}) is None
    with pytest.raises(ValueError, match="is not a number"):
        control_message(4001, {"timeout": True}, {})


def test_received_messages_move_status_and_lifecycle() -> None:
    tr = running()
    assert tr.received(Stop(timeout_ms=100, can_keep_alive=False), 1.0) is None
    assert (tr.status, tr.lifecycle.state) == ("stopping", State.STOPPING)
    assert tr.received(Kill(), 2.0) is None
    assert (tr.status, tr.lifecycle.state) == ("killing", State.KILLED)
    assert tr.received(Event(name="x"), 3.0) is None


def test_a_message_the_lifecycle_refuses_is_noted_and_still_delivered() -> None:
    tr = translator()  # before PONG: a STOP is out of order
    note = tr.received(Stop(timeout_ms=1, can_keep_alive=False), 0.0)
    assert note is not None and "not allowed while starting" in note
    assert tr.status == "stopping"


# -- messages -> MONITORING lines ----------------------------------------------------------------------


def test_ping_carries_sths_fields() -> None:
    tr = translator(appConfig={"k": 1})
    code, data = decoded(tr.ping(HELLO, pid=7, now=0.0))
    assert code == 3000
    assert data == {"id": IID, "sequenceInfo": {"id": "seq"}, "created": 1000,
                    "payload": {"appConfig": {"k": 1}, "system": {"processPID": "7"}},
                    "status": "starting", "inputHeadersSent": False}
    assert not tr.handshake_done
    tr.accept_pong(Pong(), 0.0)
    assert tr.handshake_done


def test_outgoing_bodies() -> None:
    tr = running()
    assert decoded(tr.outgoing(Monitoring(healthy=False, stats={"rss": 1}), 0.0)) == [3001, {"healthy": False}]
    assert tr.outgoing(Monitoring(healthy=True, stats={"starting": True}), 0.0) is ACCEPTED  # no verdict yet
    assert decoded(tr.outgoing(Event(name="e"), 0.0)) == [5001, {"eventName": "e"}]
    assert decoded(tr.outgoing(Event(name="e", message=[1]), 0.0)) == [5001, {"eventName": "e", "message": [1]}]
    assert tr.outgoing(Alive(keep_alive_ms=5.0), 0.0) is REFUSED  # no stop to keep alive from
    tr.received(Stop(timeout_ms=100, can_keep_alive=True), 0.0)
    assert decoded(tr.outgoing(Alive(keep_alive_ms=5.0), 0.0)) == [3010, {"keepAlive": 5.0}]
    assert decoded(tr.outgoing(Error(message="m", stack="s", exit_code=23), 0.0)) == [
        3003, {"exitCode": 23, "message": "m", "errorCode": 23, "stack": "s"}]
    assert tr.status == "errored"


def test_sequence_stopped_and_completed() -> None:
    tr = running()
    error = {"message": "E: x", "stack": "tb"}
    assert decoded(tr.outgoing(SequenceStopped(error=error), 0.0)) == [3006, {"sequenceError": error}]
    tr = running()
    assert decoded(tr.outgoing(SequenceStopped(), 0.0)) == [3006, {}]
    tr = running()
    assert decoded(tr.outgoing(SequenceCompleted(timeout_ms=1000), 0.0)) == [3011, {"timeout": 1000}]
    assert tr.status == "completed"


def test_what_sth_has_no_use_for_is_accepted_or_refused_without_a_line() -> None:
    tr = running()
    assert tr.outgoing(Exiting(exit_code=0, reason="done"), 0.0) is ACCEPTED  # the exit-code file says it
    assert tr.outgoing(HELLO, 0.0) is REFUSED  # PING goes only with the handshake


def test_a_lifecycle_message_that_crossed_with_the_hosts_is_refused() -> None:
    tr = running()
    tr.received(Kill(), 0.0)
    assert tr.outgoing(SequenceCompleted(timeout_ms=0), 0.0) is REFUSED
    assert tr.status == "killing"


def test_an_event_that_json_cannot_hold_is_the_senders_error() -> None:
    tr = running()
    with pytest.raises(LocalProtocolError, match="cannot be encoded as JSON"):
        tr.outgoing(Event(name="e", message=b"\x00"), 0.0)


# -- PANG: each fact once (issue 11 items 1, 2) ----------------------------------------------------------


def pangs_sent(tr: STHTranslator, *pangs: Pang) -> list[dict[str, Any]]:
    sent = []
    for pang in pangs:
        out = tr.outgoing(pang, 0.0)
        if isinstance(out, bytes):
            code, data = decoded(out)
            assert code == 3012
            sent.append(data)
        else:
            assert out is ACCEPTED
    return sent


def sth_routings(pangs: list[dict[str, Any]]) -> int:
    """How often STH's hub routes the requires topic into the Instance for these PANGs (ref §10)."""
    requires, routings = "", 0
    for pang in pangs:
        requires = requires or pang.get("requires") or ""
        if requires and pang.get("contentType"):
            routings += 1
    return routings


def test_a_topic_consumers_requires_goes_once_and_an_empty_provides_not_at_all() -> None:
    tr = running()
    sent = pangs_sent(tr, Pang(requires="names", content_type="text/plain"),
                      Pang(requires="names", content_type="text/plain"),
                      Pang(provides="", content_type="text/plain"))
    assert sent == [{"requires": "names", "contentType": "text/plain"}]
    assert sth_routings(sent) == 1
    assert tr.input_from_topic and tr.status == "running"
    assert tr.pang_lines() == [b'[3012,{"requires":"names","contentType":"text/plain"}]\r\n']


def test_a_requires_set_at_run_time_follows_the_first_pang_once() -> None:
    tr = running()
    sent = pangs_sent(tr, Pang(requires="", content_type=""),
                      Pang(requires="names", content_type="text/plain"),
                      Pang(provides="greetings", content_type="text/plain"),
                      Pang(requires="names", content_type="text/plain"))
    assert sent == [{"requires": "", "contentType": ""},
                    {"requires": "names", "contentType": "text/plain"},
                    {"provides": "greetings", "contentType": "text/plain", "outputEncoding": None}]


def test_an_input_topic_without_a_declaration_is_announced_with_a_content_type() -> None:
    tr = running(inputTopic="names")
    sent = pangs_sent(tr, Pang(requires="", content_type=""), Pang(requires="", content_type=""))
    assert sent == [{"requires": "names", "contentType": "text/plain"}]


# -- the first PANG, right after PONG (before the Sequence is loaded) --------------------------------------


def after_first_pang(**connect_info: Any) -> STHTranslator:
    """A translator past PONG and STH's first PANG, as in a runner."""
    tr = running(**connect_info)
    assert tr.first_pang() == b'[3012,{"requires":"","contentType":""}]\r\n'
    return tr


def test_the_first_pang_is_recorded_and_makes_the_instance_running() -> None:
    tr = after_first_pang()
    assert tr.status == "running" and tr.pangs == [{"requires": "", "contentType": ""}]
    assert not tr.input_from_topic  # no content type: nothing is routed, IN still has its header block
    assert tr.input(b"Content-Type: text/plain\r\n\r\nx") == ([InputContentType(content_type="text/plain"), b"x"],
                                                               None)
    assert tr.pang_lines() == [b'[3012,{"requires":"","contentType":""}]\r\n']  # a reconnect sends it again


def test_after_the_first_pang_the_loaded_pang_goes_only_if_it_names_a_topic() -> None:
    assert pangs_sent(after_first_pang(), Pang(requires="", content_type=""),
                      Pang(requires="", content_type="application/x-ndjson"),  # no topic: nothing for STH
                      Pang(provides="", content_type="text/plain")) == []
    tr = after_first_pang()
    sent = pangs_sent(tr, Pang(requires="names", content_type="text/plain"),
                      Pang(requires="names", content_type="text/plain"),
                      Pang(provides="", content_type="text/plain"))
    assert sent == [{"requires": "names", "contentType": "text/plain"}]
    assert sth_routings(tr.pangs) == 1 and tr.input_from_topic
    assert pangs_sent(after_first_pang(), Pang(requires="", content_type=""),
                      Pang(provides="greetings", content_type="text/plain")) == [
        {"provides": "greetings", "contentType": "text/plain", "outputEncoding": None}]


def test_after_the_first_pang_an_input_topic_without_a_declaration_is_announced_once() -> None:
    tr = after_first_pang(inputTopic="names")
    sent = pangs_sent(tr, Pang(requires="", content_type=""), Pang(requires="", content_type=""))
    assert sent == [{"requires": "names", "contentType": "text/plain"}]
    assert tr.pangs == [{"requires": "", "contentType": ""}, {"requires": "names", "contentType": "text/plain"}]
    assert sth_routings(tr.pangs) == 1


# -- IN: the header block -----------------------------------------------------------------------------


def test_the_header_block_becomes_the_input_content_type_before_the_first_byte() -> None:
    tr = running()
    assert tr.input(b"Content-Type: application/x-nd") == ([], None)
    assert tr.input(b"json\r\n\r\n{\"a\"") == (
        [InputContentType(content_type="application/x-ndjson"), b'{"a"'], None)
    assert tr.input(b": 1}\n") == ([b": 1}\n"], None)
    assert tr.headers_seen
    assert tr.input_ended() is None


def test_a_bad_header_block_is_noted_and_the_input_taken_as_it_is() -> None:
    tr = running()
    parts, note = tr.input(b"no colon here\r\n\r\nbody")
    assert parts == [b"no colon here\r\n\r\nbody"]
    assert note is not None and "bad IN header block" in note


def test_input_that_ends_inside_the_header_block_is_noted() -> None:
    tr = running()
    tr.input(b"Content-Type: text/pl")
    note = tr.input_ended()
    assert note is not None and "IN ended inside the header block" in note


def test_topic_fed_input_has_no_header_block() -> None:
    assert running(inputTopic="names").input(b"Content-Type: x\r\n\r\n") == (
        [b"Content-Type: x\r\n\r\n"], None)
    tr = running()
    pangs_sent(tr, Pang(requires="names", content_type="text/plain"))  # the hub routes a topic to IN
    assert tr.input(b"raw") == ([b"raw"], None)


# -- reconnect ----------------------------------------------------------------------------------------


def test_a_reconnects_ping_says_status_and_whether_the_header_block_was_sent() -> None:
    tr = running()
    tr.received(Stop(timeout_ms=100, can_keep_alive=True), 0.0)
    code, data = decoded(tr.reconnect_ping(pid=9))
    assert code == 3000
    assert (data["status"], data["inputHeadersSent"], data["created"]) == ("stopping", False, 42)
    tr.input(b"Content-Type: text/plain\r\n\r\n")
    assert decoded(tr.reconnect_ping(pid=9))[1]["inputHeadersSent"] is True


def test_reconnected_starts_the_control_decoder_and_in_afresh() -> None:
    tr = running()
    tr.control(b'[4002,')  # half a line on the lost connection
    tr.input(b"Content-Type: text/plain\r\n\r\nab")
    tr.reconnect_ping(pid=9)
    tr.reconnected()
    assert tr.control(line(4001, {"timeout": 5})) == ([Stop(timeout_ms=5.0, can_keep_alive=False)], [])
    assert tr.input(b"cd") == ([b"cd"], None)  # the host said inputHeadersSent: no second block
