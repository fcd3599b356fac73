"""The practical limit of this architecture: two Python processes echoing over a socketpair.

No framing, no event loop: the host writes ``blocks`` from one thread, reads the
echo on another and hashes it exactly as the end-to-end benchmarks do.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable

from common import HERE, Hasher, Verifier


def raw_echo(
    blocks: Callable[[], Iterable[bytes]], total: int, checker: Hasher | Verifier | None = None
) -> tuple[float, str, int]:
    """Seconds from the second block's first byte to the last echoed byte checked; digest; bytes.

    The first block is echoed before the clock starts (the child's start-up is not timed).

    ``checker`` is the same kind the end-to-end run of the round uses (sha256 or exact compare).
    """
    parent, child = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_echo_child.py"), str(child.fileno())], pass_fds=[child.fileno()]
    )
    child.close()
    try:
        hasher = checker if checker is not None else Hasher()
        buf = bytearray(256 * 1024)
        view = memoryview(buf)

        source = iter(blocks())
        first = next(source)
        parent.sendall(first)  # the child's start-up is not timed: its echo of the first block is awaited
        while hasher.nbytes < len(first):
            n = parent.recv_into(buf)
            if not n:
                raise AssertionError("the echo child closed early")
            hasher.feed(bytes(view[:n]))

        def write() -> None:
            for block in source:
                parent.sendall(block)
            parent.shutdown(socket.SHUT_WR)

        start = time.perf_counter()
        writer = threading.Thread(target=write, name="bench-raw-writer")
        writer.start()
        while n := parent.recv_into(buf):
            hasher.feed(bytes(view[:n]))
        digest = hasher.finish()
        elapsed = time.perf_counter() - start
        writer.join()
        if hasher.nbytes != total:
            raise AssertionError(f"raw echo returned {hasher.nbytes} of {total} bytes")
        return elapsed, digest, hasher.nbytes
    finally:
        parent.close()
        proc.wait(10)


def raw_ping_pong(count: int, size: int = 64) -> list[float]:
    """Round trips of a ``size``-byte message through the echo child: the floor for event RTT
    (two processes, one socket, blocking calls, no framing, no event loop, no threads)."""
    parent, child = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_echo_child.py"), str(child.fileno())], pass_fds=[child.fileno()]
    )
    child.close()
    message = b"p" * size
    samples = []
    try:
        for i in range(count + min(50, count)):  # the first ones (child start-up) are not kept
            start = time.perf_counter()
            parent.sendall(message)
            got = 0
            while got < size:
                got += len(parent.recv(size - got))
            if i >= min(50, count):
                samples.append(time.perf_counter() - start)
        parent.shutdown(socket.SHUT_WR)
    finally:
        parent.close()
        proc.wait(10)
    return samples
