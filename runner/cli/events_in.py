"""Events for the running Sequence: ``--event NAME=JSON`` and ``--events-from FILE|FIFO|-``.

One line is one event, ``NAME=JSON``: the message is the JSON value when the
text after ``=`` is valid JSON, else that text as a string; ``NAME`` alone sends
no message. In ``--events-from`` sources blank lines and ``#`` comments are
skipped, and a line without a name is reported and skipped (the run goes on).

``--events-from`` reads its source on a thread while the Sequence runs: a
regular file to its end; ``-`` this process's stdin (a terminal, when the input
comes from ``--input FILE``) until Ctrl-D; a FIFO across writers (``echo
'ping="hi"' > fifo`` works any number of times) until the run ends. For a FIFO
this process holds a write end of its own, so reading never sees the end of one
writer: closing and opening it again after each writer lost the lines of a writer
that opened it in between (the pipe is discarded when its last reader closes).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .sources import from_thread, stdin_readable


class EventSyntaxError(ValueError):
    """A line that is not NAME=JSON."""


def parse_event(spec: str) -> tuple[str, Any]:
    name, eq, raw = spec.partition("=")
    name = name.strip()
    if not name:
        raise EventSyntaxError(f"expected NAME=JSON, got {spec!r}")
    if not eq:
        return name, None
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def check_source(source: str) -> str | None:
    """Why ``source`` cannot be read (None: it can)."""
    if source == "-":
        return None if stdin_readable() else "this process has no stdin"
    if not os.path.exists(source):
        return "no such file or FIFO"
    if os.path.isdir(source):
        return "is a directory"
    return None


async def source_lines(source: str) -> AsyncIterator[bytes]:
    """Lines of ``source`` (see the module docstring for when it ends), read on a daemon thread.
    The lines of a FIFO's writers run on as one stream (writers that overlap are not told apart)."""
    def work(put: Callable[[bytes], bool]) -> None:
        held = -1  # a FIFO's write end of our own (see the module docstring)
        try:
            if source != "-" and is_fifo(source):
                fd, held = _open_fifo(source)
                f = open(fd, "rb")  # noqa: SIM115
            else:
                f = open(0 if source == "-" else source, "rb", closefd=source != "-")  # noqa: SIM115
        except OSError:
            return
        try:
            with f:
                for line in f:
                    if not put(line):
                        return
        finally:
            if held >= 0:
                os.close(held)

    async for line in from_thread(work, "runner-cli-events"):
        yield line


def _open_fifo(path: str) -> tuple[int, int]:
    """(read end, write end) of a FIFO, both opened without waiting for a writer (the read end
    first, so the write end finds a reader); reads on the read end block as usual."""
    read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        os.close(read_fd)
        raise
    os.set_blocking(read_fd, True)
    return read_fd, write_fd


async def events_from(source: str, bad_line: Callable[[str], None]) -> AsyncIterator[tuple[str, Any]]:
    """``(name, message)`` per event line of ``source``; ``bad_line(text)`` for each line skipped."""
    number = 0
    async for raw in source_lines(source):
        number += 1
        text = raw.decode("utf-8", "replace").strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield parse_event(text)
        except EventSyntaxError as exc:
            bad_line(f"--events-from {source}, line {number}: {exc}; skipped")


async def forward_events(source: str, send: Callable[[str, Any], Awaitable[object]],
                         note: Callable[[str], None]) -> None:
    """Send every event line of ``source`` with ``send(name, message)`` until the source ends."""
    if source == "-" and os.isatty(0):
        note("type events as NAME=JSON lines (e.g. ping=\"hi\"); Ctrl-D ends them")
    async for name, message in events_from(source, note):
        await send(name, message)
