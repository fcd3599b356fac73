"""The few Docker Engine API calls the docker runtime makes, over the engine's unix socket with httpx.

Why httpx and not a Docker client library (docs/deploy.md "Which client"): the runtime needs
nine calls of a stable, versioned HTTP API; httpx runs on anyio, so this works under asyncio
and trio without a thread per blocking call (a container's ``wait`` is a long poll that lasts
as long as the Instance), and it is already what the hub's tests use. Every path is pinned to
API version 1.41 (Docker 20.10), so newer engines answer in the shape written here.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

API_VERSION = "v1.41"
_TIMEOUT = httpx.Timeout(30.0)  # the engine can be slow under load; waits have no timeout at all


class EngineError(Exception):
    """The engine refused a call (``status``: its HTTP status; 0: no engine answered)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def socket_path(docker_host: str) -> str:
    """``unix:///var/run/docker.sock`` (or a plain path) -> the socket's path."""
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://"):]
    if docker_host.startswith("/"):
        return docker_host
    raise ValueError(f"--docker-host {docker_host!r}: only a unix socket is supported (unix:///path)")


class Engine:
    def __init__(self, docker_host: str) -> None:
        self.socket = socket_path(docker_host)
        # one long poll per running container (wait), so no cap on connections
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self.socket),
            base_url=f"http://docker/{API_VERSION}",
            timeout=_TIMEOUT,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, *, ok_missing: bool = False,
                    timeout: httpx.Timeout | None = _TIMEOUT, **kwargs: Any) -> httpx.Response | None:
        try:
            response = await self._client.request(method, path, timeout=timeout, **kwargs)
        except httpx.TransportError as exc:
            raise EngineError(0, f"no Docker engine answers at unix://{self.socket}: {exc!r}") from None
        if ok_missing and response.status_code in (404, 409):
            return None  # the container is gone already (or not running): what the caller wanted
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise EngineError(response.status_code, f"{method} {path}: {message}")
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        assert response is not None
        return response.json()

    async def version(self) -> str:
        return str((await self._json("GET", "/version"))["Version"])

    async def image(self, name: str) -> dict[str, Any] | None:
        response = await self._call("GET", f"/images/{name}/json", ok_missing=True)
        return response.json() if response is not None else None

    async def create(self, name: str, body: dict[str, Any]) -> str:
        created = await self._json("POST", "/containers/create", params={"name": name}, json=body)
        return str(created["Id"])

    async def start(self, container: str) -> None:
        await self._call("POST", f"/containers/{container}/start")

    async def wait(self, container: str) -> None:
        """Until the container is not running (at once if it is not); as long as that takes."""
        await self._call("POST", f"/containers/{container}/wait", params={"condition": "not-running"},
                         timeout=None, ok_missing=True)

    async def inspect(self, container: str) -> dict[str, Any] | None:
        response = await self._call("GET", f"/containers/{container}/json", ok_missing=True)
        return response.json() if response is not None else None

    async def kill(self, container: str, signal: str) -> None:
        await self._call("POST", f"/containers/{container}/kill", params={"signal": signal}, ok_missing=True)

    async def remove(self, container: str) -> None:
        await self._call("DELETE", f"/containers/{container}", params={"force": "true", "v": "true"},
                         ok_missing=True)

    async def logs_tail(self, container: str, lines: int) -> list[str]:
        """The last ``lines`` lines the container wrote to its stdout and stderr (the runner's own fds)."""
        response = await self._call("GET", f"/containers/{container}/logs", ok_missing=True,
                                    params={"stdout": "1", "stderr": "1", "tail": str(lines)})
        if response is None:
            return []
        text = demultiplex(response.content).decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip()][-lines:]

    async def containers(self, label: str) -> list[dict[str, Any]]:
        """Every container (running or not) carrying ``label`` (``key`` or ``key=value``)."""
        filters = json.dumps({"label": [label]})
        found = await self._json("GET", "/containers/json", params={"all": "1", "filters": filters})
        return list(found)


def demultiplex(raw: bytes) -> bytes:
    """A non-TTY container's log stream: frames of [stream, 0, 0, 0, size (4 bytes BE)] + payload."""
    out = bytearray()
    at = 0
    while at + 8 <= len(raw):
        size = int.from_bytes(raw[at + 4:at + 8], "big")
        out += raw[at + 8:at + 8 + size]
        at += 8 + size
    return bytes(out)
