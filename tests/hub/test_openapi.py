"""The OpenAPI description matches the routes the hub serves, both ways."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Mount, Route

from hub.app import create_app
from hub.config import HubConfig


def served_routes() -> set[tuple[str, str]]:
    app = create_app(HubConfig())
    served: set[tuple[str, str]] = set()
    for mount in app.routes:
        assert isinstance(mount, Mount) and mount.path == "/api/v1"
        for route in mount.routes:
            assert isinstance(route, Route)
            path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
            served |= {(m.lower(), path) for m in route.methods or () if m != "HEAD"}
    return served


def test_openapi_describes_exactly_the_served_routes(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "/api/v1"}]
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert described == served_routes()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            names = set(re.findall(r"\{(\w+)\}", path))
            assert {p["name"] for p in op.get("parameters", [])} == names, (method, path)
            assert op["responses"], (method, path)


def test_each_described_operation_is_routed(client: httpx.Client) -> None:
    """Every described (method, path) reaches a handler: never the router's own 404/405."""
    doc = client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        concrete = path.replace("{id}", "00000000-0000-4000-8000-000000000000").replace(
            "{id_name}", "00000000-0000-4000-8000-000000000000").replace("{name}", "probe")
        for method in ops:
            if (method, path) in {("get", "/log"), ("get", "/topic/{name}")}:
                continue  # live streams that never end by themselves
            if method == "post" and path == "/topic/{name}":
                r = client.post(concrete, content=b"", headers={"content-type": "text/plain"})
                assert r.status_code == 202
                continue
            r = client.request(method.upper(), concrete, headers={"content-type": "application/json"})
            assert r.status_code != 405, (method, path)
            if r.status_code == 404:
                assert r.json()["error"] != "Not Found", (method, path)  # a handler's 404, not the router's


def test_the_status_enum_is_every_status_the_hub_can_show(client: httpx.Client) -> None:
    """host_bridge's states, plus stopped and killed (hub/instances.py hub_status): a state added
    to host_bridge must be added to the hub's list (hub/records.py) and so to the description."""
    from host_bridge import Status
    from hub.records import ENDED, LIVE

    shown = client.get("/openapi.json").json()["paths"]["/instance/{id}"]["get"]["responses"]["200"]
    statuses = shown["content"]["application/json"]["schema"]["properties"]["status"]["enum"]
    assert set(statuses) == {s.value for s in Status} | {"stopped", "killed"}
    assert not set(LIVE) & set(ENDED) and {"completed", "errored", "stopped", "killed"} == set(ENDED)
