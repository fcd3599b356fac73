"""Serving the app with uvicorn: print the URL, shut down gracefully on SIGINT/SIGTERM, exit 0.

On a signal the hub stops taking connections, STOPs every Instance (KILL after
``--shutdown-timeout``), ends the live streams (topics, the hub log), waits for the
open requests to finish (bounded), runs the app's shutdown and returns.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from . import bulk_http, malloc_tuning
from .app import create_app
from .config import HubConfig

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Request body bytes uvicorn buffers before it stops reading the socket (its default: 64 KiB).
#: Input and stdin bodies stream through the hub; with 64 KiB uvicorn pauses and resumes reading
#: (a syscall each) and wakes the route for every ~64-256 KiB. 512 KiB halves the hub's calls per
#: byte of input; 1 MiB (with hub/bulk_http.py's cycle, which no longer copies what it buffers)
#: takes another ~7% off the hub's CPU per bulk byte against 512 KiB, 2 MiB no more. Backpressure
#: still holds: at most this plus one socket read (256 KiB) waits per request.
BODY_HIGH_WATER = 1 << 20


def raise_body_high_water() -> bool:
    """Set uvicorn's request-body high-water mark (a module constant its HTTP protocols read on each
    body piece); False, with a warning, when this uvicorn has no such constant (then its default holds)."""
    from uvicorn.protocols.http import h11_impl, httptools_impl

    modules = (httptools_impl, h11_impl)
    if not all(hasattr(module, "HIGH_WATER_LIMIT") for module in modules):
        logging.getLogger("hub").warning("uvicorn %s has no HIGH_WATER_LIMIT: request bodies are read 64 KiB at "
                                         "a time (slower input)", uvicorn.__version__)
        return False
    for module in modules:
        module.HIGH_WATER_LIMIT = BODY_HIGH_WATER  # type: ignore[attr-defined]
    return True


class HubServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette, hub_config: HubConfig) -> None:
        super().__init__(config)
        self.hub_app = app
        self.hub_config = hub_config
        self.url: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after a graceful exit (so a SIGTERM would end us with -15);
        # the hub's contract is exit 0 after a graceful shutdown.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open requests
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{port}{self.hub_config.api_base}"
            print(f"hub listening on {self.url}", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections from here on
        state = getattr(self.hub_app.state, "hub", None)
        if state is not None:
            await state.shutdown()
        await super().shutdown(sockets)


def serve(config: HubConfig) -> int:
    raise_body_high_water()
    bulk_http.install()
    malloc_tuning.tune()
    app = create_app(config)
    verbose = config.log_level in ("debug", "trace")
    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_level="info" if verbose else "warning",
        access_log=verbose, lifespan="on", timeout_graceful_shutdown=5, server_header=False,
    )
    server = HubServer(uv_config, app, config)
    server.run()
    if not server.started:
        print(f"hub: could not start on {config.host}:{config.port} (see the error above)", file=sys.stderr)
        return 1
    print("hub stopped", flush=True)
    return 0
