"""Instance semantics through HTTP: error statuses, several readers, disconnects, backpressure,
many Instances at once."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import anyio
import httpx
import pytest
from flows import TEXT, read_until, start, wait_ended
from hubproc import HubProcess


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_every_instance_endpoint_is_404_for_an_unknown_id(client: httpx.Client) -> None:
    for inst in (str(uuid.uuid4()), "nope"):
        for method, path in (("GET", ""), ("POST", "/_stop"), ("POST", "/_kill"), ("GET", "/health"),
                             ("POST", "/_event"), ("GET", "/event/x"), ("GET", "/events/x"), ("GET", "/once/x"),
                             ("POST", "/input"), ("POST", "/stdin"), ("GET", "/output"), ("GET", "/stdout"),
                             ("GET", "/stderr"), ("GET", "/log")):
            r = client.request(method, f"/instance/{inst}{path}", headers=TEXT)
            assert (r.status_code, r.json()) == (404, {"error": f"Instance {inst} not found"}), path


def test_bad_bodies_are_400_and_ended_instances_409(client: httpx.Client, upload: Any) -> None:
    seq = upload("events")
    inst = start(client, seq)
    for body, error in (({"timeout": "soon"}, "Invalid timeout format"), ({"timeout": -1}, "Invalid timeout format"),
                        ({"canCallKeepalive": "yes"}, "Invalid canCallKeepalive format"),
                        ([4001, {"timeout": True}], "Invalid timeout format")):
        r = client.post(f"/instance/{inst}/_stop", json=body)
        assert (r.status_code, r.json()) == (400, {"error": error})
    r = client.post(f"/instance/{inst}/_kill", json={"removeImmediately": "now"})
    assert (r.status_code, r.json()) == (400, {"error": "Invalid removeImmediately format"})
    for body in ({"message": 1}, {"eventName": 5}, [5001], "ping", {"eventName": "a/b"}):
        assert client.post(f"/instance/{inst}/_event", json=body).status_code == 400, body
    assert client.post(f"/instance/{inst}/_event", content=b"{oops", headers={"content-type": "application/json"}).status_code == 400
    r = client.post(f"/instance/{inst}/_event", json={"eventName": "big", "message": "x" * (2 << 20)})
    assert r.status_code == 413  # events are bounded by --max-body-size (1 MiB)
    r = client.post(f"/instance/{inst}/input", content=b"x")
    assert (r.status_code, r.json()) == (406, {"error": "Content-Type must be defined"})
    assert client.get(f"/instance/{inst}").json()["status"] == "running"
    assert client.post(f"/instance/{inst}/_kill").status_code == 202
    ended = wait_ended(client, inst)
    assert ended["status"] == "killed"
    for path, kwargs in (("/_stop", {}), ("/_kill", {}), ("/_event", {"json": {"eventName": "ping"}}),
                         ("/input", {"content": b"x", "headers": TEXT}), ("/stdin", {"content": b"x"})):
        r = client.post(f"/instance/{inst}{path}", **kwargs)
        assert r.status_code == 409 and "killed" in r.json()["error"], path
    assert client.get(f"/instance/{inst}/once/pong").status_code == 409


def test_a_client_that_disconnects_mid_stream_never_blocks_or_ends_the_instance(client: httpx.Client,
                                                                                   upload: Any) -> None:
    seq = upload("counter")
    inst = start(client, seq, args=[300, 10])
    first = read_until(client, f"/instance/{inst}/output", b"3\n")  # then hang up mid-stream
    assert first.startswith(b"1\n2\n3\n")
    assert client.get(f"/instance/{inst}").json()["status"] == "running"
    with client.stream("GET", f"/instance/{inst}/output") as again:  # re-attach: the rest, in order
        rest = again.read()
    numbers = [int(x) for x in (first + rest).split()]
    assert numbers[-1] == 300 and numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert numbers[: len(first.split())] == list(range(1, len(first.split()) + 1))
    assert wait_ended(client, inst)["status"] == "completed"


def test_unread_output_pushes_back_and_nothing_is_lost(client: httpx.Client, upload: Any) -> None:
    seq = upload("counter")
    count = 200_000  # ~1.3 MB of output: more than host_bridge's window of unread output
    inst = start(client, seq, args=[count, 0])
    time.sleep(1.5)
    # nobody reads: the Sequence waits like a writer on a full pipe, it does not finish
    assert client.get(f"/instance/{inst}").json()["status"] == "running"
    out = client.get(f"/instance/{inst}/output").content
    assert out == "".join(f"{i}\n" for i in range(1, count + 1)).encode()
    assert wait_ended(client, inst)["status"] == "completed"


def test_several_readers_of_stdout_and_a_late_reader_gets_the_tail(client: httpx.Client, upload: Any) -> None:
    seq = upload("stdinout")
    inst = start(client, seq)
    got: dict[int, bytes] = {}

    def reader(i: int) -> None:
        got[i] = read_until(client, f"/instance/{inst}/stdout", b"Got on stdin: 3\n")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    client.post(f"/instance/{inst}/stdin", content=b"1\n2\n3\n", headers={"x-end-stream": "false"})
    for t in threads:
        t.join(20)
    assert all(v.endswith(b"Got on stdin: 3\n") for v in got.values()) and len(got) == 3
    late = read_until(client, f"/instance/{inst}/stdout", b"3\n")
    assert late == b"Got on stdin: 1\nGot on stdin: 2\nGot on stdin: 3\n"
    client.post(f"/instance/{inst}/stdin", content=b"")  # ends stdin: the Sequence completes
    assert wait_ended(client, inst)["status"] == "completed"


@pytest.mark.anyio
async def test_twenty_instances_stream_at_once(shared_hub: HubProcess) -> None:
    size = 256 << 10
    async with httpx.AsyncClient(base_url=shared_hub.url, timeout=60) as c:
        name = f"pass-{uuid.uuid4().hex[:6]}"
        from hubproc import package

        seq = (await c.post("/sequence", content=package("binary-passthrough"), headers={"x-name": name})).json()["id"]
        results: dict[int, bool] = {}

        async def one(i: int) -> None:
            inst = (await c.post(f"/sequence/{seq}/start", json={})).json()["id"]
            data = bytes([i]) * size + str(i).encode()

            async def feed() -> None:
                r = await c.post(f"/instance/{inst}/input", content=data,
                                 headers={"content-type": "application/octet-stream"})
                assert r.status_code == 200

            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                r = await c.get(f"/instance/{inst}/output")
            results[i] = r.content == data

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
    assert results == {i: True for i in range(20)}


def test_ended_instances_past_keep_ended_keep_their_summary_but_not_their_streams(hub_factory: Any) -> None:
    from hubproc import package

    hub = hub_factory("--keep-ended", "1")
    with hub.client() as c:
        seq = c.post("/sequence", content=package("counter")).json()["id"]
        first, second = start(c, seq, args=[10**6, 0]), start(c, seq, args=[10**6, 0])  # output never read
        for inst in (first, second):
            c.post(f"/instance/{inst}/_kill")
            wait_ended(c, inst)
        r = c.get(f"/instance/{first}/output")
        assert r.status_code == 410 and "ended" in r.json()["error"]
        assert c.get(f"/instance/{first}").json()["status"] == "killed"
        assert c.get(f"/instance/{second}/stdout").status_code == 200  # the newest ended one keeps its streams


def test_input_is_read_in_the_charset_its_content_type_names(client: httpx.Client, upload: Any) -> None:
    """POST input with text/plain; charset=latin-1 reaches the Sequence decoded from latin-1 (hello
    answers in UTF-8); the charset is not dropped with the other parameters."""
    seq = upload("hello")
    inst = start(client, seq)
    r = client.post(f"/instance/{inst}/input", content="José\nÜnï\n".encode("latin-1"),
                    headers={"content-type": "Text/Plain; Charset=ISO-8859-1", "x-end-stream": "true"})
    assert r.status_code == 200
    assert client.get(f"/instance/{inst}/output").content == "Hello José!\nHello Ünï!\n".encode()
    assert wait_ended(client, inst)["exitCode"] == 0
