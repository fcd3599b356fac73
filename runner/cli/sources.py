"""Where ``python -m runner run`` reads the Sequence's input and stdin from: files or our stdin."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

READ_SIZE = 64 * 1024


def stdin_readable() -> bool:
    """Whether fd 0 is open (CI may have no stdin at all)."""
    try:
        os.fstat(0)
    except OSError:
        return False
    return True


def open_source(path: str | None) -> int | None:
    """A file descriptor to read: ``path``, or stdin when None/"-"; None means empty."""
    if path in (None, "-"):
        return 0 if stdin_readable() else None
    return os.open(path, os.O_RDONLY)


async def read_chunks(fd: int | None) -> AsyncIterator[bytes]:
    """Chunks read from ``fd`` by a daemon thread (so a terminal or a silent pipe never blocks
    the loop or the exit); ends at EOF or on a read error. ``fd is None`` is an empty source."""
    if fd is None:
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(4)

    def work() -> None:
        while True:
            try:
                data: bytes | None = os.read(fd, READ_SIZE)
            except OSError:
                data = None
            try:
                asyncio.run_coroutine_threadsafe(queue.put(data or None), loop).result()
            except (RuntimeError, asyncio.CancelledError):  # the loop is gone: nobody reads any more
                return
            except Exception:  # noqa: BLE001 - e.g. concurrent.futures.CancelledError at shutdown
                return
            if not data:
                return

    threading.Thread(target=work, name="runner-cli-input", daemon=True).start()
    while True:
        chunk = await queue.get()
        if chunk is None:
            return
        yield chunk
