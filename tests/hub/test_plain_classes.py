"""The hub's plain classes without HTTP: Tap, TopicRouter, LineSplitter, Store."""

from __future__ import annotations

import codecs
import io
import json
import re
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.records import InstanceSummary
from hub.store import InvalidPackage, PackageTooLarge, Store
from hub.taps import MAX_CHUNK, Tap
from hub.topics import Actor, LineSplitter, TopicRouter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Source:
    """A channel stand-in that counts what was pulled from it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.pulled = 0
        self.more = anyio.Event()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        while self.chunks:
            self.pulled += 1
            yield self.chunks.pop(0)


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


async def test_pipe_tap_reads_nothing_without_readers_then_gives_every_reader_everything() -> None:
    source = Source([b"a", b"b", b"c"])
    tap = Tap("output", source.__aiter__(), pipe=True)
    results: list[bytes] = []

    async def read() -> None:
        results.append(await collect(tap.stream()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(tap.run)
        await anyio.sleep(0.05)
        assert source.pulled == 0  # unread output pushes back
        tg.start_soon(read)
        tg.start_soon(read)  # both attach before the pump's next turn
    assert results == [b"abc", b"abc"]
    assert tap.ended


async def test_pipe_tap_keeps_what_a_leaving_last_reader_did_not_take() -> None:
    source = Source([b"1", b"2", b"3", b"4"])
    tap = Tap("output", source.__aiter__(), pipe=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(tap.run)
        first = tap.stream()
        assert await first.__anext__() == b"1"
        await anyio.sleep(0.05)  # the tap has queued more for this reader
        await first.aclose()  # it leaves
        assert await collect(tap.stream()) == b"234"


async def test_tap_joins_what_its_source_has_ready_up_to_the_chunk_bound() -> None:
    """Ready chunks reach a reader joined (fewer, larger chunks), never past MAX_CHUNK, in order."""
    parts = [bytes([i]) * (300 << 10) for i in range(7)] + [b"tail"]
    source = Source(parts)
    tap = Tap("output", source.__aiter__(), pipe=True, ready=lambda: sum(map(len, source.chunks)))
    got: list[bytes] = []

    async def read() -> None:
        got.extend([c async for c in tap.stream()])

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.sleep(0.01)
        tg.start_soon(tap.run)
    assert b"".join(got) == b"".join(parts)
    assert all(len(c) <= MAX_CHUNK for c in got)
    assert [len(c) for c in got] == [900 << 10, 900 << 10, (300 << 10) + 4]  # 3 x 300 KiB fit in 1 MiB, 4 do not


async def test_tap_hands_on_a_trickle_as_it_comes() -> None:
    source = Source([b"a", b"b", b"c"])
    tap = Tap("output", source.__aiter__(), pipe=True, ready=lambda: 0)  # nothing ever waiting behind
    async with anyio.create_task_group() as tg:
        tg.start_soon(tap.run)
        assert [c async for c in tap.stream()] == [b"a", b"b", b"c"]


async def test_tail_tap_always_reads_and_replays_its_tail() -> None:
    source = Source([b"x" * 10, b"y" * 10, b"z" * 10])
    tap = Tap("stdout", source.__aiter__(), pipe=False, tail_bytes=15)
    await tap.run()
    assert source.pulled == 3
    assert await collect(tap.stream()) == b"z" * 10  # whole chunks, at most the last 15 bytes


def test_line_splitter_keeps_lines_whole() -> None:
    s = LineSplitter("application/x-ndjson")
    assert s.feed(b'{"a"') == [] and s.feed(b':1}\n{"b":2}\n{') == [b'{"a":1}\n', b'{"b":2}\n']
    assert s.flush() == [b"{\n"]
    raw = LineSplitter("application/octet-stream")
    assert raw.feed(b"ab") == [b"ab"] and raw.flush() == []


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_topic_late_consumer_joins_live_first_consumer_gets_the_backlog() -> None:
    router = TopicRouter(max_bytes=1 << 20)
    await router.produce("t", chunks_of(b"1\n2\n"), Actor("provider", "api"), "text/plain")
    topic = router.get("t")
    first = topic.consume(Actor("consumer", "api"))
    assert await first.__anext__() == b"1\n2\n"  # what waited for a consumer
    second = topic.consume(Actor("consumer", "api"))
    pending = anyio.create_task_group()
    async with pending as tg:
        got: list[bytes] = []

        async def take() -> None:
            got.append(await second.__anext__())

        tg.start_soon(take)
        await anyio.sleep(0.01)
        await router.produce("t", chunks_of(b"3\n"), Actor("provider", "api"), end=True)
    assert got == [b"3\n"]  # only the new item
    assert await first.__anext__() == b"3\n"
    with pytest.raises(StopAsyncIteration):
        await first.__anext__()
    assert [a["role"] for a in router.list()[0]["actors"]] == ["consumer"]  # `second` has not ended yet
    await second.aclose()
    await first.aclose()
    assert router.list()[0]["actors"] == []


async def test_topic_bound_holds_the_producer_until_the_slowest_consumer_reads() -> None:
    router = TopicRouter(max_bytes=10)
    topic = router.get("t", "text/plain")
    items = [f"{i:04d}\n".encode() for i in range(40)]
    slow, fast = topic.consume(Actor("consumer", "api")), topic.consume(Actor("consumer", "api"))
    slow_got: list[bytes] = []
    fast_got: list[bytes] = []
    done = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def run_fast() -> None:
            async for batch in fast:
                fast_got.append(batch)

        async def slow_first() -> None:
            slow_got.append(await slow.__anext__())

        async def produce() -> None:
            await topic.publish(items)
            topic.end()
            done.set()

        tg.start_soon(slow_first)
        tg.start_soon(run_fast)
        await anyio.sleep(0.01)  # both consumers attached
        tg.start_soon(produce)
        await anyio.sleep(0.1)
        assert not done.is_set()  # the slow consumer holds the producer...
        lead = len(b"".join(fast_got)) - len(b"".join(slow_got))
        assert 0 < lead <= 10  # ...and the fast one is at most the bound ahead of it
        async for batch in slow:
            slow_got.append(batch)
    assert b"".join(fast_got) == b"".join(slow_got) == b"".join(items)  # each item once, to each


def tar_bytes(files: dict[str, str]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return data.getvalue()


async def test_store_streams_checks_commits_and_survives_reopening(tmp_path: Path) -> None:
    pkg = tar_bytes({"package.json": json.dumps({"name": "s", "main": "m.py"}), "m.py": "def run(c, i): pass\n"})
    store = await Store.open(tmp_path)
    staged = await store.receive_package(chunks_of(pkg[:10], pkg[10:]), limit=len(pkg))
    record = await store.commit_new(staged, None)
    assert record.name == "s" and (store.package_dir(record) / "m.py").is_file()
    with pytest.raises(PackageTooLarge):
        await store.receive_package(chunks_of(pkg), limit=len(pkg) - 1)
    with pytest.raises(InvalidPackage, match="field `main` is missing"):
        await store.receive_package(chunks_of(tar_bytes({"package.json": "{}"})), limit=1 << 20)
    summary = InstanceSummary(id="i1", sequence=record.id, sequence_name="s", app_config={}, args=None,
                              created=record.created)
    await store.save_instance(summary)
    assert list((tmp_path / "tmp").iterdir()) == []
    await store.close()
    again = await Store.open(tmp_path)
    assert [r.id for r in await again.sequences()] == [record.id]
    assert await again.mark_lost("gone") == ["i1"]
    [lost] = await again.instances()
    assert (lost.status, lost.reason) == ("errored", "gone") and lost.ended is not None
    await again.close()


async def test_store_lookups_follow_replace_and_delete_and_match_the_index(tmp_path: Path) -> None:
    """Lookups are served from memory: they must say what the SQLite index says after every change."""
    def pkg(name: str) -> bytes:
        return tar_bytes({"package.json": json.dumps({"name": name, "main": "m.py"}), "m.py": "def run(c, i): pass\n"})

    store = await Store.open(tmp_path)
    first = await store.commit_new(await store.receive_package(chunks_of(pkg("a")), 1 << 20), None)
    second = await store.commit_new(await store.receive_package(chunks_of(pkg("b")), 1 << 20), "bee")
    assert (await store.find_sequence("a")) == (await store.find_sequence(first.id)) == first
    assert (await store.find_sequence("bee")) == second and await store.find_sequence("b") is None
    renamed = await store.commit_replace(await store.receive_package(chunks_of(pkg("b")), 1 << 20), second, "cee")
    assert renamed.id == second.id and await store.find_sequence("bee") is None
    assert await store.find_sequence("cee") == renamed
    await store.delete_sequence(first)
    assert await store.find_sequence("a") is None and await store.find_sequence(first.id) is None
    assert [r.name for r in await store.sequences()] == ["cee"]
    await store.close()
    again = await Store.open(tmp_path)
    assert [(r.id, r.name) for r in await again.sequences()] == [(second.id, "cee")]
    assert await again.find_sequence("cee") == await again.find_sequence(second.id)
    await again.close()


async def test_closing_a_tap_nobody_reads_ends_its_pump() -> None:
    tap = Tap("output", Source([b"never read"]).__aiter__(), pipe=True)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tap.run)
            await anyio.sleep(0.01)
            tap.close()
    assert tap.ended and await collect(tap.stream()) == b""


# Lines of UTF-16/32 are cut at the newline's code unit, never at a b"\n" inside a character
# (U+010A is b"\x0a\x01" in UTF-16-LE): two producers on one topic must not tear each other's text.
WIDE = [("utf-16-le", b""), ("utf-16-be", b""), ("utf-16", codecs.BOM_UTF16_LE),
        ("utf-16", codecs.BOM_UTF16_BE), ("utf-32", codecs.BOM_UTF32_LE), ("utf-32-be", b""),
        ("cp037", b""), ("utf-8", b"")]


@settings(max_examples=80, deadline=None)
@given(text=st.text(alphabet="a\nĊ\u0a0a€𝄞\r", max_size=40), cuts=st.lists(st.integers(0, 400), max_size=8),
       which=st.sampled_from(WIDE))
def test_line_splitter_cuts_at_code_units(text: str, cuts: list[int], which: tuple[str, bytes]) -> None:
    charset, bom = which
    fixed = charset + {codecs.BOM_UTF16_LE: "-le", codecs.BOM_UTF16_BE: "-be",
                       codecs.BOM_UTF32_LE: "-le"}.get(bom, "")  # the same codec with its byte order
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    expected = [line.encode(fixed, "replace") for line in lines]
    if bom:
        expected = [bom + (expected[0] if expected else b"")] + expected[1:]
    data = b"".join(expected)
    splitter = LineSplitter(f"text/plain; charset={charset}")
    got: list[bytes] = []
    at = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        got += splitter.feed(data[at:cut])
        at = cut
    got += splitter.flush()
    assert b"".join(got) == data
    if charset != "utf-8":  # UTF-8 keeps its fast path, where bytes.splitlines also cuts at "\r"
        assert got == expected


def test_line_splitter_unknown_or_bytes_codec_keeps_bytes() -> None:
    for ct in ("text/plain; charset=nope", "text/plain; charset=base64"):
        s = LineSplitter(ct)
        assert s.feed(b"a\nb") == [b"a\n"] and s.flush() == [b"b"]
