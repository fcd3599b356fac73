"""The hub (``python -m hub``, its own process) beside host_bridge direct, in the same run.

* start: ``POST /sequence/:id/start`` (answers once the runner connected) against
  ``bridge.spawn()`` + ``wait_started()``;
* pass-through: ``POST input`` streamed while ``GET output`` streams back, against
  host_bridge's ``write_input``/``output()`` (bench_e2e.pipe), bytes checked both ways;
* many: N Instances streaming at once through the hub, against N through host_bridge.

Control requests use httpx; the pass-through streams use a minimal HTTP/1.1 client
(``RawStream``: one socket, chunked bodies) so that the figure measures the hub rather than
httpx's pure-Python parser. Both run in this (benchmark) process and their cost is in the
REST figures.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from bench_e2e import _spawn_ready, seq
from common import SEQUENCES, Hasher, Verifier

from host_bridge import Bridge
from host_bridge.inputs import YIELD_EVERY
from host_bridge.link import wait_readable, wait_writable

ROOT = Path(__file__).resolve().parent.parent


class HubServer:
    """A hub subprocess on an ephemeral loopback port, with its own store; always stopped."""

    #: What starts the hub (deploy/bench_bulk_suspects.py runs a launcher that patches it in-process).
    command: tuple[str, ...] = ("-m", "hub")
    max_instances = 500

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._store = tempfile.TemporaryDirectory(prefix="bench-hub-")
        self.args = args  # more hub flags (bench_hub_docker.py: --runtime docker)
        self.env = env or {}  # added to this process's environment
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> HubServer:  # noqa: PYI034 - a final class; Self needs typing_extensions on 3.10
        cmd = [sys.executable, *self.command, "--port", "0", "--store", self._store.name, "--min-free-mem", "0",
               "--min-free-space", "0", "--max-instances", str(self.max_instances), "--log-level", "warning",
               *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **self.env})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("hub listening on "):
            self.__exit__()
            raise RuntimeError(f"the hub did not start: {line!r}")
        self.url = line.split()[-1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._store.cleanup()


def package(name: str) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        root = SEQUENCES / name
        for path in sorted(root.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    return data.getvalue()


async def upload(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post("/sequence", content=package(name), headers={"x-name": f"{name}-{os.getpid()}"})
    r.raise_for_status()
    return str(r.json()["id"])


async def _start(client: httpx.AsyncClient, seq_id: str) -> str:
    r = await client.post(f"/sequence/{seq_id}/start", json={})
    if r.status_code != 200:
        raise RuntimeError(f"start answered {r.status_code}: {r.text}")
    return str(r.json()["id"])


async def _wait_ended(client: httpx.AsyncClient, inst: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while not (body := (await client.get(f"/instance/{inst}")).json()).get("ended"):
            await anyio.sleep(0.01)
    return dict(body)


# -- start ---------------------------------------------------------------------------------------


class RawClient:
    """Small requests on one kept-alive HTTP/1.1 connection, answers with a content-length.

    The start figure times one POST; httpx's pure-Python request and response handling
    costs 2-4 ms of it on this machine, which is the client's, not the hub's (the
    section also reports the figure through httpx)."""

    def __init__(self, url: str) -> None:
        self._stream = RawStream(url)
        self._open = False

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        stream = self._stream
        if not self._open:
            await stream.connect()
            self._open = True
        assert stream.sock is not None
        head = (f"POST {stream.base}{path} HTTP/1.1\r\nhost: {stream.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        await stream.send(head + body)
        lines = (await stream._head()).split(b"\r\n")
        length = next(int(v) for k, _, v in (line.partition(b":") for line in lines[1:]) if k.lower() == b"content-length")
        while len(stream._buffer) - stream._pos < length:
            if not await stream._fill():
                raise ConnectionError("connection closed inside an answer")
        answer, stream._pos = stream._buffer[stream._pos:stream._pos + length], stream._pos + length
        return int(lines[0].split(b" ", 2)[1]), answer

    async def aclose(self) -> None:
        await self._stream.aclose()


async def rest_start(client: httpx.AsyncClient, seq_id: str, raw: RawClient | None = None) -> float:
    """POST start -> its answer (the runner connected), through ``raw`` when given, else httpx;
    then drain hello-now and wait for its end (untimed)."""
    start = time.perf_counter()
    if raw is None:
        inst = await _start(client, seq_id)
    else:
        status, answer = await raw.post_json(f"/sequence/{seq_id}/start", b"{}")
        if status != 200:
            raise RuntimeError(f"start answered {status}: {answer!r}")
        inst = json.loads(answer)["id"]
    ready = time.perf_counter() - start
    await client.get(f"/instance/{inst}/output")
    await _wait_ended(client, inst)
    return ready


async def direct_start(bridge: Bridge) -> float:
    start = time.perf_counter()
    inst = await bridge.spawn(seq("hello-now"))
    await inst.wait_started()
    ready = time.perf_counter() - start
    async for _chunk in inst.output():
        pass
    with anyio.fail_after(30):
        await inst.wait()
    return ready


# -- pass-through --------------------------------------------------------------------------------


class RawStream:
    """One HTTP/1.1 request on its own connection, its bodies chunked both ways.

    Cheap on purpose, so that the REST figures measure the hub: each HTTP chunk of the upload is
    one ``sendmsg`` of its framing and pieces (joined only when the socket is full), and each byte
    of the response body is copied at most once (never re-sliced with what is left of its
    buffer). It uses its socket as direct's
    host_bridge does (host_bridge/link.py): non-blocking calls, waiting only when one would block,
    and the upload yields to other tasks every ``YIELD_EVERY`` chunks, as a ``write_input`` loop
    does (anyio's socket stream yields on every send and receive)."""

    def __init__(self, url: str) -> None:
        split = httpx.URL(url)
        self.host, self.port, self.base = split.host, split.port or 80, split.path.rstrip("/")
        self.sock: socket.socket | None = None
        self._buffer = b""
        self._pos = 0  # where the unread part of _buffer starts
        self._unyielded = 0  # chunks sent since the last yield

    async def connect(self) -> None:
        family, kind, proto, _, address = (await anyio.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM))[0]
        sock = self.sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock.connect_ex(address) not in (0, errno.EINPROGRESS):
            sock.connect(address)  # raises what went wrong
        await wait_writable(sock)
        if err := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            raise OSError(err, f"connect to {self.host}:{self.port}: {os.strerror(err)}")

    async def open(self, method: str, path: str, headers: dict[str, str]) -> None:
        await self.connect()
        lines = [f"{method} {self.base}{path} HTTP/1.1", f"host: {self.host}", *(f"{k}: {v}" for k, v in headers.items())]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def send_chunks(self, chunks: Iterable[bytes], group: int = 1) -> int:
        """Send the body chunked, ``group`` source chunks per HTTP chunk, then read the answer's status."""
        assert self.sock is not None
        pending: list[bytes] = []
        for chunk in chunks:
            pending.append(chunk)
            if len(pending) >= group:
                await self._send_chunk(pending)
                pending = []
        if pending:
            await self._send_chunk(pending)
        await self.send(b"0\r\n\r\n")
        status = int(bytes(await self._head()).split(b" ", 2)[1])
        await self.aclose()
        return status

    async def _send_chunk(self, pieces: list[bytes]) -> None:
        sock = self.sock
        assert sock is not None
        buffers = [b"%x\r\n" % sum(map(len, pieces)), *pieces, b"\r\n"]
        try:
            sent = sock.sendmsg(buffers)  # framing and payload gathered by the kernel: no join
        except BlockingIOError:
            sent = 0
        if sent < sum(map(len, buffers)):  # the socket is full: the rest (one join) once it has room
            await self.send(memoryview(b"".join(buffers))[sent:])
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await anyio.lowlevel.checkpoint()

    async def send(self, data: bytes | memoryview) -> None:
        """All of ``data`` on the socket, waiting only while it is full."""
        sock = self.sock
        assert sock is not None
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                await wait_writable(sock)

    async def _fill(self) -> bool:
        """Read more; what was not consumed yet (a partial head or size line) is kept in front."""
        sock = self.sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(1 << 20)
                break
            except BlockingIOError:
                await wait_readable(sock)
        if not data:
            return False
        rest = self._buffer[self._pos:]
        self._buffer, self._pos = (rest + data if rest else data), 0
        return True

    async def _line(self, end: bytes) -> bytes:
        """Up to ``end`` (consumed, not returned)."""
        while (found := self._buffer.find(end, self._pos)) < 0:
            if not await self._fill():
                raise ConnectionError("connection closed before the end of a head or chunk size")
        line, self._pos = self._buffer[self._pos:found], found + len(end)
        return line

    async def _head(self) -> bytes:
        return await self._line(b"\r\n\r\n")

    async def body(self) -> AsyncIterator[bytes]:
        """The response body (chunked), piece by piece as it arrives: a received buffer as it is when
        it holds only body bytes, else one copy of the piece (comparing views would cost more)."""
        await self._head()
        while left := int(await self._line(b"\r\n"), 16):
            while left:
                if self._pos >= len(self._buffer) and not await self._fill():
                    raise ConnectionError("connection closed inside a chunk")
                buffer, pos = self._buffer, self._pos
                take = min(left, len(buffer) - pos)
                yield buffer if take == len(buffer) else buffer[pos:pos + take]
                self._pos += take
                left -= take
            await self._line(b"\r\n")

    async def aclose(self) -> None:
        if self.sock is not None:
            self.sock.close()


