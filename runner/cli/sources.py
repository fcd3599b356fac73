"""Where ``python -m runner run`` reads the Sequence's input and stdin from: files or our stdin."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

READ_SIZE = 64 * 1024
#: A regular file is read on the loop itself, in larger pieces: a read from a file never waits for
#: a writer, and a MiB at a time means 16x fewer input frames and wake-ups per byte than 64 KiB
#: handed over from a thread (the CLI's CPU per byte of bulk input halved, issue 13 part 4).
FILE_READ_SIZE = 1 << 20
T = TypeVar("T")


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


async def from_thread(work: Callable[[Callable[[T], bool]], None], name: str) -> AsyncIterator[T]:
    """What ``work`` hands to ``put`` on a daemon thread, as an async iterator that ends when ``work``
    returns. Blocking reads (a terminal, a silent pipe, a FIFO waiting for a writer) happen on that
    thread, so they never block the loop or the exit. ``put`` returns False once nobody reads."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(4)

    def hand_over(item: tuple[T] | None) -> bool:
        put = queue.put(item)
        try:
            asyncio.run_coroutine_threadsafe(put, loop).result()
        except (RuntimeError, asyncio.CancelledError):  # the loop is gone: nobody reads any more
            put.close()  # never scheduled: no "never awaited" warning
            return False
        except Exception:  # noqa: BLE001 - e.g. concurrent.futures.CancelledError at shutdown
            return False
        return True

    def run() -> None:
        try:
            work(lambda item: hand_over((item,)))
        finally:
            hand_over(None)

    threading.Thread(target=run, name=name, daemon=True).start()
    while True:
        boxed = await queue.get()
        if boxed is None:
            return
        yield boxed[0]


def is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def can_send_file(fd: int) -> bool:
    """Whether ``fd`` can go to the runner with os.sendfile: a regular file with a size (a /proc
    file says 0 and is read instead), on a system that has sendfile."""
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return hasattr(os, "sendfile") and stat.S_ISREG(info.st_mode) and info.st_size > 0


async def read_chunks(fd: int | None) -> AsyncIterator[bytes]:
    """Chunks read from ``fd``: a regular file on the loop, anything else (a terminal, a pipe, a
    FIFO: reads that may wait) on a daemon thread; ends at EOF or on a read error.
    ``fd is None`` is an empty source."""
    if fd is None:
        return
    if is_regular_file(fd):
        while True:
            try:
                data = os.read(fd, FILE_READ_SIZE)
            except OSError:
                return
            if not data:
                return
            yield data

    def work(put: Callable[[bytes], bool]) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                return
            if not data or not put(data):
                return

    async for chunk in from_thread(work, "runner-cli-input"):
        yield chunk
