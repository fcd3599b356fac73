"""Helpers for driving Instances over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

TEXT = {"content-type": "text/plain"}


def start(client: httpx.Client, seq: str, **body: Any) -> str:
    r = client.post(f"/sequence/{seq}/start", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def wait_ended(client: httpx.Client, inst: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/instance/{inst}").json()
        if body.get("ended"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"instance {inst} did not end: {body}")


def read_until(client: httpx.Client, path: str, needle: bytes, timeout: float = 20) -> bytes:
    """Read a live stream until ``needle`` shows up (then disconnect)."""
    got = b""
    with client.stream("GET", path, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            got += chunk
            if needle in got:
                return got
    raise AssertionError(f"{path} ended without {needle!r}: {got!r}")


def wait_for(predicate: Any, timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_records(client: httpx.Client, inst: str, needle: str) -> list[dict[str, Any]]:
    raw = read_until(client, f"/instance/{inst}/log", needle.encode())
    return [json.loads(line) for line in raw.splitlines() if line.strip()]
