"""Hubs for the REST tests, in both runtimes: every test that takes ``client``, ``upload``,
``shared_hub`` or ``hub_factory`` runs once with ``--runtime process`` and once with
``--runtime docker`` (marked ``docker``; skipped with the reason without an engine and the
runner image; deploy/ci-containers.sh runs them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from docker_engine import IMAGE, require_docker
from hubproc import HubProcess, package, runtime_args

RUNTIMES = [pytest.param("process"), pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(scope="session", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """Where the hub runs Instances: a runner process each, or a container each."""
    if request.param == "docker":
        require_docker((IMAGE,))
    return str(request.param)


@pytest.fixture(scope="session")
def shared_hub(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> Iterator[HubProcess]:
    """One hub per runtime for the tests that only need a hub (each uploads under its own name)."""
    hub = HubProcess(tmp_path_factory.mktemp("hub-store"), *runtime_args(runtime)).start()
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
def hub_factory(tmp_path: Path, runtime: str) -> Iterator[object]:
    """Start hubs (in this test's runtime) with their own store and options; every one is stopped at the end."""
    started: list[HubProcess] = []

    def make(*args: str, store: Path | None = None, env: dict[str, str] | None = None) -> HubProcess:
        hub = HubProcess(store or tmp_path / "store", *runtime_args(runtime), *args, env=env).start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        hub.stop()
