"""Instance operations: list, show, stop, kill, health, events, input, output, stdio, log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host_bridge import ChannelClosed, EventSubscription, InstanceNotRunning

from .http import (
    HTTPError,
    LiveStream,
    client_gone,
    data_content_type,
    end_of_stream,
    media_type,
    read_json,
    request_chunks,
    unwrap_sth_body,
)
from .instances import HubInstance
from .records import is_valid_event_name
from .state import hub, live_or_404, summary_or_404

STOP, KILL, EVENT = 4001, 4002, 5001


async def list_instances(request: Request) -> Response:
    return JSONResponse([s.to_json() for s in hub(request).registry.summaries()])


async def get_instance(request: Request) -> Response:
    return JSONResponse(summary_or_404(request).to_json())


def _running(hub_inst: HubInstance) -> HubInstance:
    if hub_inst.ended:
        raise HTTPError(409, f"Instance {hub_inst.id} is {hub_inst.refresh().status}")
    return hub_inst


async def stop(request: Request) -> Response:
    state = hub(request)
    hub_inst = _running(live_or_404(request))
    body = unwrap_sth_body(await read_json(request, state.config.max_body_bytes, default={}), STOP)
    if not isinstance(body, dict):
        raise HTTPError(400, "stop body must be a JSON object {timeout, canCallKeepalive}")
    timeout = body.get("timeout", state.config.stop_timeout_ms)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise HTTPError(400, "Invalid timeout format")
    keepalive = body.get("canCallKeepalive", False)
    if not isinstance(keepalive, bool):
        raise HTTPError(400, "Invalid canCallKeepalive format")
    await hub_inst.instance.stop(timeout_ms=float(timeout), can_call_keepalive=keepalive)
    return JSONResponse(hub_inst.refresh().to_json(), status_code=202)


async def kill(request: Request) -> Response:
    state = hub(request)
    hub_inst = _running(live_or_404(request))
    body = unwrap_sth_body(await read_json(request, state.config.max_body_bytes, default={}), KILL)
    if not isinstance(body, dict):
        raise HTTPError(400, "kill body must be a JSON object")
    if not isinstance(body.get("removeImmediately", False), bool):
        raise HTTPError(400, "Invalid removeImmediately format")
    await hub_inst.instance.kill()
    return JSONResponse(hub_inst.refresh().to_json(), status_code=202)


async def health(request: Request) -> Response:
    summary = summary_or_404(request)
    hub_inst = hub(request).registry.get(summary.id)
    if hub_inst is None or hub_inst.ended:
        return JSONResponse({"healthy": False, "status": summary.status})
    h = hub_inst.instance.health()
    return JSONResponse({"healthy": h.healthy, "status": summary.status, "stale": h.stale, "stats": h.stats,
                         "heartbeatAge": h.age, "heartbeats": h.heartbeats})


async def send_event(request: Request) -> Response:
    state = hub(request)
    hub_inst = _running(live_or_404(request))
    body = unwrap_sth_body(await read_json(request, state.config.max_body_bytes), EVENT)
    if not isinstance(body, dict) or not isinstance(body.get("eventName"), str):
        raise HTTPError(400, 'event body must be {"eventName": <name>, "message": <any>} or [5001, {...}]')
    name = body["eventName"]
    if not is_valid_event_name(name):
        raise HTTPError(400, "eventName must be 1 to 200 characters, without '/' or control characters")
    try:
        await hub_inst.instance.send_event(name, body.get("message"))
    except InstanceNotRunning as exc:
        raise HTTPError(409, str(exc)) from None
    return JSONResponse({"eventName": name}, status_code=202)


async def _event_lines(subscription: EventSubscription) -> AsyncIterator[bytes]:
    with subscription:
        async for event in subscription:
            yield json.dumps(event.message).encode() + b"\n"


def _event_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_valid_event_name(name):
        raise HTTPError(400, "invalid event name")
    return name


async def event_stream(request: Request) -> Response:
    """Every event of that name from now on, one JSON value (its message) per line."""
    hub_inst = live_or_404(request)
    subscription = hub_inst.instance.events(_event_name(request))
    return LiveStream(_event_lines(subscription), "application/x-ndjson")


async def event_once(request: Request) -> Response:
    """The next event of that name: its message as JSON."""
    hub_inst = _running(live_or_404(request))
    try:
        event = await hub_inst.instance.once(_event_name(request))
    except InstanceNotRunning as exc:
        raise HTTPError(409, str(exc)) from None
    return JSONResponse(event.message)


async def _write_stream(request: Request, hub_inst: HubInstance, stdin: bool) -> Response:
    instance = hub_inst.instance
    end = end_of_stream(request, default=True)
    content_type = data_content_type(request)
    lock = hub_inst.stdin_lock if stdin else hub_inst.input_lock
    try:
        async with lock:
            async for chunk in request_chunks(request):
                if stdin:
                    await instance.write_stdin(chunk)
                else:
                    await instance.write_input(chunk, content_type=content_type)
            if end:
                await (instance.end_stdin() if stdin else instance.end_input())
    except ClientDisconnect:
        return client_gone()  # an interrupted body does not end the input
    except (InstanceNotRunning, ChannelClosed) as exc:
        raise HTTPError(409, f"Instance {hub_inst.id} takes no more input: {exc}") from None
    except ValueError as exc:  # a second content type
        raise HTTPError(400, str(exc)) from None
    return JSONResponse({"ended": end}, status_code=200 if end else 202)


async def post_input(request: Request) -> Response:
    hub_inst = _running(live_or_404(request))
    if hub_inst.input_topic:
        raise HTTPError(405, "Input provided in other way")
    if media_type(request) is None:
        raise HTTPError(406, "Content-Type must be defined")
    hub_inst.api_input_used = True
    return await _write_stream(request, hub_inst, stdin=False)


async def post_stdin(request: Request) -> Response:
    return await _write_stream(request, _running(live_or_404(request)), stdin=True)


def _tap_route(channel: str) -> Any:
    async def read(request: Request) -> Response:
        hub_inst = live_or_404(request)
        ctype = "application/x-ndjson" if channel == "log" else "application/octet-stream"
        if channel == "output":
            await hub_inst.declared.wait()  # the runner names the output's content type as run() starts
            ctype = hub_inst.instance.info.output_content_type or ctype
        return LiveStream(hub_inst.taps[channel].stream(), ctype)

    read.__name__ = f"read_{channel}"
    return read


routes = [
    Route("/instances", list_instances, methods=["GET"]),
    Route("/instance/{id}", get_instance, methods=["GET"]),
    Route("/instance/{id}/_stop", stop, methods=["POST"]),
    Route("/instance/{id}/_kill", kill, methods=["POST"]),
    Route("/instance/{id}/health", health, methods=["GET"]),
    Route("/instance/{id}/_event", send_event, methods=["POST"]),
    Route("/instance/{id}/event/{name}", event_stream, methods=["GET"]),
    Route("/instance/{id}/events/{name}", event_stream, methods=["GET"]),
    Route("/instance/{id}/once/{name}", event_once, methods=["GET"]),
    Route("/instance/{id}/input", post_input, methods=["POST"]),
    Route("/instance/{id}/stdin", post_stdin, methods=["POST"]),
    *(Route(f"/instance/{{id}}/{ch}", _tap_route(ch), methods=["GET"]) for ch in ("output", "stdout", "stderr", "log")),
]
