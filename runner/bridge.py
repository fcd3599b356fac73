"""The only way from the runner's threads into its event loop, and it never waits for the loop.

anyio's BlockingPortal waits for the loop to accept a task, which is exactly
what the control side must not do (the Sequence may be blocking the loop).
``LoopBridge`` only calls ``loop.call_soon_threadsafe``: ``call`` runs a function
on the loop soon, ``start`` runs a coroutine function as a task of the run's
TaskSet (runner/loop.py, started from that loop callback) and returns a
``concurrent.futures.Future``. Once the loop is closed (the process is exiting)
both drop the work.

Users: the ControlHandler (events), StopControl (stop handlers), Heartbeat
(health probes), InputStream (IN batches) and the output pump (credit came).
``sys.stdin`` (runner/stdin.py) wakes whichever loop awaits it, which may be one
the Sequence runs itself, so it calls that loop directly. ``run --inline``
(runner/cli/inline.py) is not the runner process and has no task group: its
``_call_on_loop`` keeps the same rule for its two hops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from .loop import TaskSet

__all__ = ["LoopBridge"]


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, tasks: TaskSet) -> None:
        self._loop = loop
        self._tasks = tasks

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; returns at once (nothing happens once the loop closed)."""
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the process is exiting
            pass

    def start(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Future[Any]:
        """Run ``async_fn(*args)`` as a task of the run's TaskSet; returns at once."""
        future: Future[Any] = Future()

        async def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = await async_fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)
            except BaseException:
                future.set_exception(RuntimeError("cancelled"))
                raise
            else:
                future.set_result(result)

        try:
            self._loop.call_soon_threadsafe(self._tasks.start_soon, task)
        except RuntimeError as exc:  # the loop is closed
            future.set_exception(exc)
        return future
