"""Topics over HTTP: 2 producers x 2 consumers exactly once, 202/200, listing, content types."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from flows import start as start_instance
from flows import wait_ended, wait_for

NDJSON = {"content-type": "application/x-ndjson"}


def consumers_on(client: httpx.Client, topic: str) -> int:
    for t in client.get("/topics").json():
        if t["name"] == topic:
            return sum(1 for a in t["actors"] if a["role"] == "consumer")
    return 0


def test_two_producers_two_consumers_each_item_reaches_each_consumer_exactly_once(client: httpx.Client) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    per_producer = 3000  # ~150 KB each: past the topic's buffer bound only with slow consumers
    got: dict[int, list[dict[str, int]]] = {}

    def consume(i: int) -> None:
        with client.stream("GET", f"/topic/{topic}", timeout=60) as r:
            assert r.headers["content-type"] == "application/x-ndjson"
            got[i] = [json.loads(line) for line in r.iter_lines() if line]

    readers = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in readers:
        t.start()
    wait_for(lambda: consumers_on(client, topic) == 2, what="two consumers")

    def produce(p: int) -> None:
        def body() -> object:
            for start in range(0, per_producer, 500):  # lines cut across chunks on purpose
                text = "".join(json.dumps({"p": p, "n": n}) + "\n" for n in range(start, start + 500))
                yield text[:7].encode()
                yield text[7:].encode()

        r = client.post(f"/topic/{topic}", content=body(), headers=NDJSON)
        assert r.status_code == 202  # the topic stays open

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(2)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(60)
    r = client.post(f"/topic/{topic}", content=b"", headers={**NDJSON, "x-end-stream": "true"})
    assert r.status_code == 200
    for t in readers:
        t.join(60)
    for items in got.values():
        counts = Counter((x["p"], x["n"]) for x in items)
        assert len(items) == 2 * per_producer and set(counts.values()) == {1}  # nothing lost, nothing twice
        for p in range(2):  # each producer's order is kept
            assert [x["n"] for x in items if x["p"] == p] == list(range(per_producer))


def test_a_topic_keeps_items_for_its_first_consumer_and_lists_its_actors(client: httpx.Client) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    r = client.post(f"/topic/{topic}", content=b"one\ntwo\nthr", headers={"content-type": "text/plain"})
    assert r.status_code == 202
    listed = {t["name"]: t for t in client.get("/topics").json()}
    assert listed[topic]["contentType"] == "text/plain" and listed[topic]["actors"] == []
    client.post(f"/topic/{topic}", content=b"ee\n", headers={"x-end-stream": "true", "content-type": "text/plain"})
    with client.stream("GET", f"/topic/{topic}") as r:
        assert r.headers["content-type"].startswith("text/plain")
        assert r.read() == b"one\ntwo\nthree\n"


def test_a_slow_consumer_holds_producers_at_the_bound_and_loses_nothing(client: httpx.Client) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    line = b"x" * 1023 + b"\n"
    total = 32 << 20  # more than the topic (1 MiB) and both sockets can buffer
    done = threading.Event()

    def produce() -> None:
        client.post(f"/topic/{topic}", content=line * (total // len(line)),
                    headers={"content-type": "text/plain", "x-end-stream": "true"})
        done.set()

    with client.stream("GET", f"/topic/{topic}", timeout=60) as r:
        chunks = r.iter_raw()
        threading.Thread(target=produce).start()
        time.sleep(1.0)
        assert not done.is_set()  # the producer waits for this consumer
        size = sum(len(c) for c in chunks)
    assert size == total and done.wait(10)


def test_a_topic_keeps_a_text_charset_for_its_readers_and_an_instance_consuming_it(
        client: httpx.Client, upload: Any) -> None:
    """POST /topic/:name with text/plain; charset=latin-1 keeps the charset (not dropped with the
    other parameters): the topic lists it, GET /topic/:name answers with it and the bytes as sent,
    and an Instance fed from the topic (inputTopic) reads the text decoded from latin-1 (hello
    answers in UTF-8)."""
    latin1 = {"content-type": "Text/Plain; Charset=ISO-8859-1", "x-end-stream": "true"}
    data = "José\nÜnï\n".encode("latin-1")
    read_back, fed = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    for topic in (read_back, fed):
        assert client.post(f"/topic/{topic}", content=data, headers=latin1).status_code == 200
    listed = {t["name"]: t for t in client.get("/topics").json()}
    assert listed[read_back]["contentType"] == "text/plain; charset=iso-8859-1"
    with client.stream("GET", f"/topic/{read_back}", timeout=30) as r:
        assert r.headers["content-type"] == "text/plain; charset=iso-8859-1"
        assert r.read() == data
    inst = start_instance(client, upload("hello"), inputTopic=fed)
    assert client.get(f"/instance/{inst}/output").content == "Hello José!\nHello Ünï!\n".encode()
    assert wait_ended(client, inst)["exitCode"] == 0


def test_two_utf16_producers_interleave_whole_lines(client: httpx.Client) -> None:
    """A UTF-16 topic is cut at the newline's two bytes on a character boundary: "Ċ" (U+010A) is
    b"\\x0a\\x01" in UTF-16-LE, and cutting at that b"\\n" tore both producers' lines."""
    topic = f"t-{uuid.uuid4().hex[:8]}"
    ct = {"content-type": "text/plain; charset=utf-16-le"}
    lines = {p: [f"{p}Ċ{n}ĊĊ\n" for n in range(400)] for p in "ab"}

    def produce(p: str) -> None:
        data = "".join(lines[p]).encode("utf-16-le")
        def body() -> object:
            for i in range(0, len(data), 333):  # odd sizes: cut mid-character
                yield data[i:i + 333]
                time.sleep(0.002)  # both producers publish at once: their items interleave

        assert client.post(f"/topic/{topic}", content=body(), headers=ct).status_code == 202

    producers = [threading.Thread(target=produce, args=(p,)) for p in lines]
    for t in producers:
        t.start()
    for t in producers:
        t.join(60)
    client.post(f"/topic/{topic}", content=b"", headers={**ct, "x-end-stream": "true"})
    with client.stream("GET", f"/topic/{topic}", timeout=60) as r:
        text = r.read().decode("utf-16-le")
    got = text.splitlines(keepends=True)
    for p, sent in lines.items():  # every line whole, each producer's in order
        assert [line for line in got if line.startswith(p)] == sent
    assert len(got) == 800
