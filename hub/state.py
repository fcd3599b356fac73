"""What every route reaches through ``request.app.state.hub``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .config import HubConfig
from .http import HTTPError
from .instances import HubInstance, InstanceRegistry
from .logs import LogFeed
from .records import InstanceSummary, SequenceRecord, is_valid_id
from .store import Store
from .topics import TopicRouter


@dataclass
class HubState:
    config: HubConfig
    store: Store
    topics: TopicRouter
    registry: InstanceRegistry
    log: LogFeed
    closing: bool = False

    async def shutdown(self) -> None:
        """Stop every Instance (bounded), then end the live streams that would never end by themselves."""
        if self.closing:
            return
        self.closing = True
        await self.registry.shutdown()
        self.topics.close()
        self.log.end_streams()


def hub(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


async def sequence_or_404(request: Request, key: str = "id", *, by_name: bool = False) -> SequenceRecord:
    value = request.path_params[key]
    if not by_name and not is_valid_id(value):
        raise HTTPError(404, f"Sequence {value} not found")
    record = await hub(request).store.find_sequence(value)
    if record is None or (not by_name and record.id != value):
        raise HTTPError(404, f"Sequence {value} not found")
    return record


def summary_or_404(request: Request) -> InstanceSummary:
    value = request.path_params["id"]
    summary = hub(request).registry.summary(value) if is_valid_id(value) else None
    if summary is None:
        raise HTTPError(404, f"Instance {value} not found")
    return summary


def live_or_404(request: Request) -> HubInstance:
    """A live Instance (ended ones stay live, with their streams, until --keep-ended pushes them out)."""
    value = request.path_params["id"]
    hub_inst = hub(request).registry.get(value) if is_valid_id(value) else None
    if hub_inst is None:
        if hub(request).registry.summary(value) is not None:
            raise HTTPError(410, f"Instance {value} ended and its streams are gone")
        raise HTTPError(404, f"Instance {value} not found")
    return hub_inst
