"""The whole flow for every sample Sequence through the REST API: upload, start, input, output,
stdio, log, events, health, stop, kill, delete."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from flows import TEXT, log_records, read_until, start, wait_ended, wait_for
from hubproc import SAMPLES


def wait_running(client: httpx.Client, inst: str) -> dict[str, Any]:
    """Until a heartbeat from the running loop (run() has started and set its handlers)."""
    health: dict[str, Any] = wait_for(
        lambda: "loopLagMs" in (h := client.get(f"/instance/{inst}/health").json()).get("stats", {}) and h,
        what="run() to start")
    return health


def finish(client: httpx.Client, seq: str, inst: str, status: str, code: int | None) -> dict[str, Any]:
    ended = wait_ended(client, inst)
    assert (ended["status"], ended["exitCode"]) == (status, code), ended
    assert ended["reason"] and ended["terminated"] == {"exitcode": code, "reason": ended["reason"]}
    assert client.get(f"/instance/{inst}/health").json()["healthy"] is False
    assert client.delete(f"/sequence/{seq}").status_code == 200
    assert client.get(f"/instance/{inst}").json()["status"] == status  # kept after its Sequence is gone
    return ended


def test_every_sample_is_covered() -> None:
    tests = [name for name in globals() if name.startswith("test_sample_")]
    for sample in (p.name for p in SAMPLES.iterdir() if (p / "package.json").exists()):
        assert any(sample.replace("-", "_") in t for t in tests), sample


def test_sample_hello(client: httpx.Client, upload: Any) -> None:
    seq = upload("hello")
    inst = start(client, seq)
    # input sent at once after start is never lost (it waits for the runner, with backpressure)
    r = client.post(f"/instance/{inst}/input", content=b"Alice\nBob\n", headers={**TEXT, "x-end-stream": "true"})
    assert (r.status_code, r.json()) == (200, {"ended": True})
    assert client.get(f"/instance/{inst}/output").content == b"Hello Alice!\nHello Bob!\n"
    records = log_records(client, inst, "exiting with 0")
    assert all({"ts", "level", "msg"} <= set(r) for r in records)
    finish(client, seq, inst, "completed", 0)


def test_sample_sth_hello(client: httpx.Client, upload: Any) -> None:
    seq = upload("sth-hello")
    inst = start(client, seq)
    assert client.post(f"/instance/{inst}/input", content=b"python runner\n", headers=TEXT).status_code == 200
    assert client.get(f"/instance/{inst}/output").content == b"Hello python runner!\n"
    finish(client, seq, inst, "completed", 0)


def test_sample_pipeline_with_input_in_two_requests(client: httpx.Client, upload: Any) -> None:
    seq = upload("pipeline")
    inst = start(client, seq)
    r = client.post(f"/instance/{inst}/input", content=b"1\n2", headers={**TEXT, "x-end-stream": "false"})
    assert (r.status_code, r.json()) == (202, {"ended": False})
    assert client.post(f"/instance/{inst}/input", content=b"1\n", headers=TEXT).status_code == 200
    assert client.get(f"/instance/{inst}/output").content == b"2\n42\n"
    finish(client, seq, inst, "completed", 0)


def test_sample_binary_passthrough(client: httpx.Client, upload: Any) -> None:
    seq = upload("binary-passthrough")
    inst = start(client, seq)
    data = os.urandom(3 << 20)

    def body() -> Any:
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]

    with client.stream("GET", f"/instance/{inst}/output") as out:
        assert out.headers["content-type"] == "application/octet-stream"
        r = client.post(f"/instance/{inst}/input", content=body(), headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200
        assert out.read() == data
    finish(client, seq, inst, "completed", 0)


def test_sample_ndjson_transform(client: httpx.Client, upload: Any) -> None:
    seq = upload("ndjson-transform")
    inst = start(client, seq)
    lines = b'{"a": 1}\n[2]\n"x"\n'
    client.post(f"/instance/{inst}/input", content=lines, headers={"content-type": "application/x-ndjson"})
    out = client.get(f"/instance/{inst}/output")
    assert out.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(x) for x in out.text.splitlines()] == [
        {"a": 1, "seen": True, "n": 1}, {"value": [2], "seen": True, "n": 2}, {"value": "x", "seen": True, "n": 3}]
    finish(client, seq, inst, "completed", 0)


def test_sample_counter_with_args_and_two_readers(client: httpx.Client, upload: Any) -> None:
    seq = upload("counter")
    inst = start(client, seq, args=[40, 5])
    with client.stream("GET", f"/instance/{inst}/output") as a, client.stream("GET", f"/instance/{inst}/output") as b:
        expected = "".join(f"{i}\n" for i in range(1, 41)).encode()
        got_a, got_b = a.read(), b.read()
    # both readers attached before the first line: each gets every byte, in order
    assert expected.endswith(got_a) and expected.endswith(got_b) and got_b and got_a
    assert got_a == got_b or expected in (got_a, got_b)
    info = finish(client, seq, inst, "completed", 0)
    assert info["sequenceArgs"] == [40, 5]


def test_sample_events(client: httpx.Client, upload: Any) -> None:
    seq = upload("events")
    inst = start(client, seq)
    with client.stream("GET", f"/instance/{inst}/events/pong") as stream:
        def ping() -> bool:
            # STH's clients wrap the event as [5001, {...}]
            r = client.post(f"/instance/{inst}/_event", json=[5001, {"eventName": "ping", "message": "hub"}])
            assert r.status_code == 202
            return True

        wait_running(client, inst)
        ping()
        line = next(stream.iter_lines())
        assert json.loads(line) == "reply to hub"
    # once: the next "test-response"; the event that causes it is sent while once waits
    import threading

    answered = threading.Event()

    def send_until_answered() -> None:  # once subscribes when its request arrives: keep sending till then
        while not answered.wait(0.3):
            client.post(f"/instance/{inst}/_event", json={"eventName": "test-event", "message": {"k": 1}})

    threading.Thread(target=send_until_answered).start()
    try:
        assert client.get(f"/instance/{inst}/once/test-response").json() == "reply to {'k': 1}"
    finally:
        answered.set()
    health = client.get(f"/instance/{inst}/health").json()
    assert health["healthy"] is True and health["status"] == "running"
    assert any("Got 'test-event' with {'k': 1}" in r["msg"] for r in log_records(client, inst, "Got 'test-event'"))
    r = client.post(f"/instance/{inst}/_stop", json=[4001, {"timeout": 1000, "canCallKeepalive": False}])
    assert r.status_code == 202 and r.json()["status"] == "stopping"
    finish(client, seq, inst, "stopped", 138)


def test_sample_stop_keepalive(client: httpx.Client, upload: Any) -> None:
    seq = upload("stop-keepalive")
    inst = start(client, seq, args=["SEND_KEEPALIVE"])
    wait_running(client, inst)
    r = client.post(f"/instance/{inst}/_stop", json={"timeout": 2000, "canCallKeepalive": True})
    assert r.status_code == 202
    read_until(client, f"/instance/{inst}/stdout", b"Keeping alive for 3000 ms")
    assert client.get(f"/instance/{inst}").json()["status"] in ("running", "stopping")
    client.post(f"/instance/{inst}/_stop", json={"timeout": 2000})
    assert b"Cleanup done." in read_until(client, f"/instance/{inst}/stdout", b"Cleanup done.")
    finish(client, seq, inst, "stopped", 138)


def test_sample_unhealthy(client: httpx.Client, upload: Any) -> None:
    seq = upload("unhealthy")
    inst = start(client, seq)
    health = wait_running(client, inst)
    assert health["healthy"] is False and health["status"] == "running"
    r = client.post(f"/instance/{inst}/_kill", json=[4002, {"removeImmediately": False}])
    assert r.status_code == 202 and r.json()["status"] == "killing"
    finish(client, seq, inst, "killed", 137)


def test_sample_failing(client: httpx.Client, upload: Any) -> None:
    seq = upload("failing")
    inst = start(client, seq)
    assert client.get(f"/instance/{inst}/output").content == b"about to fail\n"
    assert b"This exception should appear on stderr" in read_until(
        client, f"/instance/{inst}/stderr", b"This exception should appear on stderr")
    ended = wait_ended(client, inst)
    assert ended["status"] == "errored" and ended["exitCode"] not in (0, 137, 138)
    assert "TestException" in ended["reason"] or "exit" in ended["reason"]
    # after the end, stderr still gives its last 64 KiB, then ends
    assert b"TestException" in client.get(f"/instance/{inst}/stderr").content
    finish(client, seq, inst, "errored", ended["exitCode"])


def test_sample_stdinout(client: httpx.Client, upload: Any) -> None:
    seq = upload("stdinout")
    inst = start(client, seq)
    r = client.post(f"/instance/{inst}/stdin", content=b"hi\nthere\n", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200
    out = read_until(client, f"/instance/{inst}/stdout", b"Got on stdin: there")
    assert b"Got on stdin: hi\nGot on stdin: there\n" in out
    finish(client, seq, inst, "completed", 0)


def test_sample_cpu_bound(client: httpx.Client, upload: Any) -> None:
    seq = upload("cpu-bound")
    inst = start(client, seq)
    read_until(client, f"/instance/{inst}/stdout", b"Spinning.")
    assert client.post(f"/instance/{inst}/_kill", json={}).status_code == 202
    finish(client, seq, inst, "killed", 137)


def test_sample_topic_producer_and_topic_consumer(client: httpx.Client, upload: Any) -> None:
    topic = "names"  # what the samples declare (module-level provides/requires, sent in PANG)
    consumer = start(client, upload("topic-consumer"))
    wait_for(lambda: any(t["name"] == topic and any(a.get("id") == consumer for a in t["actors"])
                         for t in client.get("/topics").json()), what="the consumer on the topic")
    r = client.post(f"/instance/{consumer}/input", content=b"x\n", headers=TEXT)
    assert (r.status_code, r.json()) == (405, {"error": "Input provided in other way"})
    producer_seq = upload("topic-producer")
    producer = start(client, producer_seq)
    out = read_until(client, f"/instance/{consumer}/output", b"Got: Carol\n")
    assert out == b"Got: Alice\nGot: Bob\nGot: Carol\n"
    assert wait_ended(client, producer)["status"] == "completed"
    listed = {t["name"]: t for t in client.get("/topics").json()}
    assert listed[topic]["contentType"] == "text/plain"
    assert client.get(f"/instance/{consumer}").json()["requires"] == topic
    assert client.get(f"/instance/{producer}").json()["provides"] == topic
    client.post(f"/instance/{consumer}/_stop", json={"timeout": 1000})
    wait_ended(client, consumer)
