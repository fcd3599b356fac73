"""Sequence operations: upload (streamed), list, show, replace, delete, start."""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host_bridge import SpawnError

from .http import HTTPError, read_json, request_chunks
from .instances import Refused
from .records import SequenceRecord, is_valid_topic
from .runtimes import Limits
from .state import HubState, hub, sequence_or_404
from .store import InvalidPackage, NameTaken, PackageTooLarge

_NAME_MAX = 200


def _sequence_json(state: HubState, record: SequenceRecord) -> dict[str, Any]:
    instances = [s.id for s in state.registry.summaries() if s.sequence == record.id]
    return {"id": record.id, "name": record.name,
            "config": record.config(str(state.store.package_dir(record))), "instances": instances}


def _alias(request: Request) -> str | None:
    name = request.headers.get("x-name")
    if name is None:
        return None
    name = name.strip()
    if not name or len(name) > _NAME_MAX or any(ord(c) < 32 for c in name):
        raise HTTPError(400, f"x-name must be 1 to {_NAME_MAX} printable characters")
    return name


async def _receive(request: Request, state: HubState) -> Any:
    declared = request.headers.get("content-length")
    limit = state.config.max_upload_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"package larger than the upload limit of {limit} bytes")
    try:
        return await state.store.receive_package(request_chunks(request), limit)
    except ClientDisconnect:
        raise HTTPError(499, "the client disconnected during the upload") from None
    except PackageTooLarge as exc:
        raise HTTPError(413, str(exc)) from None
    except InvalidPackage as exc:
        raise HTTPError(422, str(exc)) from None


async def list_sequences(request: Request) -> Response:
    state = hub(request)
    return JSONResponse([_sequence_json(state, r) for r in await state.store.sequences()])


async def get_sequence(request: Request) -> Response:
    return JSONResponse(_sequence_json(hub(request), await sequence_or_404(request)))


async def sequence_instances(request: Request) -> Response:
    record = await sequence_or_404(request)
    return JSONResponse([s.id for s in hub(request).registry.summaries() if s.sequence == record.id])


async def add_sequence(request: Request) -> Response:
    state = hub(request)
    alias = _alias(request)
    if alias and await state.store.find_sequence(alias):
        raise HTTPError(405, f"Sequence with name {alias} already exist")
    staging = await _receive(request, state)
    try:
        record = await state.store.commit_new(staging, alias)
    except NameTaken as exc:
        raise HTTPError(405, str(exc).replace("exists", "exist")) from None
    return JSONResponse({"id": record.id})


async def replace_sequence(request: Request) -> Response:
    state = hub(request)
    record = await sequence_or_404(request, "id_name", by_name=True)
    if state.registry.running(record.id):
        raise HTTPError(409, f"Can't update - Sequence {record.id} in use")
    staging = await _receive(request, state)
    if state.registry.running(record.id):  # one started while the upload streamed in
        await state.store.discard(staging)
        raise HTTPError(409, f"Can't update - Sequence {record.id} in use")
    try:
        record = await state.store.commit_replace(staging, record, _alias(request))
    except NameTaken as exc:
        raise HTTPError(409, str(exc)) from None
    return JSONResponse({"id": record.id})


async def delete_sequence(request: Request) -> Response:
    state = hub(request)
    record = await sequence_or_404(request)
    if state.registry.running(record.id):
        raise HTTPError(409, "Can't remove - Sequence in use")
    await state.store.delete_sequence(record)
    return JSONResponse({"id": record.id})


def _number(limits: dict[str, Any], key: str, low: float, high: float, unit: str) -> float | None:
    value = limits.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise HTTPError(400, f"limits.{key} must be a number of {unit} from {low:g} to {high:.0f}")
    return float(value)


def _limits(body: dict[str, Any]) -> Limits | None:
    """``limits: {memory: MiB, cpu: CPUs}`` (STH's InstanceLimits.memory, plus cpu); None when absent."""
    limits = body.get("limits")
    if limits is None:
        return None
    if not isinstance(limits, dict) or set(limits) - {"memory", "cpu"}:
        raise HTTPError(400, 'limits must be a JSON object {"memory": <MiB>, "cpu": <CPUs>}')
    return Limits(_number(limits, "memory", 8, 1 << 20, "MiB"), _number(limits, "cpu", 0.01, os.cpu_count() or 1, "CPUs"))


def _start_options(body: Any) -> tuple[dict[str, Any], list[Any] | None, str | None, str | None]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise HTTPError(400, "start body must be a JSON object {appConfig, args}")
    app_config = body.get("appConfig", {})
    if app_config is None:
        app_config = {}
    if not isinstance(app_config, dict):
        raise HTTPError(400, "appConfig must be a JSON object")
    args = body.get("args")
    if args is not None and not isinstance(args, list):
        raise HTTPError(400, "args must be a JSON array")
    topics: list[str | None] = []
    for key in ("inputTopic", "outputTopic"):
        value = body.get(key)
        if value is not None and (not isinstance(value, str) or not is_valid_topic(value)):
            raise HTTPError(400, f"{key} must be a topic name (letters, digits, . _ : -)")
        topics.append(value)
    return app_config, args, topics[0], topics[1]


async def start_sequence(request: Request) -> Response:
    state = hub(request)
    record = await sequence_or_404(request)
    body = await read_json(request, state.config.max_body_bytes)
    app_config, args, input_topic, output_topic = _start_options(body)
    limits = _limits(body or {})
    if limits is not None and not state.registry.runtime.enforces_limits:
        raise HTTPError(400, f"limits: the {state.registry.runtime.name} runtime cannot enforce them; "
                             "start the hub with --runtime docker")
    if state.closing:
        raise HTTPError(503, "the hub is shutting down")
    try:
        hub_inst = await state.registry.start(record, app_config, args, input_topic, output_topic, limits)
    except Refused as exc:
        raise HTTPError(507, str(exc)) from None
    except SpawnError as exc:
        return JSONResponse({"result": "error", "error": str(exc)}, status_code=500)
    if not await hub_inst.instance.wait_started():
        summary = hub_inst.refresh()
        return JSONResponse({"result": "error", "id": hub_inst.id, "error": summary.reason}, status_code=500)
    return JSONResponse({"message": f"Sequence {record.id} starting", "id": hub_inst.id})


routes = [
    Route("/sequences", list_sequences, methods=["GET"]),
    Route("/sequence", add_sequence, methods=["POST"]),
    Route("/sequence/{id}", get_sequence, methods=["GET"]),
    Route("/sequence/{id}", delete_sequence, methods=["DELETE"]),
    Route("/sequence/{id_name:path}", replace_sequence, methods=["PUT"]),
    Route("/sequence/{id}/instances", sequence_instances, methods=["GET"]),
    Route("/sequence/{id}/start", start_sequence, methods=["POST"]),
]
