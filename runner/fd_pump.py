"""File descriptors 1 and 2 as pipes, pumped into the STDOUT/STDERR channel writers by one thread.

C extensions and child processes write to fds 1 and 2, not to ``sys.stdout``/``sys.stderr``, so
runner/stdio.py makes both fds pipes and this pumps them. One thread for both (``poll``), not one
each: every thread a runner starts before its first PANG costs its cold start ~0.25 ms of CPU.
The two pipes stay as independent as they were with a thread each: a chunk whose channel is full
is held (``ChannelWriter.offer``) and its pipe is not read again until that channel has room, so
a child writing to it blocks once the pipe is full, while the other pipe goes on being pumped.
"""

from __future__ import annotations

import os
import select
import threading
import time

from .thread_start import start_soon
from .transport.base import ChannelWriter

__all__ = ["PIPE_READ", "FdPump"]

PIPE_READ = 64 * 1024


class _Pipe:
    __slots__ = ("held", "target", "writer")

    def __init__(self, target: int, writer: ChannelWriter) -> None:
        self.target = target
        self.writer = writer
        #: A chunk read from the pipe that its channel had no room for yet.
        self.held: bytes | None = None


class FdPump:
    """Replaces each target fd (1, 2) by the write end of a pipe and pumps the read ends."""

    def __init__(self, targets: dict[int, ChannelWriter]) -> None:
        # on_space (the transport's reader thread, when credit makes room) wakes the poll here
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._pipes: dict[int, _Pipe] = {}
        self._detached = False
        self._released = False
        for target, writer in targets.items():
            read_end, write_end = os.pipe()
            os.dup2(write_end, target)  # fds 1/2 stay inheritable: child processes write here
            os.close(write_end)
            self._pipes[read_end] = _Pipe(target, writer)
        self._thread = threading.Thread(target=self._pump, name="runner-fd-pump", daemon=True)
        self._started = start_soon(self._thread)  # the main thread goes on loading meanwhile

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        for read_end in self._pipes:
            poller.register(read_end, select.POLLIN)
        reading = len(self._pipes)  # pipes not at their end yet
        while reading:
            for fd, _ in poller.poll():
                if fd == self._wake_read:
                    os.read(self._wake_read, 4096)
                    for read_end, pipe in self._pipes.items():
                        if pipe.held is not None and self._hand_over(pipe):
                            poller.register(read_end, select.POLLIN)
                    continue
                pipe = self._pipes[fd]
                try:
                    chunk = os.read(fd, PIPE_READ)
                except OSError:
                    chunk = b""
                if not chunk:
                    poller.unregister(fd)
                    reading -= 1
                    continue
                pipe.held = chunk
                if not self._hand_over(pipe):
                    poller.unregister(fd)  # read on once its channel has room (_wake_read)

    def _hand_over(self, pipe: _Pipe) -> bool:
        """The held chunk into its channel writer; False (and a wake-up when there is room) if full."""
        assert pipe.held is not None
        if not pipe.writer.offer(pipe.held, self._room):
            return False
        pipe.held = None
        return True

    def _room(self) -> None:
        if self._released:  # a callback a chunk no longer needed, after a warm round's release()
            return
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the wake pipe is full: a wake-up is pending already, and this one would say the same

    def close(self, timeout: float) -> None:
        """Detach fds 1 and 2 from the pipes and wait (bounded) until what was in them is sent.
        A child process still holding a pipe keeps it open: then we stop waiting. Once only: fds 1
        and 2 may be something else again by a second call (a warm template puts its own back)."""
        if not self._detached:
            self._detached = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            for pipe in self._pipes.values():
                os.dup2(devnull, pipe.target)
            os.close(devnull)
        deadline = time.monotonic() + timeout
        if self._started.wait(timeout):
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def release(self) -> None:
        """Close the pump's own fds, once ``close`` saw its thread end (a warm template's start-up
        round, runner/warm_startup.py, leaves no fd behind); a runner process just exits instead.
        While the thread still runs (a child holds a pipe) they stay open, and the round's own check
        reports the thread and the fds it left behind."""
        if not self._started.wait(0) or self._thread.is_alive() or self._released:
            return
        self._released = True
        for fd in (*self._pipes, self._wake_read, self._wake_write):
            os.close(fd)
        self._pipes = {}
