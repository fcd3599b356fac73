"""Issue 11 item 11: event memory in host_bridge is bounded by bytes and by number of names.

3000 events of 100 KB, each under its own name, took a hub from 26 to 313 MiB: one message
was kept per name without a cap, and subscriber queues were capped by count only.
"""

from __future__ import annotations

import anyio
import pytest
from host_fault_helpers import rss, spawn_fake

from host_bridge import Bridge

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_event_flood_is_bounded_by_names_and_bytes(anyio_backend: str) -> None:
    count, size, names, memory = 3000, 100_000, 500, 4 << 20
    async with Bridge() as bridge:
        before = rss()
        inst = await spawn_fake(
            bridge, "event-flood", env={"HB_EVENTS": str(count), "HB_EVENT_SIZE": str(size)},
            event_names=names, event_memory=memory,
        )
        idle = inst.events()  # a subscriber that never reads while the flood comes
        small = inst.events("flood-done")
        with anyio.fail_after(60):
            done = await small.receive()
        assert done is not None and done.message == count
        grown = rss() - before
        kept = inst.event_memory()
        assert kept.bytes <= memory and kept.names <= names
        sent = count + 3  # and "config", "process" (sent at the start) and "flood-done"
        assert kept.names + kept.evicted == sent  # every name is either kept or counted
        assert inst.last_event(f"e{count - 1}") is not None and inst.last_event("e0") is None
        assert idle.queued_bytes <= memory and idle.dropped > 0
        assert len(idle.queue) + idle.dropped == sent  # subscribed before the first event came
        first = await idle.receive()
        assert first is not None and first.name != "e0"  # the oldest were dropped, the newest kept
        await inst.kill()
        with anyio.fail_after(20):
            await inst.wait()
    # Before: ~290 MiB for the names alone, plus each subscriber's 10 000-event queue.
    assert grown < 64 << 20, f"the hub grew {grown >> 20} MiB"


async def test_an_event_larger_than_the_budget_is_not_kept(anyio_backend: str) -> None:
    async with Bridge() as bridge:
        inst = await spawn_fake(bridge, "event-flood", env={"HB_EVENTS": "1", "HB_EVENT_SIZE": "5000"},
                                event_memory=1000)
        done = inst.events("flood-done")
        with anyio.fail_after(20):
            assert await done.receive() is not None
        assert inst.last_event("e0") is None and inst.event_memory().evicted == 1
        assert inst.last_event("flood-done") is not None
        await inst.kill()
        with anyio.fail_after(20):
            await inst.wait()
