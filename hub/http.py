"""HTTP helpers shared by the routes: JSON errors, bounded JSON bodies, live streams, auth."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.sequence.content import canonical_content_type


class HTTPError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole (small) body; 413 past ``limit`` bytes, counted as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes")
            parts.append(chunk)
    except ClientDisconnect:
        raise HTTPError(499, "the client disconnected before the end of the body") from None
    return b"".join(parts)


async def read_json(request: Request, limit: int, *, default: Any = None) -> Any:
    """A JSON body (``default`` when empty); 400 naming the problem when it is not JSON."""
    body = await read_body(request, limit)
    if not body.strip():
        return default
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}") from None


def unwrap_sth_body(body: Any, code: int) -> Any:
    """STH's clients send ``[code, {...}]`` to _stop (4001), _kill (4002) and _event (5001)."""
    if isinstance(body, list) and len(body) == 2 and body[0] == code:
        return body[1]
    return body


def media_type(request: Request) -> str | None:
    """The request's content type without parameters, lower-case; None when absent."""
    raw = request.headers.get("content-type")
    if not raw or not raw.split(";")[0].strip():
        return None
    return raw.split(";")[0].strip().lower()


def data_content_type(request: Request) -> str | None:
    """The content type of a data body (Instance input, a topic's items): the media type, with a
    text charset other than UTF-8 kept (``text/plain; charset=latin-1``: whoever reads the data,
    down to the runner, decodes it in that charset); None when absent."""
    if media_type(request) is None:
        return None
    return canonical_content_type(request.headers["content-type"])


def end_of_stream(request: Request, default: bool) -> bool:
    value = request.headers.get("x-end-stream")
    if value is None:
        return default
    return value.strip().lower() not in ("false", "0", "no")


class LiveStream(Response):
    """A streamed response that ends its source as soon as the client disconnects.

    Starlette only watches for the disconnect on older ASGI servers; a live stream
    that is idle (an event nobody emits, a quiet log) must still let go of its
    source, so this one always does, whatever the server.
    """

    def __init__(self, content: AsyncIterator[bytes], media_type: str, status_code: int = 200) -> None:
        self.body_iterator = content
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(None)

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def stream() -> None:
                try:
                    await self._stream(send)
                except OSError:
                    pass  # the client went away while we wrote
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(stream)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    tg.cancel_scope.cancel()
                    break
        aclose = getattr(self.body_iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


async def request_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives (never held whole). Raises ClientDisconnect when the client
    goes away before the end: an interrupted body is never taken for a whole one."""
    async for chunk in request.stream():
        if chunk:
            yield chunk


def client_gone() -> Response:
    """The answer to a request whose client disconnected (nobody reads it)."""
    return Response(status_code=499)


class TokenAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``, else 403
    ``{"message": "Forbidden"}`` (the reference's answer). Compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = b'{"message":"Forbidden"}'
        start: Message = {"type": "http.response.start", "status": 403,
                          "headers": [(b"content-type", b"application/json"),
                                      (b"content-length", str(len(body)).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body})
