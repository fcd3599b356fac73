"""Text in a charset other than UTF-8, end to end with real runners: what a Sequence announces in
PANG (``text/plain; charset=...``) is how the host decodes its output, and input items are encoded
in the charset of the input content type."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hb_helpers import SAMPLES, collect, real_runner_available

from host_bridge import Bridge, Status

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not real_runner_available(), reason="python -m runner is not available"),
]

PACKAGE = '{"name": "charset-probe", "version": "0.0.1", "main": "main.py"}'


def write_sequence(where: Path, content_type: str, lines: list[str]) -> Path:
    """A Sequence whose output is ``content_type`` and which yields ``lines`` one by one."""
    where.mkdir()
    (where / "package.json").write_text(PACKAGE)
    (where / "main.py").write_text(
        f"provides = {{'provides': '', 'contentType': {content_type!r}}}\n"
        f"LINES = {lines!r}\n"
        "async def run(context, input):\n"
        "    for line in LINES:\n"
        "        yield line\n",
        encoding="utf-8",
    )
    return where


async def test_latin1_output_is_decoded_as_latin1(bridge: Bridge, tmp_path: Path) -> None:
    lines = ["José\n", "Ünïcødé ×÷ ÿ\n"]
    seq = write_sequence(tmp_path / "latin1", "text/plain; charset=latin-1", lines)
    inst = await bridge.spawn(seq)
    with anyio.fail_after(30):
        items = [item async for item in inst.output_items()]
        assert await inst.wait() == 0
    assert items == lines
    assert inst.info.output_content_type == "text/plain; charset=latin-1"
    # The same output as bytes is latin-1 on the wire (one byte per character), not UTF-8.
    raw = await bridge.spawn(seq)
    with anyio.fail_after(30):
        assert await collect(raw.output()) == "".join(lines).encode("latin-1")
        assert await raw.wait() == 0


async def test_characters_split_across_chunks_are_decoded_whole(bridge: Bridge, tmp_path: Path) -> None:
    # A 3-byte window makes the runner send at most 3 bytes per frame, so two-byte Shift_JIS
    # characters arrive split across chunks.
    lines = ["日本語のテキスト\n", "二行目\n", "half-width ｶﾀｶﾅ are one byte each\n"]
    seq = write_sequence(tmp_path / "sjis", "text/plain; charset=shift_jis", lines)
    raw = await bridge.spawn(seq, window=3)
    with anyio.fail_after(30):
        chunks = [chunk async for chunk in raw.output()]
        assert await raw.wait() == 0
    assert b"".join(chunks) == "".join(lines).encode("shift_jis")
    assert any(_splits_a_character(chunk) for chunk in chunks[:-1])
    inst = await bridge.spawn(seq, window=3)
    with anyio.fail_after(30):
        items = [item async for item in inst.output_items()]
        assert await inst.wait() == 0
    assert items == lines


def _splits_a_character(chunk: bytes) -> bool:
    try:
        chunk.decode("shift_jis")
    except UnicodeDecodeError:
        return True
    return False


async def test_an_unknown_charset_is_a_clear_error(bridge: Bridge, tmp_path: Path) -> None:
    seq = write_sequence(tmp_path / "plain", "text/plain", ["x\n"])
    inst = await bridge.spawn(seq)
    with anyio.fail_after(30), pytest.raises(ValueError, match="unknown charset 'no-such-charset'"):
        _ = [item async for item in inst.output_items("text/plain; charset=no-such-charset")]
    # A Sequence announcing one fails in its runner (exit 23) with the charset named.
    bad = await bridge.spawn(write_sequence(tmp_path / "bad", "text/plain; charset=no-such-charset", ["x\n"]))
    with anyio.fail_after(30):
        assert [item async for item in bad.output_items()] == []
        assert await bad.wait() == 23
    assert bad.status is Status.ERRORED
    assert "unknown charset 'no-such-charset'" in (bad.info.error or "")
    with anyio.fail_after(30):
        assert await inst.wait() == 0


@pytest.mark.parametrize("as_items", [True, False], ids=["items", "str"])
async def test_latin1_input_is_encoded_as_latin1(bridge: Bridge, as_items: bool) -> None:
    inst = await bridge.spawn(SAMPLES / "hello")
    source = ["José\n", "Ÿves\n"] if as_items else "José\nŸves\n"
    with pytest.raises(ValueError, match="cannot encode 'Ÿ' in iso8859-1"):
        await inst.send_input(source, content_type="text/plain; charset=latin-1")
    inst2 = await bridge.spawn(SAMPLES / "hello")
    await inst2.send_input(["José\n", "Ünï\n"] if as_items else "José\nÜnï\n", content_type="text/plain; charset=latin-1")
    with anyio.fail_after(30):
        items = [item async for item in inst2.output_items()]
        assert await inst2.wait() == 0
    assert items == ["Hello José!\n", "Hello Ünï!\n"]
    await inst.kill()
