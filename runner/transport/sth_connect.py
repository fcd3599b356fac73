"""Where STH mode connects (``STHConfig``) and its nine connections, opened with their preambles.

Apart from runner/transport/sth.py and sth_sockets.py (the readers and the writer threads)
because STH mode connects and writes its PING before the transport and the runner core are
imported (runner/hello.py): only socket, select and runner.protocol.sth are needed for it.
"""

from __future__ import annotations

import _thread
import errno
import os
import select
import socket
import time

from ..protocol import sth
from ..protocol.stop import STH_EXIT_TIMEOUT_MS
from .sth_profile import STH_1_0, STHProfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NoPong", "STHConfig", "connect_all", "destroy", "read_until_pong", "write_exit_code"]

#: Bytes asked of CONTROL per read while waiting for PONG.
PONG_READ_SIZE = 64 * 1024


class STHConfig:
    """Where and who: from STH's environment (runner.sth_mode). A plain class: a dataclass would
    import dataclasses (and inspect) before PING."""

    __slots__ = ("connect_info", "connect_timeout", "created_ms", "exit_code_dir", "exit_timeout_ms", "host",
                 "instance_id", "port", "profile", "reconnect_delay", "reply_timeout", "sequence_info")

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
        profile: STHProfile = STH_1_0,
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
        #: Which STH host generation (runner/transport/sth_profile.py): how many connections, replies.
        self.profile = profile

    def __repr__(self) -> str:
        return "STHConfig(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__) + ")"


def _address_host(host: str) -> str | bytes:
    """An ASCII host name as bytes: getaddrinfo then takes it as it is, where a str goes through
    the "idna" codec, whose first use imports stringprep and unicodedata (~2 ms, ~0.5 MiB)
    before PING. A non-ASCII name stays a str (it needs IDNA)."""
    return host.encode("ascii") if host.isascii() else host


def connect_all(host: str, port: int, instance_id: str, timeout: float,
                channels: int = sth.CHANNEL_COUNT) -> dict[int, socket.socket]:
    """``channels`` connections (STH 1.0.x: nine; 0.18.x: eight, no PACKAGE), opened concurrently,
    each with its preamble sent in one write.

    Non-blocking connects polled together, not a thread per connection: on loopback the nine
    take ~0.1 ms, where nine threads took 0.5 ms and, on a loaded machine, up to 10 ms waiting
    for the GIL and a core. The addresses of ``host`` are tried in order, as
    ``socket.create_connection`` does, each within ``timeout``."""
    try:
        addresses = socket.getaddrinfo(_address_host(host), port, 0, socket.SOCK_STREAM)
        if not addresses:
            raise OSError("getaddrinfo returns an empty list")
    except OSError as err:
        raise OSError(f"cannot connect to the STH host {host}:{port}: {err}") from None
    error: OSError = OSError("not all channels connected")
    for family, kind, proto, _, address in addresses:
        try:
            socks = _connect_channels(family, kind, proto, address, timeout, channels)
        except OSError as err:
            error = err
            continue
        try:
            for channel, sock in socks.items():
                sock.settimeout(timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(sth.encode_preamble(instance_id, channel))
                sock.settimeout(None)
        except BaseException as err:
            for sock in socks.values():
                destroy(sock)
            if not isinstance(err, OSError):
                raise
            error = err
            continue
        return socks
    raise OSError(f"cannot connect to the STH host {host}:{port}: {error}") from None


def _connect_channels(family: int, kind: int, proto: int, address: Any, timeout: float,
                      channels: int) -> dict[int, socket.socket]:
    """The sockets of channels 0..channels-1 connected to ``address`` (all or none: OSError, TimeoutError)."""
    socks: dict[int, socket.socket] = {}
    try:
        for channel in range(channels):
            sock = socks[channel] = socket.socket(family, kind, proto)
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
        poller = select.poll()
        waiting = {sock.fileno(): sock for sock in socks.values()}
        for fd in waiting:
            poller.register(fd, select.POLLOUT)
        deadline = time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                code = waiting.pop(fd).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
    except BaseException:
        for sock in socks.values():
            destroy(sock)
        raise
    return socks


class NoPong(Exception):
    """No PONG came: the message says why (the runner's exit-20 reason)."""


def read_until_pong(control: socket.socket, deadline: float, timeout: float) -> bytes:
    """Every CONTROL byte read until a chunk completed PONG's line, PONG's chunk included.

    The bytes are returned as they came, not decoded: what came before PONG (and after it
    in the same chunk) is the transport's to deliver, through its own decoder, after PONG
    (ref §3.2: a runner that waits for PONG must tolerate other messages first). Here lines
    are only looked at for PONG's code, as leniently as the transport reads them (a bad line
    is skipped). ``deadline`` is on ``time.monotonic()``; ``timeout`` (seconds) names it in
    the error. NoPong: the deadline passed, the host ended CONTROL or the connection failed."""
    decoder = sth.MessageDecoder()
    got: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            control.settimeout(left)
            chunk = control.recv(PONG_READ_SIZE)
            if not chunk:
                raise NoPong("the STH host closed CONTROL during the handshake")
            got.append(chunk)
            if _completes_pong(decoder, chunk):
                return b"".join(got)
    except TimeoutError:
        raise NoPong(f"no PONG from the STH host within {timeout:g} s") from None
    except OSError as err:
        raise NoPong(f"connection to the STH host failed during the handshake: {err}") from None
    finally:
        try:
            control.settimeout(None)
        except OSError:
            pass


def _completes_pong(decoder: sth.MessageDecoder, chunk: bytes) -> bool:
    data = chunk
    while True:
        try:
            frames = decoder.feed(data)
            failed = False
        except sth.STHProtocolError as err:  # a bad line: skipped, the lines after it still count
            frames, failed = err.frames, True
        if any(code == sth.STHCode.PONG for code, _ in frames):
            return True
        if not failed:
            return False
        data = b""


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
        tmp = f"{path}.{_thread.get_ident()}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(int(code)))
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.write(2, f"runner: cannot write the exit code file {path}: {err}\n".encode())
        except OSError:
            pass
