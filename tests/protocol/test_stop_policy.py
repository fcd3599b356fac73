"""StopPolicy (runner/protocol/stop.py): the runner's stop rules, sans-IO, every case by itself."""

from __future__ import annotations

from runner.protocol import ExitCode
from runner.protocol.stop import KeepAlive, StopPolicy, exit_delay_ms


def test_no_stop_no_deadline_and_kill_is_137() -> None:
    policy = StopPolicy()
    assert policy.next_deadline() is None
    assert policy.remaining_ms(5.0) is None
    assert policy.keep_alive() is KeepAlive.NO_STOP
    assert policy.expire(1e9) is None
    assert policy.kill_exit_code() == ExitCode.KILLED


def test_a_stop_has_its_deadline_and_the_handlers_finishing_first_ends_it() -> None:
    policy = StopPolicy()
    stop = policy.begin(2000, False, now=10.0)
    assert policy.next_deadline() == 12.0
    assert policy.remaining_ms(11.5) == 500.0
    assert policy.expire(11.9) is None  # not yet
    assert policy.handlers_finished(stop) is True  # SEQUENCE_STOPPED goes out
    assert policy.next_deadline() is None
    assert policy.expire(13.0) is None  # nothing left to expire
    assert policy.handlers_finished(stop) is False  # only once
    assert policy.kill_exit_code() == ExitCode.STOPPED


def test_the_deadline_passing_first_ends_the_stop_and_the_handlers_decide_nothing() -> None:
    policy = StopPolicy()
    stop = policy.begin(1000, True, now=0.0)
    assert policy.expire(1.0) == 1000.0  # the timeout, for the message
    assert policy.next_deadline() is None
    assert policy.handlers_finished(stop) is False
    assert policy.remaining_ms(1.0) is None


def test_keepalive_when_allowed_cancels_the_deadline_and_the_handlers_end_nothing() -> None:
    policy = StopPolicy()
    stop = policy.begin(1000, True, now=0.0)
    assert policy.keep_alive() is KeepAlive.SEND
    assert policy.next_deadline() is None
    assert policy.keep_alive() is KeepAlive.NO_STOP  # this stop has no deadline any more
    assert policy.handlers_finished(stop) is False  # the Sequence keeps running
    assert policy.kill_exit_code() == ExitCode.STOPPED  # a later KILL still ends a stop


def test_keepalive_not_allowed_is_ignored_and_keeps_the_deadline() -> None:
    policy = StopPolicy()
    policy.begin(1000, False, now=0.0)
    assert policy.keep_alive() is KeepAlive.NOT_ALLOWED
    assert policy.next_deadline() == 1.0


def test_a_newer_stop_replaces_the_older_one() -> None:
    policy = StopPolicy()
    first = policy.begin(1000, True, now=0.0)
    second = policy.begin(5000, False, now=0.5)
    assert policy.next_deadline() == 5.5
    assert policy.handlers_finished(first) is False  # the older handlers decide nothing
    assert policy.expire(1.0) is None  # nor does the older deadline
    assert policy.handlers_finished(second) is True


def test_run_completing_ends_the_deadline() -> None:
    policy = StopPolicy()
    stop = policy.begin(1000, False, now=0.0)
    policy.completed()
    assert policy.next_deadline() is None
    assert policy.expire(2.0) is None
    assert policy.handlers_finished(stop) is False


def test_a_negative_timeout_is_an_immediate_deadline() -> None:
    policy = StopPolicy()
    policy.begin(-5, False, now=3.0)
    assert policy.next_deadline() == 3.0
    assert policy.expire(3.0) == 0.0


def test_exit_delay_is_the_sequences_exit_timeout_within_bounds() -> None:
    assert exit_delay_ms(None) == 0
    assert exit_delay_ms(250) == 250
    assert exit_delay_ms(-1) == 0
    assert exit_delay_ms(60_000) == 10_000
