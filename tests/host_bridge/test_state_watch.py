"""StateWatch.update: subscribers hear of real changes only, once each, and nothing after done."""

from __future__ import annotations

import pytest

from host_bridge import State, Status
from host_bridge.state import InstanceState, StateWatch

pytestmark = pytest.mark.anyio


async def test_only_changes_reach_subscribers_in_order() -> None:
    watch = StateWatch(InstanceState(Status.STARTING))
    with watch.subscribe() as sub:
        watch.update(lifecycle=State.STARTING, keepalive_ms=None, requires=None, provides=None)  # nothing new
        watch.update(running=True)
        watch.update(running=True)  # again: nothing new
        watch.update(lifecycle=State.RUNNING, keepalive_ms=None, requires="", provides=None)
        watch.update(status=Status.COMPLETED, done=True)
        watch.update(running=False)  # after done: ignored
        seen = [state async for state in sub]
    assert [(s.running, s.lifecycle, s.requires, s.done) for s in seen] == [
        (False, State.STARTING, None, False),
        (True, State.STARTING, None, False),
        (True, State.RUNNING, "", False),
        (True, State.RUNNING, "", True),
    ]
    assert watch.current.running is True


def test_an_unknown_field_is_a_type_error_naming_it() -> None:
    watch = StateWatch(InstanceState(Status.STARTING))
    with pytest.raises(TypeError, match="bogus"):
        watch.update(bogus=1)