async def rest_pipe(client: httpx.AsyncClient, seq_id: str, content_type: str,
                    blocks: Callable[[], Iterable[bytes]], total: int, checker: Hasher | Verifier) -> dict[str, Any]:
    """Like bench_e2e.pipe through HTTP: the first block must come back before the clock starts."""
    inst = await _start(client, seq_id)
    source = iter(blocks())
    first = next(source)
    url = str(client.base_url)
    reader = RawStream(url)
    await reader.open("GET", f"/instance/{inst}/output", {})
    output = reader.body().__aiter__()
    await client.post(f"/instance/{inst}/input", content=first,
                      headers={"content-type": content_type, "x-end-stream": "false"})
    with anyio.fail_after(30):
        while checker.nbytes < len(first):
            checker.feed(await output.__anext__())
    start = time.perf_counter()

    async def write() -> None:
        writer = RawStream(url)
        await writer.open("POST", f"/instance/{inst}/input",
                          {"content-type": content_type, "transfer-encoding": "chunked"})
        status = await writer.send_chunks(source)
        if status != 200:
            raise AssertionError(f"POST input answered {status}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        feed = checker.feed
        async for chunk in output:
            feed(chunk)
    elapsed = time.perf_counter() - start
    await reader.aclose()
    digest = checker.finish()
    ended = await _wait_ended(client, inst)
    if checker.nbytes != total or ended["exitCode"] != 0:
        raise AssertionError(f"hub pipe: {checker.nbytes} bytes of {total}, exit {ended['exitCode']}")
    return {"seconds": elapsed, "digest": digest, "timed_bytes": total - len(first)}


# -- many at once --------------------------------------------------------------------------------


def _payload(i: int, size: int) -> bytes:
    return (i.to_bytes(4, "big") * (size // 4 + 1))[:size]


async def rest_many(client: httpx.AsyncClient, seq_id: str, count: int, size: int) -> float:
    """``count`` Instances at once, each echoing ``size`` bytes; every byte checked."""
    start = time.perf_counter()

    async def one(i: int) -> None:
        inst = await _start(client, seq_id)
        data = _payload(i, size)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.post(f"/instance/{inst}/input", content=data,
                                              headers={"content-type": "application/octet-stream"}))
            got = (await client.get(f"/instance/{inst}/output")).content
        if got != data:
            raise AssertionError(f"hub instance {i}: {len(got)} bytes back of {size}, or not the same")

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return time.perf_counter() - start


async def direct_many(bridge: Bridge, count: int, size: int) -> float:
    start = time.perf_counter()

    async def one(i: int) -> None:
        inst = await _spawn_ready(bridge, "identity-bytes")
        inst.discard("stdout", "stderr", "log")
        data = _payload(i, size)
        got = bytearray()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: inst.send_input(data, content_type="application/octet-stream"))
            async for chunk in inst.output():
                got += chunk
        if got != data:
            raise AssertionError(f"direct instance {i}: {len(got)} bytes back of {size}, or not the same")
        with anyio.fail_after(30):
            await inst.wait()

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return time.perf_counter() - start


def client_for(hub: HubServer) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    return httpx.AsyncClient(base_url=hub.url, timeout=120, limits=limits)


async def _start_rounds(runs: int, bridge: Bridge, client: httpx.AsyncClient, hello: str,
                        say: Callable[..., None]) -> dict[str, Any]:
    """Start -> running three ways in each round, in alternating order (so none always goes first
    after another's Instance ended): direct spawn -> ready, POST start through a raw client and
    through httpx. Each clock runs from the call to its return in this process."""
    from common import median

    raw = RawClient(str(client.base_url))
    kinds: dict[str, Callable[[], Awaitable[float]]] = {
        "direct": lambda: direct_start(bridge),
        "rest": lambda: rest_start(client, hello, raw),
        "rest_httpx": lambda: rest_start(client, hello),
    }
    runs_s: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for rnd in range(runs + 1):  # round 0 warms all three up
            order = list(kinds) if rnd % 2 else list(reversed(kinds))
            for kind in order:
                took = await kinds[kind]()
                if rnd:
                    runs_s[kind].append(took)
    finally:
        await raw.aclose()
    result: dict[str, Any] = {f"{k}_ms": median(v) * 1e3 for k, v in runs_s.items()}
    result["runs_s"] = runs_s
    say(f"  hub start -> running {result['rest_ms']:.1f} ms (through httpx {result['rest_httpx_ms']:.1f} ms), "
        f"spawn -> ready {result['direct_ms']:.1f} ms")
    return result


# -- the section, side by side -------------------------------------------------------------------


async def _pass_through(rounds: int, label: str, variants: dict[str, Callable[[Any], Any]], digest: str,
                        period: bytes, say: Callable[..., None]) -> dict[str, Any]:
    """Round 0 is a warm-up checked by sha256; the timed rounds compare every byte."""
    samples: dict[str, list[float]] = {v: [] for v in variants}
    timed = 0
    for rnd in range(rounds + 1):
        for variant, run in variants.items():
            checker: Hasher | Verifier = Hasher() if rnd == 0 else Verifier(period)
            result = await run(checker)
            if rnd == 0 and result["digest"] != digest:
                raise AssertionError(f"{label} {variant}: sha256 of output != sha256 of input")
            if rnd:
                samples[variant].append(result["seconds"])
                timed = result["timed_bytes"]
        if rnd:
            say(f"  hub {label} round {rnd}/{rounds}: " + ", ".join(f"{v} {s[-1]:.3f}s" for v, s in samples.items()))
    medians = {v: sorted(s)[len(s) // 2] for v, s in samples.items()}
    return {"timed_bytes": timed, "runs_s": samples,
            "bytes_per_s": {v: timed / m for v, m in medians.items()},
            "rest_vs_direct": medians["direct"] / medians["rest"]}


async def section(cfg: Any, bridge: Bridge, say: Callable[..., None]) -> dict[str, Any]:
    import bench_e2e
    from common import MIB, bulk_chunks, bulk_pool, expected_digest, median, text_records

    out: dict[str, Any] = {}
    # The hub starts its runners warm (hub/app.py: Bridge(warm=True)), so direct ones start warm too;
    # ``bridge`` (run.py's cold one) is used only when it is warm itself.
    async with contextlib.AsyncExitStack() as stack:
        if bridge.warm is None:
            bridge = await stack.enter_async_context(Bridge(warm=True))
        server = stack.enter_context(HubServer())
        client = await stack.enter_async_context(client_for(server))
        ids = {n: await upload(client, n) for n in ("hello-now", "identity-bytes", "identity-text")}
        out["start"] = await _start_rounds(cfg.startup_runs, bridge, client, ids["hello-now"], say)
        pool = bulk_pool()
        bulk_total = (32 if cfg.quick else 256) * MIB
        line_block = text_records(655, 100)
        line_blocks = 60 if cfg.quick else 400
        cases = (
            ("bulk", "identity-bytes", bench_e2e.OCTET, b"".join(pool),
             lambda: bulk_chunks(pool, bulk_total), bulk_total),
            ("lines", "identity-text", bench_e2e.TEXT, line_block,
             lambda: [line_block] * line_blocks, len(line_block) * line_blocks),
        )
        for label, name, ctype, period, blocks, total in cases:
            digest = expected_digest(iter(blocks()), (hash(period), total))
            variants = {
                "direct": lambda c, n=name, t=ctype, b=blocks, s=total: bench_e2e.pipe(bridge, n, t, b, s, c),
                "rest": lambda c, n=name, t=ctype, b=blocks, s=total: rest_pipe(client, ids[n], t, b, s, c),
            }
            out[label] = await _pass_through(cfg.runs, label, variants, digest, period, say)
        count, size = 50, (256 << 10) if cfg.quick else (1 << 20)
        many_rest, many_direct = [], []
        for rnd in range(cfg.runs):
            many_direct.append(await direct_many(bridge, count, size))
            many_rest.append(await rest_many(client, ids["identity-bytes"], count, size))
            say(f"  hub {count} at once round {rnd + 1}/{cfg.runs}: direct {many_direct[-1]:.2f}s, "
                f"rest {many_rest[-1]:.2f}s")
        out["many"] = {"instances": count, "bytes_each": size, "rest_s": median(many_rest),
                       "direct_s": median(many_direct), "runs_s": {"rest": many_rest, "direct": many_direct}}
    return out
