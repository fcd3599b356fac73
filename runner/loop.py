"""The runner's event loop: asyncio's own (uvloop when asked for), and the tasks its parts run in.

The runner ran on ``anyio.run``. anyio's asyncio backend imports ``anyio._core._sockets``,
which imports ssl unguarded, and uvloop imports ssl when it is imported: ~4.3 MiB of
RSS (libssl, libcrypto) and ~6 ms an idle runner never uses (runner/ssl_deferral.py).
The runner itself needs from them only a loop, a task set whose first failure ends the
run, and sleep: asyncio has those. A Sequence can still use anyio (it imports it, and
anyio runs on the runner's loop like on any asyncio loop) or ask for uvloop.

uvloop is opt-in (``SEQUENCE_RUNNER_UVLOOP=1``): measured side by side it no longer
moves the runner's throughput (lines 1.01x, bulk 1.08x in asyncio's favour: the runner's
I/O runs in its own threads; docs/benchmarks.md), and it brings ssl back.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

__all__ = ["TaskSet", "run", "wants_uvloop"]

UVLOOP_ENV = "SEQUENCE_RUNNER_UVLOOP"


def wants_uvloop(env: Mapping[str, str] = os.environ) -> bool:
    """``SEQUENCE_RUNNER_UVLOOP=1`` (or true/yes): run on uvloop when it is installed."""
    return env.get(UVLOOP_ENV, "0").strip().lower() in ("1", "true", "yes")


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when asked for and installed, else asyncio's own. Never ``uvloop.install()``:
    a loop the Sequence makes itself stays asyncio's."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, Any], use_uvloop: bool) -> Any:
    """Run ``main`` on a new loop until it ends; what it raises comes out here. A KeyboardInterrupt
    or SystemExit raised in any task comes out too (asyncio lets those two through the loop)."""
    factory = loop_factory(use_uvloop)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # pragma: no cover - 3.10: asyncio.Runner is 3.11's
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class TaskSet:
    """The tasks of a run (the LoopBridge's, the input's), owned by the task that runs the run.

    The first task that ends with an exception other than a cancellation cancels the owner,
    which raises that exception (``raise_failure``); like a task group whose body never
    ends on its own (the run ends the process). A cancelled task is no failure."""

    def __init__(self, owner: asyncio.Task[Any]) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()  # strong references: the loop keeps weak ones
        self.failure: BaseException | None = None

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``fn(*args)`` as a task (on the loop's thread)."""
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.failure is None:
            self.failure = exc
            self._owner.cancel()

    def raise_failure(self) -> None:
        """In the owner, on its cancellation: the failure that caused it, if a task failed (not chained
        to the cancellation, which is only how it got here)."""
        if self.failure is not None:
            raise self.failure from None
