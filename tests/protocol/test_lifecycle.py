"""The lifecycle table: every (state, message) pair transitions or raises ProtocolError."""

from __future__ import annotations

import itertools

import pytest

from runner.protocol import Code, ExitCode, ProtocolError
from runner.protocol.lifecycle import LIFECYCLE_CODES, TABLE, Deadline, Lifecycle, State

BODIES = {
    Code.STOP: {"timeout": 2000, "canCallKeepalive": True},
    Code.ALIVE: {"keepAlive": 1000},
    Code.EXITING: {"exitCode": 0},
    Code.ERROR: {"message": "boom"},
    Code.REJECT: {"reason": "no"},
}


def in_state(state: State) -> Lifecycle:
    life = Lifecycle()
    life.state = state
    return life


def test_table_is_complete() -> None:
    for state in State:
        assert set(TABLE[state]) == set(LIFECYCLE_CODES), state


@pytest.mark.parametrize("state,code", list(itertools.product(list(State), LIFECYCLE_CODES)))
def test_every_pair_transitions_or_raises(state: State, code: Code) -> None:
    life = in_state(state)
    target = TABLE[state][code]
    body = BODIES.get(code, {})
    if target == "error":
        with pytest.raises(ProtocolError):
            life.handle(code, body, now=0.0)
        assert life.state == state  # a refused message changes nothing
    elif target == "same":
        assert life.handle(code, body, now=0.0) == state
    else:
        assert life.handle(code, body, now=0.0) == target


@pytest.mark.parametrize("state", [State.STARTING, State.EXITED])
def test_ordinary_messages_are_refused_outside_an_open_connection(state: State) -> None:
    with pytest.raises(ProtocolError):
        in_state(state).handle(Code.MONITORING, {"healthy": True}, now=0.0)


def test_ordinary_messages_do_not_change_an_open_state() -> None:
    life = in_state(State.STOPPING)
    assert life.handle(Code.EVENT, {"eventName": "x"}, now=0.0) == State.STOPPING


def test_stop_sets_a_deadline_in_milliseconds_and_keepalive_clears_it() -> None:
    life = in_state(State.RUNNING)
    life.handle(Code.STOP, {"timeout": 1500}, now=10.0)
    assert life.deadline == pytest.approx(11.5)
    assert life.expire(11.0) is None
    life.handle(Code.ALIVE, {"keepAlive": 0}, now=11.0)
    assert life.keepalive and life.deadline is None and life.state == State.STOPPING
    life.handle(Code.STOP, {"timeout": 0}, now=20.0)
    assert not life.keepalive
    assert life.expire(20.0) == Deadline.STOP
    assert life.expire(99.0) is None  # a deadline fires once


def test_exit_code_implied_by_kill_after_stop() -> None:
    life = in_state(State.RUNNING)
    life.handle(Code.KILL, {}, now=0.0)
    assert life.final_exit_code == ExitCode.KILLED
    life = in_state(State.RUNNING)
    life.handle(Code.STOP, {"timeout": 100}, now=0.0)
    life.handle(Code.KILL, {}, now=0.0)
    assert life.final_exit_code == ExitCode.STOPPED
    life.handle(Code.EXITING, {"exitCode": 5}, now=0.0)
    assert life.state == State.EXITED and life.final_exit_code == 5


def test_completion_and_stop_set_an_exit_deadline() -> None:
    life = in_state(State.RUNNING)
    life.handle(Code.SEQUENCE_COMPLETED, {}, now=1.0)
    assert life.deadline_kind == Deadline.EXIT and life.deadline == pytest.approx(1.0 + life.exit_grace)


def test_effect_tells_a_sender_what_a_message_would_do() -> None:
    from runner.protocol.lifecycle import NO_OP, REFUSED

    assert in_state(State.RUNNING).effect(Code.ALIVE) == NO_OP
    assert in_state(State.STOPPING).effect(Code.ALIVE) == State.STOPPING
    assert in_state(State.STOPPED).effect(Code.ALIVE) == REFUSED
    assert in_state(State.RUNNING).effect(Code.MONITORING) == NO_OP
    assert in_state(State.EXITED).effect(Code.MONITORING) == REFUSED
