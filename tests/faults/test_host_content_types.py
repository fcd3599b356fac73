"""Issue 11 item 17: one content-type table, used by both ends.

host_bridge read ``application/jsonl`` output as text lines while the runner wrote it as
ndjson; every content type now goes through runner.protocol.content_types on both sides.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import host_bridge.content as host_content
import runner.sequence.content as runner_content
from host_bridge import Bridge
from runner.protocol import content_types

ITEMS: dict[content_types.Kind, list[Any]] = {
    content_types.Kind.NDJSON: [{"a": 1}, [2, "x"], "three"],
    content_types.Kind.TEXT: ["one\n", "two\n"],
    content_types.Kind.BINARY: [b"\x00\x01\xff", b"\n\n"],
}
CONTENT_TYPES = [
    "application/x-ndjson", "application/jsonl", "Application/JSON-Lines; charset=utf-8", "text/x-ndjson",
    "application/jsonlines", "text/plain", "", "text/csv", "application/octet-stream", "application/json",
    "image/png",
]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_what_the_runner_writes_the_host_reads_back(content_type: str) -> None:
    kind = content_types.output_kind(content_type)
    items = ITEMS[kind]
    written = runner_content.output_encoder(content_type)(items)

    async def read() -> list[Any]:
        return [item async for item in host_content.decode_items(_chunks(written), content_type)]

    read_back = anyio.run(read)
    if kind is content_types.Kind.BINARY:
        assert b"".join(read_back) == b"".join(items)
    else:
        assert read_back == items


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_what_the_host_writes_the_runner_reads_back(content_type: str) -> None:
    kind = content_types.input_kind(content_type)
    if kind is None:
        with pytest.raises(runner_content.UnsupportedContentType):
            runner_content.decode_input(content_type, _chunks(b""))
        return
    items = ITEMS[kind]
    written = b"".join(host_content.encode_item(item, content_type) for item in items)

    async def read() -> list[Any]:
        return [item async for batch in runner_content.decode_input(content_type, _chunks(written)) for item in batch]

    read_back = anyio.run(read)
    assert (b"".join(read_back) if kind is content_types.Kind.BINARY else read_back) == (
        b"".join(items) if kind is content_types.Kind.BINARY else items
    )


def test_both_ends_use_the_one_table() -> None:
    assert runner_content.is_ndjson is content_types.is_ndjson
    assert runner_content.normalize_content_type is content_types.normalize
    assert host_content.NDJSON == runner_content.NDJSON == content_types.NDJSON


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_jsonl_output_of_a_real_runner_is_read_as_json(anyio_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "jsonl.py"
    path.write_text(textwrap.dedent("""
        provides = {"provides": "", "contentType": "application/jsonl"}

        def run(context, input):
            yield {"n": 1}
            yield [2]
    """))
    async with Bridge() as bridge:
        inst = await bridge.spawn(str(path))
        inst.discard("log")
        with anyio.fail_after(30):
            items = [item async for item in inst.output_items()]
            assert await inst.wait() == 0
    assert inst.info.output_content_type == "application/jsonl"
    assert items == [{"n": 1}, [2]]  # before: the text lines '{"n": 1}\n', '[2]\n'
