"""What a runner has imported when it imports its Sequence (just before its first PANG): none of
what it only needs later, nor what it no longer uses before PANG (issue 13: cold spawn -> PANG)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from testhost import TestHost
from warm_popen import warm_enabled

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(60)

#: Not before the first PANG: each cost start-up time (docs/benchmarks.md, "Cold start").
NOT_BEFORE_PANG = (
    "dataclasses",  # the messages are read by schema.collect_fields (runner/protocol/events.py)
    "copy",  # dataclasses'
    "runner.output",  # made when run() has output (Runtime.output)
    "runner.bridge",
    "runner.sequence.inputs",  # Runtime.sequence_input
    "runner.sequence.compat",
    "runner.backend",  # Runtime.backend, for the AppContext
    "runner.sequence.archive",  # a package's unpacking (runner/sequence/paths.py has the checks)
)


def _built(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(warm_enabled(), reason="a warm fork has its template's modules (runner/warm.py PRELOAD), "
                    "loaded once and shared: this is about a cold start")
def test_what_a_runner_has_not_imported_when_it_imports_its_sequence(tmp_path: Path) -> None:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent("""
        import sys
        AT_IMPORT = sorted(sys.modules)

        async def run(context, input):
            import json
            yield json.dumps(AT_IMPORT) + "\\n"
    """))
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send_end(Channel.IN)
        code, err = host.finish()
        assert code == 0, (err, host.summary())
        at_import = set(json.loads(bytes(host.data[Channel.OUT])))
    assert "runner.runtime" in at_import  # the Sequence saw the runner's modules
    expected_absent = [*NOT_BEFORE_PANG,
                       *(["runner.protocol._framer_py"] if _built("runner.protocol._framer_c") else []),
                       *(["ctypes"] if _built("runner._reaper_c") else [])]
    assert [name for name in expected_absent if name in at_import] == []
