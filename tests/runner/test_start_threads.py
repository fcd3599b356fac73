"""Which of its own threads a runner has started when it imports its Sequence (just before its first
PANG): not the transport's writer, which starts when something first has to wait for it (issue 13:
cold spawn -> PANG); and output that does have to wait for it, before and after PANG, all arrives.
The reader, the heartbeat and the fd pump are started by a helper thread (runner/thread_start.py)
while the Sequence loads; the runner waits for them after its PANG, so run() finds them running."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from testhost import TestHost

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(60)

#: Larger than the direct write the transport makes from the writing thread (DIRECT_DATA_MAX,
#: runner/transport/native.py) and than the host's socket buffer: this output needs the writer thread.
BIG = 3 * 1024 * 1024


def _run(tmp_path: Path, code: str) -> tuple[list[Any], bytes, bytes]:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent(code))
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send_end(Channel.IN)
        code_, err = host.finish()
        assert code_ == 0, (err, host.summary())
        out, stdout = bytes(host.data[Channel.OUT]), bytes(host.data[Channel.STDOUT])
    names, _, rest = out.partition(b"\n")
    return json.loads(names), rest, stdout


def test_the_writer_thread_is_not_started_before_a_quick_sequence_is_loaded(tmp_path: Path) -> None:
    names, rest, _ = _run(tmp_path, """
        import json, threading
        AT_IMPORT = sorted(t.name for t in threading.enumerate())

        async def run(context, input):
            yield json.dumps([AT_IMPORT, sorted(t.name for t in threading.enumerate())]) + "\\n"
            yield "x" * BIG
    """.replace("BIG", str(BIG)))
    at_import, at_run = names
    assert "runner-writer" not in at_import, at_import
    assert {"runner-reader", "runner-heartbeat", "runner-fd-pump"} <= set(at_run), at_run  # before run()
    assert rest == b"x" * BIG  # output after PANG that needs the writer: it started then


def test_output_that_needs_the_writer_while_the_sequence_imports_all_arrives(tmp_path: Path) -> None:
    names, rest, stdout = _run(tmp_path, """
        import json, sys, threading
        sys.stdout.write("y" * BIG)
        sys.stdout.flush()
        AT_IMPORT = sorted(t.name for t in threading.enumerate())

        async def run(context, input):
            yield json.dumps(AT_IMPORT) + "\\n"
    """.replace("BIG", str(BIG)))
    assert "runner-writer" in names, names  # started when the import's output first had to wait
    assert (rest, stdout) == (b"", b"y" * BIG)
