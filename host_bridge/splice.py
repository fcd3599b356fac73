"""Output payloads from the runner's socket straight into a pipe, never through Python objects.

``python -m runner run`` writes the Sequence's output to its stdout. Through ``output()`` every
byte is received into a Python bytes object, joined when a frame was cut by a read, handed to a
thread and written again: three copies in this process. When stdout is a pipe, Linux can move
the bytes from the socket into the pipe itself (``os.splice``; for a Unix socket the pipe takes
references to the socket's pages, no copy at all). Frames still have to be parsed, so this
works one frame at a time: the Link's reader decodes a read as ever, and when the read ended
inside a DATA frame of the spliced channel, ``Connection.detach_data`` hands that frame over
(the payload bytes already read, and how many follow on the socket); ``PipeSplice.take``
writes the first and splices the rest.

Order and flow control hold because a frame is spliced only when nothing of its channel is
waiting ahead of it (the application's ``idle()``: its channel buffer empty, its writer done),
and only when the pipe has room for what was read of it already, so the write never blocks.
When the pipe is full (before the write, or during the splice) the reader waits for room, but
at most PIPE_STALL each time (the pipe's reader sets the pace anyway):
after that the rest of the payload is read into memory and fed to the channel like any other
data (``keep``) and goes out through the application's ordinary path, so the connection's other
frames (control, events) are never stuck behind a pipe nobody reads. Credit for spliced bytes is returned as the
pipe takes them (``delivered``). Anything but Linux (no ``os.splice``), or an fd that is not a
pipe, never gets here: ``PipeSplice.for_fd`` returns None and ``output()`` carries everything.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import termios
from collections.abc import Callable
from typing import Any

import anyio

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
#: Never spliced: the frame is small, the syscalls would cost more than the copies they save.
MIN_SPLICE = 64 * 1024
_SPLICE = getattr(os, "splice", None)
_FLAGS = getattr(os, "SPLICE_F_NONBLOCK", 2) | getattr(os, "SPLICE_F_MOVE", 1)
#: splice errors that come from the pipe (its reader went away, fd 1 was closed), not the socket.
_PIPE_SIDE = (errno.EPIPE, errno.EBADF, errno.EINVAL)

#: How long the reader waits for room in a full pipe before it reads the rest of a frame into
#: memory instead (and the application's ordinary path writes it).
PIPE_STALL = 0.25

wait_readable: Callable[[Any], Any] = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
wait_writable: Callable[[Any], Any] = getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable


class ConnectionCut(Exception):
    """The runner's socket ended (or failed) inside a spliced frame."""


def _queued(fd: int) -> int:
    """Bytes waiting in a pipe or socket (FIONREAD)."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little", signed=True)


class PipeSplice:
    """Splices one data channel's frames into a pipe, for a Link's reader (see the module)."""

    def __init__(
        self,
        fd: int,
        channel: int,
        idle: Callable[[], bool],
        delivered: Callable[[int], None],
        keep: Callable[[Any], None],
        gone: Callable[[], None],
    ) -> None:
        self.fd = fd
        self.channel = channel
        self._idle = idle
        self._delivered = delivered  # bytes the pipe took: credit back, counted
        self._keep = keep  # bytes not spliced: to the channel, in order
        self._gone = gone  # the pipe's reader went away (EPIPE): splicing ends
        self._capacity = fcntl.fcntl(fd, F_GETPIPE_SZ)
        self.active = True
        self.spliced = 0  # bytes, for tests and stats

    @classmethod
    def for_fd(cls, fd: int, channel: int, idle: Callable[[], bool], delivered: Callable[[int], None],
               keep: Callable[[Any], None], gone: Callable[[], None]) -> PipeSplice | None:
        """A splicer into ``fd``, or None where the kernel cannot do it (no os.splice, not a pipe)."""
        if _SPLICE is None:
            return None
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return None
            return cls(fd, channel, idle, delivered, keep, gone)
        except OSError:
            return None

    def ready(self) -> bool:
        return self.active and self._idle()

    async def take(self, sock: socket.socket, head: Any, rest: int) -> bool:
        """Deliver a detached frame: ``head`` (read already) and the next ``rest`` bytes of ``sock``;
        whether any of it was spliced. Raises ConnectionCut if the socket ends or fails before
        the frame does."""
        size = len(head) + rest
        spliced = False
        if size < MIN_SPLICE or not await self._room_for(len(head)):
            self._keep(head)
        elif self._write_head(head):
            left = await self._splice(sock, rest)
            spliced, rest = left < rest, left
        await self._read_rest(sock, rest)
        return spliced

    async def _room_for(self, size: int) -> bool:
        """Whether the pipe has room for ``size`` bytes, waiting PIPE_STALL at most for its reader."""
        with anyio.move_on_after(PIPE_STALL):
            while True:
                try:
                    if self._capacity - _queued(self.fd) >= size:
                        return True
                except OSError:
                    return False
                # Writable means a page is free, not that the head fits: then give the reader time.
                await wait_writable(self.fd)
                if self._capacity - _queued(self.fd) < size:
                    await anyio.sleep(0.001)
        return False

    def _write_head(self, head: Any) -> bool:
        """Write what was read of the frame (the pipe has room for it: we are its only writer);
        False, with the unwritten part kept, if the pipe's reader went away."""
        view = memoryview(head).cast("B")
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:
            self._stop()
            self._keep(view)
            return False
        if len(head):
            self._delivered(len(head))
        return True

    async def _splice(self, sock: socket.socket, rest: int) -> int:
        """Splice up to ``rest`` bytes from ``sock``; what is left when the pipe is full after all."""
        assert _SPLICE is not None
        fd_in, fd_out = sock.fileno(), self.fd
        while rest:
            try:
                n = _SPLICE(fd_in, fd_out, rest, flags=_FLAGS)
            except (BlockingIOError, InterruptedError):
                if _queued(fd_in) == 0:
                    await wait_readable(sock)
                    continue
                # The socket has bytes: the pipe is full. A reader that reads frees room soon;
                # one that stopped must not hold up the connection: the rest goes to memory.
                with anyio.move_on_after(PIPE_STALL) as waited:
                    await wait_writable(fd_out)
                if waited.cancelled_caught:
                    return rest
                continue
            except OSError as exc:
                if exc.errno in _PIPE_SIDE:
                    self._stop()
                    return rest
                raise ConnectionCut(f"connection broken inside a frame: {exc!r}") from exc
            if n == 0:
                raise ConnectionCut(f"connection closed inside a frame ({rest} bytes missing)")
            rest -= n
            self.spliced += n
            self._delivered(n)
        return rest

    async def _read_rest(self, sock: socket.socket, rest: int) -> None:
        """Read the rest of the frame into memory and keep it (in order) for the channel."""
        while rest:
            try:
                data = sock.recv(min(rest, 1 << 18))
            except (BlockingIOError, InterruptedError):
                await wait_readable(sock)
                continue
            except OSError as exc:
                raise ConnectionCut(f"connection broken inside a frame: {exc!r}") from exc
            if not data:
                raise ConnectionCut(f"connection closed inside a frame ({rest} bytes missing)")
            rest -= len(data)
            self._keep(data)

    def _stop(self) -> None:
        self.active = False
        self._gone()
