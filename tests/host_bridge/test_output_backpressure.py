"""A Sequence that yields large items faster than the host reads is held back by OUT's window
after a few of them: the runner does not collect a whole batch of them first (ABATCH_MAX_ITEMS /
BATCH_MAX_ITEMS items, 64 MiB of 64 KiB ones), and nothing is lost once the host reads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

from host_bridge import Bridge
from runner.sequence.shapes import BATCH_MAX_BYTES

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

ITEM = 65536
#: What may be made while nobody reads: the host's window (1 MiB), the runner's pending limit
#: (1 MiB) and one batch (BATCH_MAX_BYTES) with the items counted after it, in 64 KiB items.
BOUND = (2 * (1 << 20) + BATCH_MAX_BYTES) // ITEM + 16

SEQUENCES = {
    "async generator": """
        async def run(context, input):
            n = 0
            while True:
                n += 1
                made(n)
                yield bytes([n % 256]) * ITEM  # a new object each time
    """,
    "sync generator": """
        def run(context, input):
            n = 0
            while True:
                n += 1
                made(n)
                yield bytes([n % 256]) * ITEM
    """,
}


@pytest.mark.parametrize("shape", sorted(SEQUENCES))
async def test_large_items_stop_at_the_window_while_nobody_reads(bridge: Bridge, tmp_path: Path,
                                                                  shape: str) -> None:
    count = tmp_path / "made"
    seq = tmp_path / "seq.py"
    seq.write_text(textwrap.dedent(f"""
        import os
        ITEM = {ITEM}
        COUNT = os.open({str(count)!r}, os.O_WRONLY | os.O_CREAT)
        def made(n):
            os.pwrite(COUNT, b"%12d" % n, 0)  # cheap: the Sequence makes items as fast as it can
    """) + textwrap.dedent(SEQUENCES[shape]))
    inst = await bridge.spawn(seq)
    assert await inst.wait_started()
    with anyio.fail_after(30):
        while not count.exists() or int(count.read_text() or "0") < 8:
            await anyio.sleep(0.05)
    await anyio.sleep(1.0)  # nobody reads OUT: the Sequence must be held back by now
    made_while_unread = int(count.read_text())
    assert made_while_unread <= BOUND, made_while_unread
    out = inst.output().__aiter__()
    got = bytearray()
    with anyio.fail_after(30):
        while len(got) < (made_while_unread + 8) * ITEM:  # then it goes on, every byte in order
            got += await out.__anext__()
    expected = b"".join(bytes([n % 256]) * ITEM for n in range(1, len(got) // ITEM + 1))
    assert bytes(got[: len(expected)]) == expected
    await inst.kill()
    with anyio.fail_after(30):
        await inst.wait()
