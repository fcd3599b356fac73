"""Sequence operations against a real hub: upload (streamed), list, show, replace, delete, and
every documented error status."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hubproc import HubProcess, package

OCTET = {"content-type": "application/octet-stream"}


def tar_of(files: dict[str, bytes | str]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, content in files.items():
            raw = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return data.getvalue()


GOOD_PJ = json.dumps({"name": "x", "main": "main.py", "engines": {"python3": "3"}})


def test_upload_list_show_and_delete(client: httpx.Client) -> None:
    name = f"hello-{uuid.uuid4().hex[:6]}"
    r = client.post("/sequence", content=package("hello"), headers={**OCTET, "x-name": name})
    assert r.status_code == 200
    seq = r.json()["id"]
    listed = {s["id"]: s for s in client.get("/sequences").json()}
    assert listed[seq]["config"]["name"] == name and listed[seq]["config"]["entrypointPath"] == "main.py"
    shown = client.get(f"/sequence/{seq}").json()
    assert shown["id"] == seq and shown["instances"] == [] and shown["config"]["version"] == "0.1.0"
    assert client.get(f"/sequence/{seq}/instances").json() == []
    # STH's clients delete with a JSON content type and an empty body or {}
    r = client.request("DELETE", f"/sequence/{seq}", content=b"{}", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (200, {"id": seq})
    assert client.get(f"/sequence/{seq}").status_code == 404
    assert client.delete(f"/sequence/{seq}").status_code == 404


def test_a_nested_package_and_the_package_json_name(client: httpx.Client) -> None:
    pj = json.dumps({"name": f"nested-{uuid.uuid4().hex[:6]}", "main": "main.py"})
    body = tar_of({"pkg/package.json": pj, "pkg/main.py": "def run(context, input):\n    return 'ok'\n"})
    seq = client.post("/sequence", content=body).json()["id"]
    shown = client.get(f"/sequence/{seq}").json()
    assert shown["name"] == json.loads(pj)["name"]
    assert shown["config"]["sequenceDir"].endswith(f"{seq}/pkg")


@pytest.mark.parametrize("body, reason", [
    (b"not a tarball", "not a valid .tar.gz package"),
    (b"", "empty request body"),
    (tar_of({"main.py": "x = 1\n"}), "no package.json"),
    (tar_of({"package.json": "{nope", "main.py": ""}), "invalid JSON at line 1"),
    (tar_of({"package.json": json.dumps({"name": "x", "main": "gone.py"}), "main.py": ""}),
     "entrypoint path gone.py is invalid"),
    (tar_of({"package.json": GOOD_PJ, "main.py": "", "../evil.py": "x"}), "path traversal"),
    (tar_of({"package.json": json.dumps({"main": "index.js", "engines": {"node": ">=14"}}), "index.js": ""}),
     "names no python engine"),
])
def test_packages_the_runner_would_refuse_get_422_with_the_reason(client: httpx.Client, shared_hub: HubProcess,
                                                                  body: bytes, reason: str) -> None:
    before = client.get("/sequences").json()
    r = client.post("/sequence", content=body, headers=OCTET)
    assert r.status_code == 422, r.text
    assert reason in r.json()["error"]
    assert str(shared_hub.store) not in r.json()["error"]  # no server paths in the answer
    assert client.get("/sequences").json() == before
    assert list((shared_hub.store / "tmp").iterdir()) == []


def test_duplicate_name_is_405_and_put_replaces_by_id_or_name(client: httpx.Client) -> None:
    name = f"dup-{uuid.uuid4().hex[:6]}"
    seq = client.post("/sequence", content=package("hello"), headers={"x-name": name}).json()["id"]
    r = client.post("/sequence", content=package("counter"), headers={"x-name": name})
    assert r.status_code == 405 and r.json() == {"error": f"Sequence with name {name} already exist"}
    for key in (seq, name):
        r = client.put(f"/sequence/{key}", content=package("counter"), headers=OCTET)
        assert (r.status_code, r.json()) == (200, {"id": seq})
    assert client.get(f"/sequence/{seq}").json()["config"]["args"] == [5, 0]  # counter's package.json now
    assert client.get(f"/sequence/{seq}").json()["name"] == name
    assert client.put(f"/sequence/{uuid.uuid4()}", content=package("hello")).status_code == 404
    assert client.put(f"/sequence/{seq}", content=b"junk").status_code == 422
    assert client.get(f"/sequence/{seq}").json()["config"]["args"] == [5, 0]  # a refused PUT changes nothing
    other = client.post("/sequence", content=package("hello"), headers={"x-name": name + "-b"}).json()["id"]
    r = client.put(f"/sequence/{other}", content=package("hello"), headers={"x-name": name})
    assert r.status_code == 409 and "already exists" in r.json()["error"]


def test_put_and_delete_are_409_while_an_instance_runs(client: httpx.Client, upload: Any) -> None:
    seq = upload("events")
    inst = client.post(f"/sequence/{seq}/start", json={}).json()["id"]
    assert client.get(f"/sequence/{seq}/instances").json() == [inst]
    r = client.delete(f"/sequence/{seq}")
    assert r.status_code == 409 and "in use" in r.json()["error"]
    assert client.put(f"/sequence/{seq}", content=package("events")).status_code == 409
    assert client.post(f"/instance/{inst}/_kill").status_code == 202
    wait_ended(client, inst)
    assert client.delete(f"/sequence/{seq}").status_code == 200


@pytest.mark.parametrize("body", [b"{bad json", b"[1, 2]", b'{"appConfig": [1]}', b'{"args": {"a": 1}}',
                                  b'{"inputTopic": "../x"}'])
def test_start_with_a_bad_body_is_400(client: httpx.Client, upload: Any, body: bytes) -> None:
    seq = upload("counter")
    r = client.post(f"/sequence/{seq}/start", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]


def test_start_unknown_sequence_is_404(client: httpx.Client) -> None:
    for key in (str(uuid.uuid4()), "not-an-id"):
        r = client.post(f"/sequence/{key}/start", json={})
        assert r.status_code == 404 and "not found" in r.json()["error"]
        assert client.get(f"/sequence/{key}").status_code == 404
    assert client.get("/sequence/..%2F..%2Fetc").status_code == 405  # only PUT takes a name with "/"
    assert client.put("/sequence/..%2F..%2Fetc", content=b"x").status_code == 404


def wait_ended(client: httpx.Client, inst: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/instance/{inst}").json()
        if body.get("ended"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"instance {inst} did not end: {body}")


@pytest.fixture
def small_hub(hub_factory: Any) -> Iterator[HubProcess]:
    yield hub_factory("--max-upload-size", "4000", "--max-body-size", "100", "--max-instances", "1")


def test_limits_413_and_507(small_hub: HubProcess) -> None:
    with small_hub.client() as c:
        big = tar_of({"package.json": GOOD_PJ, "main.py": "def run(c, i):\n    pass\n",
                      "blob.bin": os.urandom(8000)})
        assert len(big) > 4000
        r = c.post("/sequence", content=big)
        assert r.status_code == 413 and "4000" in r.json()["error"]

        def chunked() -> Iterator[bytes]:  # no content-length: the limit is counted while streaming
            yield big[:3000]
            yield big[3000:]

        assert c.post("/sequence", content=chunked()).status_code == 413
        assert c.get("/sequences").json() == []
        assert list((small_hub.store / "tmp").iterdir()) == []
        seq = c.post("/sequence", content=package("events")).json()["id"]
        r = c.post(f"/sequence/{seq}/start", content=b'{"appConfig": {"x": "' + b"y" * 200 + b'"}}')
        assert r.status_code == 413
        first = c.post(f"/sequence/{seq}/start", json={}).json()["id"]
        r = c.post(f"/sequence/{seq}/start", json={})
        assert r.status_code == 507 and r.json()["error"].startswith("Insufficient Space on Resource")
        c.post(f"/instance/{first}/_kill")


def test_memory_threshold_507(hub_factory: Any) -> None:
    hub = hub_factory("--min-free-mem", str(1 << 30))  # a petabyte of free memory: never there
    with hub.client() as c:
        seq = c.post("/sequence", content=package("counter")).json()["id"]
        r = c.post(f"/sequence/{seq}/start", json={})
        assert r.status_code == 507 and "free memory" in r.json()["error"]


def test_an_interrupted_upload_leaves_nothing(client: httpx.Client, shared_hub: HubProcess) -> None:
    before = client.get("/sequences").json()
    body = package("hello")
    url = urlsplit(shared_hub.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = (f"POST {url.path}/sequence HTTP/1.1\r\nHost: x\r\ncontent-type: application/octet-stream\r\n"
                f"content-length: {len(body) * 10}\r\n\r\n")
        sock.sendall(head.encode() + body)
        time.sleep(0.3)  # the hub has the first part on disk
    deadline = time.monotonic() + 10
    while list((shared_hub.store / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((shared_hub.store / "tmp").iterdir()) == []
    assert client.get("/sequences").json() == before
