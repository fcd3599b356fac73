"""Topic operations: publish (streamed), read (live), list."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .http import HTTPError, LiveStream, client_gone, data_content_type, end_of_stream, request_chunks
from .records import is_valid_topic
from .state import hub
from .topics import Actor


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_valid_topic(name):
        raise HTTPError(400, "topic names are 1 to 200 letters, digits, '.', '_', ':' or '-'")
    return name


async def publish(request: Request) -> Response:
    topics = hub(request).topics
    end = end_of_stream(request, default=False)
    try:
        sent = await topics.produce(_name(request), request_chunks(request), Actor("provider", "api"),
                                    data_content_type(request), end=end)
    except ClientDisconnect:
        return client_gone()  # what arrived whole was published; the topic is not ended
    return JSONResponse({"bytes": sent, "ended": end}, status_code=200 if end else 202)


async def read(request: Request) -> Response:
    topic = hub(request).topics.get(_name(request), data_content_type(request))
    return LiveStream(topic.consume(Actor("consumer", "api")), topic.content_type)


async def list_topics(request: Request) -> Response:
    return JSONResponse(hub(request).topics.list())


routes = [
    Route("/topic/{name}", publish, methods=["POST"]),
    Route("/topic/{name}", read, methods=["GET"]),
    Route("/topics", list_topics, methods=["GET"]),
]
