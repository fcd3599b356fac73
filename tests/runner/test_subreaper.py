"""The runner is a child subreaper before its Sequence is imported, without ctypes when the
compiled helper (runner/_reaper_c.pyx) is built; ctypes remains the fallback.

Orphan adoption and the end of descendants themselves: tests/faults/test_runner_descendants.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from testhost import TestHost
from warm_popen import warm_enabled

from runner.protocol import Channel, Code

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

def _compiled() -> bool:
    try:
        from runner import _reaper_c  # noqa: F401
    except ImportError:
        return False
    return True


def _subreaper_flag_in_a_fresh_process(call: str) -> list[object]:
    """[ctypes imported before ``call``, what it returned, ctypes imported after it, PR_GET_CHILD_SUBREAPER]."""
    probe = textwrap.dedent(f"""
        import json, sys
        from runner import reaper
        imported_before = "ctypes" in sys.modules
        result = {call}
        imported_after = "ctypes" in sys.modules
        import ctypes
        flag = ctypes.c_int(-1)
        ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
        print(json.dumps([imported_before, result, imported_after, flag.value]))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_ctypes_fallback_makes_a_subreaper() -> None:
    assert _subreaper_flag_in_a_fresh_process("reaper.subreaper_by_ctypes()") == [False, True, True, 1]


@pytest.mark.skipif(not _compiled(), reason="runner._reaper_c is not built")
def test_the_compiled_helper_makes_a_subreaper_without_ctypes() -> None:
    assert _subreaper_flag_in_a_fresh_process("reaper.become_subreaper()") == [False, True, False, 1]


@pytest.mark.skipif(not _compiled(), reason="runner._reaper_c is not built")
def test_a_runner_is_a_subreaper_without_ctypes_when_its_sequence_is_imported(tmp_path: Path) -> None:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent("""
        import sys
        CTYPES_AT_IMPORT = "ctypes" in sys.modules
        import ctypes, json
        FLAG = ctypes.c_int(-1)
        ctypes.CDLL(None).prctl(37, ctypes.byref(FLAG), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER

        async def run(context, input):
            yield json.dumps({"ctypes at import": CTYPES_AT_IMPORT, "subreaper": FLAG.value}) + "\\n"
    """))
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send_end(Channel.IN)
        code, err = host.finish()
        assert code == 0, (err, host.summary())
        facts = [json.loads(line) for line in bytes(host.data[Channel.OUT]).splitlines()]
    # a warm fork has ctypes from its template (runner/warm_template.py's clone3 call), at no cost
    assert facts == [{"ctypes at import": warm_enabled(), "subreaper": 1}]
