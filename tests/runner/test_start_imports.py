"""What a runner has imported when it imports its Sequence (just before its first PANG): none of
what it only needs later, nor what it no longer uses before PANG (issue 13: cold spawn -> PANG)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from testhost import TestHost
from warm_popen import warm_enabled

from runner.protocol import Channel, Code, framer

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
    "numbers",  # looked up, not imported, for the numbers a Sequence returns (runner/sequence/topics.py)
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
                       *(["runner.protocol._framer_py"] if framer.IMPLEMENTATION == "cython" else []),
                       *(["ctypes"] if _built("runner._reaper_c") else [])]
    assert [name for name in expected_absent if name in at_import] == []


#: Standard modules a runner imports, or used to import, before its first PANG; a Sequence's own
#: file of that name must not be what the runner imports after loading it (its directory then
#: leads sys.path), so the runner imports none of them for the first time after the load.
SHADOWED = ("dataclasses", "copy", "ctypes", "numbers", "json", "inspect", "typing", "enum")


@pytest.mark.parametrize("ending", ["completes", "fails"])
def test_a_sequence_with_files_named_like_standard_modules(tmp_path: Path, ending: str) -> None:
    for name in SHADOWED:
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('the runner imported the Sequence\\'s {name}.py')\n")
    (tmp_path / "package.json").write_text('{"name": "shadows", "version": "1.0.0", "main": "main.py"}')
    body = "    yield 'ok\\n'\n" if ending == "completes" else "    raise ValueError('boom')\n    yield 'never'\n"
    (tmp_path / "main.py").write_text("async def run(context, input):\n" + body)
    with TestHost(tmp_path) as host:
        host.wait_message(Code.PANG)
        host.send_end(Channel.IN)
        code, err = host.finish()
        out, stderr = bytes(host.data[Channel.OUT]), host.text(Channel.STDERR)
    assert "the runner imported" not in stderr + err
    if ending == "completes":
        assert (code, out) == (0, b"ok\n"), (err, stderr)
    else:
        assert code == 23 and "ValueError: boom" in stderr, (err, stderr)
