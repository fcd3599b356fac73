"""The ASGI app: routes under the API base, errors as JSON, auth, CORS, and the lifespan
that opens the store, the runtime, the bridge and the registry (and stops every Instance at the end)."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import psutil
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from host_bridge import Bridge

from . import routes_hub, routes_instances, routes_sequences, routes_topics
from .config import HubConfig, logging_level
from .http import HTTPError, TokenAuth, error
from .instances import InstanceRegistry
from .logs import LogFeed
from .runtimes import RuntimeUnavailable, make_runtime
from .state import HubState
from .store import Store
from .topics import TopicRouter

logger = logging.getLogger("hub")

#: How far each runner may send ahead of what the hub took (host_bridge's flow-control window on
#: output, stdout, stderr and log; its default is 1 MiB). Output crosses one more stage here than
#: under host_bridge direct (the Tap, its reader queue, the HTTP response), so 1 MiB in flight left
#: the runner waiting for credit and the hub woken for small batches: bulk REST input -> output,
#: alternating with 1 MiB in one period, hub CPU 1.80 -> 1.64 s/GiB, runner 0.98 -> 0.86, 0.43x ->
#: 0.52x of direct (2 MiB: 0.47x; 6 and 8 MiB no better than 4). The cost: output nobody reads
#: waits in the hub up to this much per Instance (it was up to 1 MiB).
OUTPUT_WINDOW = 4 << 20


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error(exc.status, exc.message)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(config: HubConfig) -> Starlette:
    log_feed = LogFeed()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub_logger = logging.getLogger("hub")
        hub_logger.setLevel(logging_level(config.log_level))
        # the docker runtime's engine calls: one INFO line per call is noise below debug
        logging.getLogger("httpx").setLevel(min(logging.WARNING, logging_level(config.log_level) + 10))
        hub_logger.addHandler(log_feed)
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement
        store = await Store.open(config.store)
        topics = TopicRouter()
        try:
            runtime = make_runtime(config)
            # the runtime outlives the bridge: containers are removed after every Instance ended
            async with runtime, Bridge(python=config.python, warm=config.warm_starts, stop_timeout_ms=config.stop_timeout_ms,
                                       handshake_timeout=config.handshake_timeout, window=OUTPUT_WINDOW) as bridge, \
                    anyio.create_task_group() as tg:
                await runtime.attach(bridge)
                registry = InstanceRegistry(config, store, topics, runtime, bridge, tg)
                await registry.load()
                state = HubState(config, store, topics, registry, log_feed)
                app.state.hub = state
                logger.info("hub ready (runtime %s), store %s", runtime.name, config.store)
                yield
                state.closing = True
                with anyio.CancelScope(shield=True):
                    await registry.shutdown()
                tg.cancel_scope.cancel()
        except RuntimeUnavailable as exc:
            print(f"hub: {exc}", file=sys.stderr, flush=True)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()
            log_feed.end_streams()
            hub_logger.removeHandler(log_feed)

    middleware = []
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                     allow_methods=["*"], allow_headers=["*"]))
    if config.token is not None:
        middleware.append(Middleware(TokenAuth, token=config.token))
    routes = [*routes_hub.routes, *routes_sequences.routes, *routes_instances.routes, *routes_topics.routes]
    return Starlette(
        routes=[Mount(config.api_base, routes=routes)],
        middleware=middleware,
        exception_handlers={HTTPError: _http_error, HTTPException: _starlette_error},
        lifespan=lifespan,
    )
