"""Hub operations: version, config, load-check, log (and the OpenAPI description)."""

from __future__ import annotations

import os
from typing import Any

import anyio
import psutil
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner import __version__

from .http import LiveStream
from .openapi import openapi_document
from .state import hub


async def version(request: Request) -> Response:
    return JSONResponse({"service": "sequence-runner/hub", "apiVersion": "v1", "version": __version__,
                         "build": "source"})


async def config(request: Request) -> Response:
    state = hub(request)
    return JSONResponse({**state.config.public(), "runtime": state.registry.runtime.public()})


def _mount_of(path: str) -> tuple[str, str]:
    """The device and filesystem type of the mount holding ``path``."""
    best = ("", "")
    best_len = -1
    real = os.path.realpath(path)
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > best_len:
            best, best_len = (part.device, part.fstype), len(mount)
    return best


def load_check_now(store: str) -> dict[str, Any]:
    """STH's load-check fields, from psutil; ``fsSize`` is the filesystem of the store."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(store)
    device, fstype = _mount_of(store)
    return {
        "avgLoad": round(os.getloadavg()[0], 2),
        "currentLoad": psutil.cpu_percent(interval=None),
        "memFree": memory.available,
        "memUsed": memory.total - memory.available,
        "fsSize": [{"fs": device, "type": fstype, "size": disk.total, "used": disk.used,
                    "available": disk.free, "use": disk.percent, "mount": store}],
    }


async def load_check(request: Request) -> Response:
    store = str(hub(request).store.directory)
    return JSONResponse(await anyio.to_thread.run_sync(load_check_now, store))


async def hub_log(request: Request) -> Response:
    return LiveStream(hub(request).log.stream(), "application/x-ndjson")


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(hub(request).config.api_base))


routes = [
    Route("/version", version, methods=["GET"]),
    Route("/config", config, methods=["GET"]),
    Route("/load-check", load_check, methods=["GET"]),
    Route("/log", hub_log, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
