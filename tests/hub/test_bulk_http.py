"""hub/bulk_http.py (and malloc_tuning.py): uvicorn's httptools cycle without the body copies, on a real uvicorn server.

An echo app answers every request body piece it received as a chunk of its chunked answer; bodies go
in chunked (many pieces per receive) and with a length, with ``Expect: 100-continue``, and the
answer must be the same bytes. The hub's own tests cover the routes that use it (input, output)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl

from hub.bulk_http import BodyPieces, BulkRequestCycle, install

SEEN_CYCLES: list[type] = []


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers each request body piece it received as one chunk, once the body ended (httpx sends
    the whole request before it reads the answer)."""
    if scope["type"] != "http":
        return
    SEEN_CYCLES.append(type(receive.__self__))
    received: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
        received.append(message["body"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
    for body in received:
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture
def server_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(httptools_impl, "RequestResponseCycle", httptools_impl.RequestResponseCycle)  # restored after
    assert install()
    config = uvicorn.Config(echo, host="127.0.0.1", port=0, http="httptools", loop="asyncio", lifespan="off",
                            log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def test_body_pieces_keep_what_on_body_adds_and_hand_it_over_once() -> None:
    body = BodyPieces()
    assert len(body) == 0 and body.take() == b""
    piece = b"x" * 1000
    body += piece
    assert len(body) == 1000
    assert body.take() is piece  # a lone piece is not copied
    body += b"ab"
    body += b""
    body += b"cd"
    assert len(body) == 4
    assert body.take() == b"abcd"
    assert len(body) == 0 and body.take() == b""


def test_chunked_bodies_come_back_byte_for_byte(server_url: str) -> None:
    rng = random.Random(10)
    pieces = [rng.randbytes(rng.choice((1, 100, 4096, 65536, 300_000))) for _ in range(120)]

    def upload() -> Iterator[bytes]:
        yield from pieces

    SEEN_CYCLES.clear()
    with httpx.Client(base_url=server_url, timeout=60) as client:
        with client.stream("POST", "/", content=upload()) as answer:
            assert answer.headers["transfer-encoding"] == "chunked"
            got = b"".join(answer.iter_raw())
        assert got == b"".join(pieces)
        sized = rng.randbytes(3 << 20)
        r = client.post("/", content=sized, headers={"expect": "100-continue"})
        assert r.status_code == 200 and r.content == sized
        assert client.post("/", content=b"").content == b""
    assert SEEN_CYCLES == [BulkRequestCycle] * 3  # install() took: uvicorn built our cycle for each request


def test_malloc_tuning_applies_on_glibc_and_stays_off_elsewhere() -> None:
    import platform

    from hub.malloc_tuning import tune

    assert tune() is (platform.libc_ver()[0] == "glibc")
