"""Events from the Sequence: the last one per name, and subscribers' queues, bounded in memory.

Messages are not flow-controlled, so a runner can send events faster than the hub
reads them, under as many names as it likes. Both stores are bounded by count and
by bytes (an event's size is what it weighed on the wire: the bytes of its EVENT
body, which holds its name, its message packed as msgpack and its source, and the
keys; ``event_size`` for an event that did not come from the wire), and what they
drop is counted:

* the last event per name (``last_event``): at most ``max_names`` names and
  ``max_bytes``; when a new event does not fit, the names published least
  recently go first (``evicted``); an event larger than ``max_bytes`` on its own
  is not kept (also counted);
* each subscriber's queue: at most ``SUBSCRIBER_QUEUE`` events and ``max_bytes``;
  a subscriber that falls behind loses its oldest queued events (``dropped``).

Subscriber sets are weak: a subscription nobody references any more is dropped.
"""

from __future__ import annotations

import sys
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

import anyio
import msgpack

#: Events a subscriber may fall behind before its oldest are dropped.
SUBSCRIBER_QUEUE = 10_000
#: Defaults of the event_names and event_memory options.
MAX_EVENT_NAMES = 1000
MAX_EVENT_BYTES = 8 << 20


@dataclass(frozen=True)
class EventMessage:
    """An EVENT from the runner: ``name``, ``message`` (None when absent) and ``source``."""

    name: str
    message: Any
    source: str | None = None


@dataclass(frozen=True)
class EventMemory:
    """What the last-event store holds (``names``, ``bytes``) and has let go (``evicted``)."""

    names: int
    bytes: int
    evicted: int


def event_size(event: EventMessage) -> int:
    """Bytes an event costs when its body's size is not known: its name, its message as msgpack
    and its source (never more than the body that carries them)."""
    try:
        packed = len(msgpack.packb(event.message))
    except (TypeError, ValueError):  # pragma: no cover - it came from msgpack, so it packs
        packed = len(repr(event.message))
    return len(event.name) + packed + len(event.source or "")


class EventSubscription:
    """Events published after it was created (optionally only those named ``name``).

    Async-iterate it; iteration ends when the Instance's connection ends. ``dropped``
    counts events it lost by falling behind (its queue holds at most SUBSCRIBER_QUEUE
    events and the hub's ``max_bytes``).
    """

    def __init__(self, hub: EventHub, name: str | None) -> None:
        self._hub = hub
        self._ref: weakref.ref[EventSubscription] | None = None  # its entry in the hub's set
        self.name = name
        self.queue: deque[tuple[EventMessage, int]] = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self._wakeup = anyio.Event()

    def _push(self, event: EventMessage, size: int) -> None:
        if self.name is not None and event.name != self.name:
            return
        self.queue.append((event, size))
        self.queued_bytes += size
        limit = self._hub.max_bytes
        while len(self.queue) > SUBSCRIBER_QUEUE or (self.queued_bytes > limit and len(self.queue) > 1):
            _, old = self.queue.popleft()
            self.queued_bytes -= old
            self.dropped += 1
        self._wakeup.set()

    def _wake(self) -> None:
        self._wakeup.set()

    async def receive(self) -> EventMessage | None:
        """The next event, or None once the connection ended and the queue is empty."""
        while not self.queue:
            if self._hub.closed:
                return None
            if self._wakeup.is_set():
                self._wakeup = anyio.Event()
            await self._wakeup.wait()
        event, size = self.queue.popleft()
        self.queued_bytes -= size
        return event

    def close(self) -> None:
        self._hub._subscribers.discard(self._ref)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> EventMessage:
        event = await self.receive()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """The last event per name (bounded) and the subscribers."""

    def __init__(self, max_names: int = MAX_EVENT_NAMES, max_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_names = max_names
        self.max_bytes = max_bytes
        self.last: OrderedDict[str, EventMessage] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self.evicted = 0
        # Weak references, each removing itself when its subscription is collected (a weakref.WeakSet,
        # but without its Python-level iteration guard on every event).
        self._subscribers: set[weakref.ref[EventSubscription]] = set()
        self.closed = False

    def publish(self, event: EventMessage, size: int | None = None) -> None:
        """Keep and hand out ``event``; ``size``: the bytes of the body it came in (else event_size)."""
        if size is None:
            size = event_size(event)
        self._remember(event, size)
        for ref in tuple(self._subscribers):
            subscriber = ref()
            if subscriber is not None:
                subscriber._push(event, size)

    def _remember(self, event: EventMessage, size: int) -> None:
        name = event.name
        if name in self.last:
            del self.last[name]
            self._bytes -= self._sizes.pop(name)
        if size > self.max_bytes:
            self.evicted += 1  # too large to keep on its own
            return
        self.last[name] = event
        self._sizes[name] = size
        self._bytes += size
        while len(self.last) > self.max_names or self._bytes > self.max_bytes:
            old, _ = self.last.popitem(last=False)
            self._bytes -= self._sizes.pop(old)
            self.evicted += 1

    def memory(self) -> EventMemory:
        return EventMemory(len(self.last), self._bytes, self.evicted)

    def subscribe(self, name: str | None = None) -> EventSubscription:
        subscription = EventSubscription(self, name)
        if not self.closed:
            subscription._ref = weakref.ref(subscription, self._subscribers.discard)
            self._subscribers.add(subscription._ref)
        return subscription

    def close(self) -> None:
        self.closed = True
        for ref in tuple(self._subscribers):
            subscriber = ref()
            if subscriber is not None:
                subscriber._wake()
