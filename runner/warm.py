"""The runner's part of a warm start (host_bridge.zygote): what a template imports before it forks.

A template is a runner process that has imported everything a runner needs up to the
Sequence's first output, and nothing else: no connection, no threads, no event loop,
no Sequence. Each Instance forked from it then starts at the handshake instead of at
the interpreter's start-up. The list is the modules a cold runner has imported by the
time run() is called (measured with ``sys.modules``), minus the STH transport; asyncio
is imported the way a cold runner imports it (runner/ssl_deferral.py: without ssl until
something asks for ssl), so a fork has what a cold runner has, and no more.
"""

from __future__ import annotations

import importlib
import os
import types
from collections.abc import Iterable
from typing import Any

PRELOAD = (
    "runner.hello",
    "runner.config",
    "runner.signals",
    "runner.app",
    "runner.loop",
    "runner.control",
    "runner.monitor",
    "runner.stdio",
    "runner.stdin",
    "runner.logs",
    "runner.reaper",
    "runner.announce",
    "runner.runtime",
    "runner.credentials",
    "runner.deadline_thread",
    "runner.exiting",
    "runner.stopping",
    "runner.backend",
    "runner.output",
    "runner._reaper_c",  # runner.reaper's subreaper call (ctypes where it is not built)
    "runner.bridge",
    "runner.instream",
    "runner.transport.native",
    "runner.protocol.content_types",
    "runner.protocol.stop",
    "runner.sequence.loader",
    "runner.sequence.paths",  # archive.py (unpacking) only for a package, as in a cold runner
    "runner.sequence.content",
    "runner.sequence.context",
    "runner.sequence.inputs",
    "runner.sequence.shapes",
    "runner.sequence.topics",
    "runner.sequence.compat",
    "runner.sequence.errors",
)


def preload(fork_path: Iterable[types.CodeType] = ()) -> tuple[list[str], dict[int, types.CodeType]]:
    """Import what a runner will need, then run it (``exercise``); returns the modules that could
    not be imported (the runner imports them itself when it needs them, as a cold one does) and
    the code objects ``exercise`` moved (old id -> copy)."""
    from . import deferred_imports
    from .ssl_deferral import import_asyncio

    deferred_imports.install()  # as runner/__main__.py does: inspect & co. run only where used
    import_asyncio()  # what a cold runner does after PING, before anything imports asyncio
    from .loop import wants_uvloop

    missing = []
    names = list(PRELOAD)
    if wants_uvloop(os.environ):  # the runner's own rule: a fork runs on the loop a cold one would
        names.append("uvloop")
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    copies = exercise("uvloop" in names and "uvloop" not in missing, fork_path)
    deferred_imports.remove()  # a fork's Runtime removes its own again (it installs one, as a cold runner)
    return missing, copies


#: How often the template runs what every runner runs. CPython 3.11 writes into a code object
#: when it runs it (a warm-up count on each of its first 8 calls, then the quickened bytecode
#: and the counters of its specialising instructions): code the template ran often enough is
#: already specialised, so a fork runs it without copying its pages.
EXERCISE_ROUNDS = 10


def exercise(use_uvloop: bool, fork_path: Iterable[types.CodeType] = ()) -> dict[int, types.CodeType]:
    """Run what every runner runs, so that the caches it fills on first use (the type attribute
    cache, ABC and typing caches, the loop's lazily built state, logging's and json's compiled
    patterns) and its code's specialisation are made in the template: a fork reads them instead of
    writing (and so copying) their pages. A round is a whole runner start-up against a host of
    the template's own (runner/warm_startup.py). The first round is profiled: the code it ran, and
    what only a fork runs (``fork_path``, ``_start_up_code_not_in_rounds``), is packed into
    consecutive memory (runner/warm_codes.py); then ``EXERCISE_ROUNDS`` more rounds specialise the
    packed copies. Nothing here imports ssl: a fork would then have it, and a cold runner has not.
    (Before the rounds, the template ran pieces of this machinery instead: its loop, an in-memory
    handshake, a log record; the rounds cover them, and leaving them out measured no worse.)"""
    from .warm_codes import code_run_by, pack
    from .warm_functions import pack_functions
    from .warm_startup import startup_round

    ran = code_run_by(lambda: startup_round(use_uvloop))
    copies = pack({key: code for key, code in ran.items() if not _templates_own(code)},
                  [*fork_path, *_start_up_code_not_in_rounds()])
    pack_functions(copies.values())
    for _ in range(EXERCISE_ROUNDS):
        startup_round(use_uvloop)
    return copies


def _start_up_code_not_in_rounds() -> list[types.CodeType]:
    """What a runner's start-up runs that a round does differently (runner/warm_startup.py: the
    parts that would end the process or are the template's already): packed, not specialised."""
    import json

    from . import prog_name
    from .app import App, select_transport
    from .loop import wants_uvloop
    from .reaper import become_subreaper
    from .runtime import Runtime, collect_from_here
    from .sequence import loader
    from .ssl_deferral import import_asyncio
    from .transport.native import from_fd

    functions: list[Any] = [
        prog_name, App.run, select_transport, from_fd, import_asyncio, Runtime.run, Runtime._install_signals,
        become_subreaper, collect_from_here, Runtime._run_loop, wants_uvloop, Runtime._main,
        # a Sequence that is a directory with a package.json (the rounds' is a file)
        loader._read_package_json, loader._resolve_main, loader._check_fields, json.load, json.detect_encoding,
    ]
    return [f.__code__ for f in functions]


def _templates_own(code: types.CodeType) -> bool:
    """Code only the template runs (its rounds, its host, their Sequence): left where it is, so
    that what forks run lies closer together."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(code.co_filename) == here and os.path.basename(code.co_filename) in (
        "warm.py", "warm_startup.py", "warm_codes.py", "warm_sequence.py")
