"""The OpenAPI 3.1 description served at ``{apiBase}/openapi.json``.

Written by hand from the API reference (a test checks it against the routes the
app actually serves, both ways).
"""

from __future__ import annotations

from typing import Any

from runner import __version__

from .records import STATUSES

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_ID = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
_INSTANCE = {"type": "object", "properties": {
    "id": {"type": "string"}, "sequence": {"type": "string"}, "appConfig": {"type": "object"},
    "sequenceArgs": {"type": ["array", "null"]}, "created": {"type": "string"},
    "started": {"type": ["string", "null"]}, "ended": {"type": ["string", "null"]},
    "status": {"type": "string", "enum": list(STATUSES)},
    "exitCode": {"type": ["integer", "null"]}, "reason": {"type": ["string", "null"]}}}
_STREAM = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

# (method, path, summary, request media type or None, {status: description})
_OPERATIONS: list[tuple[str, str, str, str | None, dict[str, str]]] = [
    ("get", "/version", "The hub's version", None, {"200": "version"}),
    ("get", "/config", "The hub's configuration (never the token)", None, {"200": "config"}),
    ("get", "/load-check", "CPU, memory and disk of the hub's machine", None, {"200": "load"}),
    ("get", "/log", "The hub's own log, live (ndjson)", None, {"200": "stream"}),
    ("get", "/openapi.json", "This description", None, {"200": "OpenAPI 3.1"}),
    ("get", "/sequences", "Every Sequence", None, {"200": "list"}),
    ("post", "/sequence", "Upload a Sequence package (.tar.gz, streamed); x-name names it",
     "application/octet-stream",
     {"200": "id", "405": "name taken", "413": "too large", "422": "not a package the runner accepts"}),
    ("get", "/sequence/{id}", "One Sequence", None, {"200": "sequence", "404": "not found"}),
    ("put", "/sequence/{id_name}", "Replace a Sequence's package, by id or name", "application/octet-stream",
     {"200": "id", "404": "not found", "409": "in use, or name taken", "413": "too large",
      "422": "not a package"}),
    ("delete", "/sequence/{id}", "Delete a Sequence", "application/json",
     {"200": "id", "404": "not found", "409": "Instances of it run"}),
    ("get", "/sequence/{id}/instances", "Ids of the Sequence's Instances", None,
     {"200": "list", "404": "not found"}),
    ("post", "/sequence/{id}/start", "Start an Instance {appConfig, args, inputTopic, outputTopic, limits: {memory, cpu}}",
     "application/json", {"200": "id", "400": "bad body", "404": "not found", "413": "body too large",
                          "500": "the runner failed to start", "507": "limits say no"}),
    ("get", "/instances", "Every Instance (running and ended)", None, {"200": "list"}),
    ("get", "/instance/{id}", "One Instance", None, {"200": "instance", "404": "not found"}),
    ("post", "/instance/{id}/_stop", "STOP {timeout, canCallKeepalive}; KILL after the timeout",
     "application/json", {"202": "instance", "400": "bad body", "404": "not found", "409": "ended"}),
    ("post", "/instance/{id}/_kill", "KILL", "application/json",
     {"202": "instance", "400": "bad body", "404": "not found", "409": "ended"}),
    ("get", "/instance/{id}/health", "Health from the runner's heartbeats", None,
     {"200": "health", "404": "not found"}),
    ("post", "/instance/{id}/_event", "Send an event {eventName, message} (or [5001, {...}])",
     "application/json", {"202": "sent", "400": "bad body", "404": "not found", "409": "ended"}),
    ("get", "/instance/{id}/event/{name}", "Events of that name, live (ndjson of messages)", None,
     {"200": "stream", "404": "not found"}),
    ("get", "/instance/{id}/events/{name}", "Same as event/{name} (STH clients' path)", None,
     {"200": "stream", "404": "not found"}),
    ("get", "/instance/{id}/once/{name}", "The next event of that name (its message)", None,
     {"200": "message", "404": "not found", "409": "ended first"}),
    ("post", "/instance/{id}/input", "Stream the Instance's input (x-end-stream: false keeps it open)",
     "application/octet-stream", {"200": "input ended", "202": "input kept open", "404": "not found",
                                  "405": "input comes from a topic", "406": "no content type",
                                  "409": "ended"}),
    ("post", "/instance/{id}/stdin", "Stream the Instance's stdin", "application/octet-stream",
     {"200": "stdin ended", "202": "stdin kept open", "404": "not found", "409": "ended"}),
    ("get", "/instance/{id}/output", "The output, live", None, {"200": "stream", "404": "not found"}),
    ("get", "/instance/{id}/stdout", "stdout, last 64 KiB then live", None, {"200": "stream", "404": "not found"}),
    ("get", "/instance/{id}/stderr", "stderr, last 64 KiB then live", None, {"200": "stream", "404": "not found"}),
    ("get", "/instance/{id}/log", "Log records (ndjson), last 64 KiB then live", None,
     {"200": "stream", "404": "not found"}),
    ("get", "/topics", "Every topic with its actors", None, {"200": "list"}),
    ("post", "/topic/{name}", "Publish to a topic (created if needed); x-end-stream: true ends it",
     "application/x-ndjson", {"200": "published and ended", "202": "published", "400": "bad name"}),
    ("get", "/topic/{name}", "Read a topic, live", None, {"200": "stream", "400": "bad name"}),
]

_SCHEMAS = {"/sequence": _ID, "/sequence/{id_name}": _ID, "/instances": {"type": "array", "items": _INSTANCE},
            "/instance/{id}": _INSTANCE}


def _operation(method: str, path: str, summary: str, media: str | None, statuses: dict[str, str]) -> dict[str, Any]:
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
              for p in ("id", "id_name", "name") if "{" + p + "}" in path]
    responses: dict[str, Any] = {}
    for status, text in statuses.items():
        if status >= "400":
            content: dict[str, Any] = {"application/json": {"schema": _ERROR}}
        elif text == "stream":
            content = _STREAM
        else:
            content = {"application/json": {"schema": _SCHEMAS.get(path, {})}}
        responses[status] = {"description": text, "content": content}
    op: dict[str, Any] = {"summary": summary, "operationId": f"{method}{path}", "responses": responses}
    if params:
        op["parameters"] = params
    if media:
        op["requestBody"] = {"required": False, "content": {media: {"schema": {}}}}
    if method != "get" or path not in ("/openapi.json",):
        responses.setdefault("403", {"description": "Forbidden (a token is set and missing or wrong)"})
    return op


def openapi_document(api_base: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, media, statuses in _OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(method, path, summary, media, statuses)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sequence-runner hub", "version": __version__,
                 "description": "The Sequence REST API (Hub, Sequence, Instance and Topic operations)."},
        "servers": [{"url": api_base}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }
