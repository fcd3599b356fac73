"""runner/loop.py: the loop choice and the TaskSet the runtime's tasks run in."""

from __future__ import annotations

import asyncio

import pytest

from runner.loop import TaskSet, loop_factory, run, wants_uvloop


class Boom(BaseException):
    """Not an Exception: what a Sequence's event handler might raise past ``except Exception``."""


def test_uvloop_only_when_asked_for() -> None:
    assert not wants_uvloop({})
    assert not wants_uvloop({"SEQUENCE_RUNNER_UVLOOP": "0"})
    assert wants_uvloop({"SEQUENCE_RUNNER_UVLOOP": " 1 "}) and wants_uvloop({"SEQUENCE_RUNNER_UVLOOP": "true"})
    assert loop_factory(False) is asyncio.new_event_loop


def test_the_first_failing_task_ends_the_owner_with_its_exception() -> None:
    done: list[str] = []

    async def fails() -> None:
        await asyncio.sleep(0)
        raise Boom("from a task")

    async def sleeper() -> None:
        await asyncio.sleep(30)

    async def cancelled() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await asyncio.sleep(30)

    async def main() -> None:
        owner = asyncio.current_task()
        assert owner is not None
        tasks = TaskSet(owner)
        tasks.start_soon(cancelled)  # a cancelled task is no failure
        tasks.start_soon(sleeper)
        await asyncio.sleep(0.01)
        assert tasks.failure is None
        tasks.start_soon(fails)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            done.append("cancelled")
            tasks.raise_failure()
            raise

    with pytest.raises(Boom, match="from a task"):
        run(main(), use_uvloop=False)
    assert done == ["cancelled"]


def test_run_returns_what_main_returns() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(main(), use_uvloop=False) == "asyncio.unix_events"


def test_the_failure_is_not_chained_to_the_owners_cancellation() -> None:
    async def fails() -> None:
        raise Boom("alone")

    async def main() -> None:
        owner = asyncio.current_task()
        assert owner is not None
        tasks = TaskSet(owner)
        tasks.start_soon(fails)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            tasks.raise_failure()
            raise

    with pytest.raises(Boom) as caught:
        run(main(), use_uvloop=False)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

