"""Handing work to the event loop from other threads without ever waiting for it.

anyio's BlockingPortal waits for the loop to accept a task, which is exactly
what the control plane must not do (the Sequence may be blocking the loop).
``LoopBridge`` only calls ``loop.call_soon_threadsafe`` and returns a
``concurrent.futures.Future``; a small serving task starts the work in the
runner's anyio task group (anyio only spawns from inside a task, not from a
bare loop callback).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any


class LoopBridge:
    def __init__(self, loop: Any, task_group: Any) -> None:
        import asyncio

        self._loop = loop
        self._task_group = task_group
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    async def serve(self) -> None:
        """Start each handed-over task in the task group (run this as a task of that group)."""
        while True:
            self._task_group.start_soon(await self._queue.get())

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; returns at once."""
        self._loop.call_soon_threadsafe(fn, *args)

    def start(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Future[Any]:
        """Run ``async_fn(*args)`` as a task of the runner's task group; returns at once."""
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
            self._loop.call_soon_threadsafe(self._queue.put_nowait, task)
        except RuntimeError as exc:  # the loop is closed
            future.set_exception(exc)
        return future
