"""The runner's part of a warm start (host_bridge.zygote): what a template imports before it forks.

A template is a runner process that has imported everything a runner needs up to the
Sequence's first output, and nothing else: no connection, no threads, no event loop,
no Sequence. Each Instance forked from it then starts at the handshake instead of at
the interpreter's start-up. The list is the modules a cold runner has imported by the
time run() is called (measured with ``sys.modules``), minus the STH transport.
"""

from __future__ import annotations

import importlib
import os

PRELOAD = (
    "runner.hello",
    "runner.config",
    "runner.signals",
    "runner.app",
    "runner.control",
    "runner.monitor",
    "runner.stdio",
    "runner.stdin",
    "runner.logs",
    "runner.reaper",
    "runner.announce",
    "runner.runtime",
    "runner.credentials",
    "runner.backend",
    "runner.output",
    "ctypes",  # runner.reaper's, after the handshake
    "runner.bridge",
    "runner.instream",
    "runner.transport.native",
    "runner.protocol.content_types",
    "runner.sequence.loader",
    "runner.sequence.archive",
    "runner.sequence.failure",
    "runner.sequence.content",
    "runner.sequence.context",
    "runner.sequence.inputs",
    "runner.sequence.shapes",
    "runner.sequence.topics",
    "runner.sequence.compat",
    "asyncio",
    "queue",
    "anyio",
    "anyio.abc",
    "anyio.lowlevel",
    "anyio.to_thread",
    "anyio.streams.memory",
    "anyio._backends._asyncio",
)


def preload() -> list[str]:
    """Import what a runner will need; returns the modules that could not be imported (the
    runner imports them itself when it needs them, as a cold one does)."""
    missing = []
    names = list(PRELOAD)
    if os.environ.get("SEQUENCE_RUNNER_UVLOOP", "1").strip() not in ("0", "false", "no"):
        names.append("uvloop")
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    exercise("uvloop" in names and "uvloop" not in missing)
    return missing


def exercise(use_uvloop: bool) -> None:
    """Run, once, the machinery every runner runs (an event loop under anyio, JSON, a log record
    formatted), so the caches it fills on first use (ABC and typing caches, uvloop's and anyio's
    lazily built state, the logging and json modules' compiled patterns) are filled in the
    template: a fork reads them instead of writing (and so copying) their pages."""
    import io
    import json
    import logging

    import anyio

    async def tick() -> None:
        await anyio.lowlevel.checkpoint()
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0)

    anyio.run(tick, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
    json.loads(json.dumps({"warm": [1, 2.5, "x", None, True]}))
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.emit(logging.LogRecord("runner", logging.INFO, __file__, 0, "warm %s", ("up",), None))
