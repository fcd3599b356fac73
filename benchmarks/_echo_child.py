"""The raw baseline's far end: echo every byte back on an inherited socket, no framing.

python _echo_child.py FD
"""

import socket
import sys


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    recv_into, sendall = sock.recv_into, sock.sendall
    while n := recv_into(buf):
        sendall(view[:n])
    sock.shutdown(socket.SHUT_WR)


if __name__ == "__main__":
    main()
