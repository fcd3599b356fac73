"""Mounted into a runner container by deploy/bench_bulk_suspects.py (variant docker-default-sndbuf):
the runner's end of its unix connection goes back to the kernel's default send buffer, as before
the runner set 1 MiB itself. Diagnostic only; never part of the image."""

import os
import socket

_size = os.environ.get("BULK_SUSPECTS_RUNNER_SNDBUF")
if _size:
    import runner.transport.native as _native

    _connect = _native.connect

    def connect(target, timeout):  # type: ignore[no-untyped-def]
        sock = _connect(target, timeout)
        if target[0] == "unix":
            # Linux doubles what is set (its bookkeeping); half the default reads back as the default
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(_size) // 2)
        return sock

    _native.connect = connect
