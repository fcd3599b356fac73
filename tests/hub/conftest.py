from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hubproc import HubProcess, package


@pytest.fixture(scope="session")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub for the tests that only need a hub (each uploads what it uses under its own name)."""
    hub = HubProcess(tmp_path_factory.mktemp("hub-store")).start()
    try:
        yield hub
    finally:
        code = hub.stop()
        assert code == 0, hub.output()


@pytest.fixture
def client(shared_hub: HubProcess) -> Iterator[httpx.Client]:
    with shared_hub.client() as c:
        yield c


@pytest.fixture
def upload(client: httpx.Client) -> object:
    """upload(sample) -> Sequence id; a unique x-name, so tests never clash on the shared hub."""

    def do(sample: str | Path) -> str:
        name = f"{Path(sample).name}-{uuid.uuid4().hex[:8]}"
        r = client.post("/sequence", content=package(sample), headers={"x-name": name,
                                                                        "content-type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    return do


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[object]:
    """Start hubs with their own store and options; every one is stopped at the end."""
    started: list[HubProcess] = []

    def make(*args: str, store: Path | None = None, env: dict[str, str] | None = None) -> HubProcess:
        hub = HubProcess(store or tmp_path / "store", *args, env=env).start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        hub.stop()
