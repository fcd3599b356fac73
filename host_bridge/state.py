"""What an Instance is doing now, as values a hub can await or iterate instead of polling.

``InstanceState`` is a frozen snapshot. ``StateWatch`` holds the current one and
hands every change to each subscriber through the subscriber's own bounded queue,
so a subscriber created before a change sees it even if it reads later (no
polling, no missed transitions unless it falls ``maxlen`` changes behind; then
the oldest are dropped and counted in ``dropped``).

Subscriber sets are weak: a subscription nobody references any more (a loop
left with ``break``) is dropped by itself.
"""

from __future__ import annotations

import sys
import weakref
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

import anyio

from runner.protocol import State, Status

#: Changes a state subscriber may fall behind before the oldest are dropped.
STATE_QUEUE = 256


@dataclass(frozen=True)
class InstanceState:
    """One moment of an Instance's life.

    ``status`` is STH's status. ``lifecycle`` is the protocol lifecycle the host
    saw (``State``: starting, running, stopping, stopped — the Sequence ended and the
    runner waits for KILL —, completed, killed, errored, exited). ``running`` turns
    true once the Sequence's ``run()`` has started (see ``Instance.wait_running``).
    ``keepalive_ms`` is set while a STOP was answered with ALIVE. ``requires`` and
    ``provides`` are the topics the runner announced (PANG; "" for none, None until
    announced). ``done``: the runner exited, was reaped and reported; nothing
    changes after it.
    """

    status: Status
    lifecycle: State = State.STARTING
    running: bool = False
    keepalive_ms: float | None = None
    requires: str | None = None
    provides: str | None = None
    done: bool = False


class StateSubscription:
    """Async-iterate it: the state when it was made, then every change, ending after ``done``."""

    def __init__(self, watch: StateWatch, first: InstanceState, maxlen: int = STATE_QUEUE) -> None:
        self._watch = watch
        self._queue: deque[InstanceState] = deque([first], maxlen=maxlen)
        self._wakeup = anyio.Event()
        self._finished = False
        self.dropped = 0

    def _push(self, state: InstanceState) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(state)
        self._wakeup.set()

    async def receive(self) -> InstanceState | None:
        """The next state, or None after the final (``done``) state was handed out."""
        while not self._queue:
            if self._finished:
                return None
            if self._wakeup.is_set():
                self._wakeup = anyio.Event()
            await self._wakeup.wait()
        state = self._queue.popleft()
        if state.done:
            self._finished = True
            self.close()
        return state

    def close(self) -> None:
        self._watch._subscribers.discard(self)

    def __aiter__(self) -> StateSubscription:
        return self

    async def __anext__(self) -> InstanceState:
        state = await self.receive()
        if state is None:
            raise StopAsyncIteration
        return state

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UNSET = object()


class StateWatch:
    """The current InstanceState and its subscribers."""

    def __init__(self, initial: InstanceState) -> None:
        self.current = initial
        self._subscribers: weakref.WeakSet[StateSubscription] = weakref.WeakSet()

    def update(self, **changes: Any) -> None:
        """Apply ``changes``; subscribers hear of it only if something changed. Nothing changes after done."""
        current = self.current
        if current.done:
            return
        # The link syncs after every read: most calls change nothing, and a field-by-field look
        # is ~10x cheaper than the dataclass copy and compare below (which still decides).
        for name, value in changes.items():
            if getattr(current, name, _UNSET) != value:  # an unknown name: replace() names it
                break
        else:
            return
        new = replace(current, **changes)
        if new == current:
            return
        self.current = new
        for subscriber in list(self._subscribers):
            subscriber._push(new)

    def subscribe(self) -> StateSubscription:
        subscription = StateSubscription(self, self.current)
        if not self.current.done:  # a done state is handed out once, then the subscription ends
            self._subscribers.add(subscription)
        return subscription
