"""Where STH mode connects (``STHConfig``) and its nine connections, opened with their preambles.

Apart from runner/transport/sth.py and sth_sockets.py (the writer threads, the exit-code file)
because STH mode connects and writes its PING before the transport and the runner core are
imported (runner/hello.py): only socket, threading and runner.protocol.sth are needed for it.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from ..protocol import sth
from ..protocol.stop import STH_EXIT_TIMEOUT_MS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["STHConfig", "connect_all", "destroy", "write_exit_code"]


class STHConfig:
    """Where and who: from STH's environment (runner.sth_mode). A plain class: a dataclass would
    import dataclasses (and inspect) before PING."""

    __slots__ = ("connect_info", "connect_timeout", "created_ms", "exit_code_dir", "exit_timeout_ms", "host",
                 "instance_id", "port", "reconnect_delay", "reply_timeout", "sequence_info")

    def __init__(
        self,
        host: str,
        port: int,
        instance_id: str,
        sequence_info: dict[str, Any],
        connect_info: dict[str, Any],
        connect_timeout: float = 10.0,
        reply_timeout: float = 1.0,
        reconnect_delay: float = 10.0,
        exit_timeout_ms: int = STH_EXIT_TIMEOUT_MS,
        exit_code_dir: str = "/tmp",  # where STH's process adapter looks
        created_ms: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.instance_id = instance_id
        self.sequence_info = sequence_info
        self.connect_info = connect_info
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.reconnect_delay = reconnect_delay
        self.exit_timeout_ms = exit_timeout_ms
        self.exit_code_dir = exit_code_dir
        self.created_ms = int(time.time() * 1000) if created_ms is None else created_ms

    def __repr__(self) -> str:
        return "STHConfig(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__) + ")"


def _address_host(host: str) -> str | bytes:
    """An ASCII host name as bytes: getaddrinfo then takes it as it is, where a str goes through
    the "idna" codec, whose first use imports stringprep and unicodedata (~2 ms, ~0.5 MiB)
    before PING. A non-ASCII name stays a str (it needs IDNA)."""
    return host.encode("ascii") if host.isascii() else host


def connect_all(host: str, port: int, instance_id: str, timeout: float) -> dict[int, socket.socket]:
    """Nine connections, opened concurrently, each with its preamble sent in one write."""
    socks: dict[int, socket.socket] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(channel: int) -> None:
        try:
            # typeshed says str; getaddrinfo takes bytes too (see _address_host)
            sock = socket.create_connection((_address_host(host), port), timeout=timeout)  # type: ignore[arg-type]
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(sth.encode_preamble(instance_id, channel))
                sock.settimeout(None)
            except BaseException:
                sock.close()
                raise
        except OSError as err:
            with lock:
                errors.append(err)
            return
        with lock:
            socks[channel] = sock

    threads = [threading.Thread(target=one, args=(ch,), name=f"sth-connect-{ch}", daemon=True)
               for ch in range(sth.CHANNEL_COUNT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors or len(socks) != sth.CHANNEL_COUNT:
        for sock in socks.values():
            destroy(sock)
        err = errors[0] if errors else OSError("not all channels connected")
        raise OSError(f"cannot connect to the STH host {host}:{port}: {err}") from None
    return socks


def destroy(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def write_exit_code(code: int, directory: str = "/tmp") -> None:
    """``str(code)`` to ``<directory>/runner-<pid>`` (best effort: the runner exits anyway)."""
    path = os.path.join(directory, os.path.basename(sth.exit_code_file(os.getpid())))
    try:
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(int(code)))
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.write(2, f"runner: cannot write the exit code file {path}: {err}\n".encode())
        except OSError:
            pass
