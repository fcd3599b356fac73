"""The lifecycle table: every (state, message class) pair transitions, is a no-op, or raises."""

from __future__ import annotations

import itertools

import pytest

from runner.protocol import (
    Alive,
    Code,
    Error,
    Event,
    ExitCode,
    Exiting,
    Kill,
    Monitoring,
    Pang,
    Ping,
    Pong,
    ProtocolError,
    Reject,
    RemoteProtocolError,
    SequenceCompleted,
    SequenceStopped,
    Stop,
)
from runner.protocol.errors import LocalProtocolError
from runner.protocol.events import MESSAGES, Message
from runner.protocol.lifecycle import (
    LIFECYCLE_MESSAGES,
    TRANSITIONS,
    Deadline,
    Lifecycle,
    NoOp,
    Refused,
    State,
)

SAMPLES: dict[type[Message], Message] = {
    Ping: Ping(instance_id="x"),
    Pong: Pong(),
    Reject: Reject(reason="no"),
    Stop: Stop(timeout_ms=2000, can_keep_alive=True),
    Alive: Alive(keep_alive_ms=1000),
    SequenceStopped: SequenceStopped(),
    SequenceCompleted: SequenceCompleted(),
    Kill: Kill(),
    Error: Error(message="boom"),
    Exiting: Exiting(exit_code=0),
}


def in_state(state: State) -> Lifecycle:
    life = Lifecycle()
    life.state = state
    return life


def test_table_is_complete_and_keyed_by_class() -> None:
    assert set(SAMPLES) == set(LIFECYCLE_MESSAGES)
    for state in State:
        assert set(TRANSITIONS[state]) == set(LIFECYCLE_MESSAGES), state
        for target in TRANSITIONS[state].values():
            assert isinstance(target, State) or target in (NoOp, Refused)


@pytest.mark.parametrize(
    "state,cls", list(itertools.product(list(State), sorted(LIFECYCLE_MESSAGES, key=lambda c: c.code)))
)
def test_every_pair_transitions_or_raises(state: State, cls: type[Message]) -> None:
    life = in_state(state)
    target = TRANSITIONS[state][cls]
    assert life.target(cls) is target
    if target is Refused:
        with pytest.raises(RemoteProtocolError, match=Code(cls.code).name):
            life.apply(SAMPLES[cls], now=0.0)
        with pytest.raises(LocalProtocolError):
            life.apply(SAMPLES[cls], now=0.0, error=LocalProtocolError)
        assert life.state == state  # a refused message changes nothing
    elif target is NoOp:
        assert life.apply(SAMPLES[cls], now=0.0) == state
    else:
        assert life.apply(SAMPLES[cls], now=0.0) == target


@pytest.mark.parametrize("state", [State.STARTING, State.EXITED])
def test_ordinary_messages_are_refused_outside_an_open_connection(state: State) -> None:
    with pytest.raises(ProtocolError):
        in_state(state).apply(Monitoring(healthy=True), now=0.0)
    assert not in_state(state).can_send(Monitoring)


def test_ordinary_messages_do_not_change_an_open_state() -> None:
    life = in_state(State.STOPPING)
    assert life.apply(Event(name="x"), now=0.0) == State.STOPPING
    assert life.apply(Pang(provides="t"), now=0.0) == State.STOPPING
    assert life.can_send(Event) and life.can_send(Pang)


def test_can_send_only_what_changes_something() -> None:
    assert not in_state(State.RUNNING).can_send(Alive)  # no-op: no stop in progress
    assert in_state(State.STOPPING).can_send(Alive)
    assert not in_state(State.STOPPED).can_send(Alive)  # refused
    assert in_state(State.STOPPED).can_send(Kill)
    assert not in_state(State.KILLED).can_send(SequenceCompleted)
    for state in State:
        expected = {cls for cls in LIFECYCLE_MESSAGES if isinstance(TRANSITIONS[state][cls], State)}
        assert {cls for cls in MESSAGES.values() if cls in LIFECYCLE_MESSAGES and in_state(state).can_send(cls)} \
            == expected


def test_stop_sets_a_deadline_in_milliseconds_and_keepalive_clears_it() -> None:
    life = in_state(State.RUNNING)
    life.apply(Stop(timeout_ms=1500), now=10.0)
    assert life.deadline == pytest.approx(11.5)
    assert life.expire(11.0) is None
    life.apply(Alive(keep_alive_ms=0), now=11.0)
    assert life.keepalive and life.deadline is None and life.state == State.STOPPING
    life.apply(Stop(timeout_ms=0), now=20.0)
    assert not life.keepalive
    assert life.expire(20.0) == Deadline.STOP
    assert life.expire(99.0) is None  # a deadline fires once


def test_exit_code_implied_by_kill_after_stop() -> None:
    life = in_state(State.RUNNING)
    life.apply(Kill(), now=0.0)
    assert life.final_exit_code == ExitCode.KILLED
    life = in_state(State.RUNNING)
    life.apply(Stop(timeout_ms=100), now=0.0)
    life.apply(Kill(), now=0.0)
    assert life.final_exit_code == ExitCode.STOPPED
    life.apply(Exiting(exit_code=5), now=0.0)
    assert life.state == State.EXITED and life.final_exit_code == 5


def test_completion_and_stop_set_an_exit_deadline() -> None:
    life = in_state(State.RUNNING)
    life.apply(SequenceCompleted(), now=1.0)
    assert life.deadline_kind == Deadline.EXIT and life.deadline == pytest.approx(1.0 + life.exit_grace)

