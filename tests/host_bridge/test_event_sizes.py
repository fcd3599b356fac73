"""Event memory is weighed by the EVENT body each event came in (no second msgpack of the message),
and that weight is never below what packing the event again gave (the bound only got stricter)."""

from __future__ import annotations

import gc

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from host_bridge.events import EventHub, EventMessage, event_size
from host_bridge.receive import Receiver
from runner.protocol import Code, Event
from runner.protocol.codec import decode, encode

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def received(event: Event) -> tuple[Event, int]:
    raw = encode(event)
    got = decode(Code.EVENT, raw)
    assert isinstance(got, Event)
    return got, len(raw)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=20), message=values, source=st.none() | st.text(max_size=10))
def test_the_body_weighs_at_least_the_repacked_event(name: str, message: object, source: str | None) -> None:
    got, body = received(Event(name=name, message=message, source=source))
    assert got.body_size == body
    assert body >= event_size(EventMessage(got.name, got.message, got.source))


class _Receiver(Receiver):
    def __init__(self, hub: EventHub) -> None:  # only what the event path uses
        self.events = hub
        self._on_running = lambda: None


def test_the_receiver_keeps_each_event_at_its_body_size() -> None:
    hub = EventHub(max_names=10, max_bytes=60)
    sub = hub.subscribe()
    got, body = received(Event(name="n", message="x" * 20))
    _Receiver(hub).on_events([got])
    assert hub.memory().bytes == body == sub.queued_bytes
    assert body > event_size(EventMessage("n", "x" * 20))
    big, big_body = received(Event(name="big", message="y" * 40))  # 40 + "big" fit 60; the body does not
    assert event_size(EventMessage("big", "y" * 40)) <= 60 < big_body
    _Receiver(hub).on_events([big])
    assert hub.last.get("big") is None and hub.memory().evicted == 1
    # An event made on this side (no body) is weighed by packing it, as before.
    hub.publish(EventMessage("local", [1, 2]))
    assert hub.memory().bytes == body + event_size(EventMessage("local", [1, 2]))
    assert len(msgpack.packb([1, 2])) + len("local") == event_size(EventMessage("local", [1, 2]))


def test_a_subscription_nobody_holds_is_dropped() -> None:
    hub = EventHub()
    kept = hub.subscribe()
    hub.subscribe()  # not referenced
    gc.collect()
    hub.publish(EventMessage("e", 1))
    assert len(kept.queue) == 1 and len(hub._subscribers) == 1
    kept.close()
    assert not hub._subscribers
