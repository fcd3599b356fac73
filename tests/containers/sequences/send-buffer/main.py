"""Yields the SO_SNDBUF of the runner's own connection to its host, as "[bytes, ...]\\n".

The connection is the process's one connected unix stream socket with a peer address (the
hub's listener); socketpairs (an event loop's wake-up pair, an inherited --fd) have none.
For the send-buffer tests (tests/containers, tests/host_bridge/test_listeners.py).
"""

import os
import socket


def connection_send_buffers():
    sizes = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # not a socket
            continue
        with sock:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM and sock.getpeername():
                sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    return sizes


async def run(context, input):
    yield f"{connection_send_buffers()}\n"
