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
    """Seconds from the first byte written to the last echoed byte checked; the digest; bytes.

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

        def write() -> None:
            for block in blocks():
                parent.sendall(block)
            parent.shutdown(socket.SHUT_WR)

        time.sleep(0.05)  # let the child start its loop; not timed
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
