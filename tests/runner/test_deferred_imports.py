"""Standard modules imported during a runner's start-up run when first used (runner/deferred_imports.py).

The import machinery is checked in fresh interpreters (pytest has long imported inspect and the
rest); the runner's side with real runner processes (TestHost): the Sequence finds these modules
deferred, uses them as usual, and whoever imported one before holds the module that ran.
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from testhost import REPO, output_lines

from runner.deferred_imports import DEFERRED
from runner.sequence.awaitable import CO_ASYNC_CODE, CO_ITERABLE_COROUTINE, is_awaitable, is_coroutine

pytestmark = pytest.mark.timeout(60)

#: What asyncio, logging and traceback import at their top (and the runner defers) on this Python:
#: from 3.11 on also textwrap (traceback, for exception groups) and locale (subprocess); 3.10's
#: traceback and subprocess do not import them at all.
IMPORTED_AT_START = {"asyncio.sslproto", "inspect", "linecache"} | (
    {"locale", "textwrap"} if sys.version_info >= (3, 11) else set())


def _python(code: str, tmp_path: Path | None = None) -> str:
    env_path = f"{REPO}:{tmp_path}" if tmp_path is not None else str(REPO)
    # the code on stdin, not -c: from 3.13 on -c imports linecache to show its source in tracebacks
    done = subprocess.run([sys.executable, "-"], input=textwrap.dedent(code), capture_output=True, text=True,
                          timeout=30, cwd=REPO, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_asyncio_imported_under_the_finder_leaves_them_unrun_until_asked() -> None:
    out = _python("""
        import sys
        from runner import deferred_imports
        deferred_imports.install()
        import asyncio, asyncio.coroutines, logging
        deferred = sorted(n for n, m in sys.modules.items() if type(m) is deferred_imports.DeferredModule)
        inspect = sys.modules["inspect"]
        assert asyncio.coroutines.inspect is inspect
        assert inspect.__name__ == "inspect" and inspect.__file__.endswith("inspect.py")  # set, nothing ran
        assert type(inspect.__loader__).__name__ == "SourceFileLoader" and inspect.__spec__.loader is inspect.__loader__
        assert "_ClassFinder" not in vars(inspect)
        from inspect import signature  # the first question runs it, into the same object
        assert type(inspect) is type(sys) and str(signature(lambda a, *b: 0)) == "(a, *b)"
        assert sys.modules["inspect"] is inspect and asyncio.coroutines.inspect is inspect
        deferred_imports.remove()
        import json  # after remove(): as usual
        assert type(sys.modules["json"]) is type(sys)
        assert not any(type(f).__name__ == "DeferringFinder" for f in sys.meta_path)
        print(" ".join(deferred))
    """)
    assert set(out.split()) == IMPORTED_AT_START  # ast, dis, tokenize: theirs
    assert set(out.split()) <= DEFERRED


def test_a_deferred_module_answers_dir_star_imports_and_reload() -> None:
    _python("""
        import importlib, sys
        from runner import deferred_imports
        deferred_imports.install()
        import textwrap, tokenize
        assert type(textwrap) is deferred_imports.DeferredModule
        assert "dedent" in dir(textwrap) and type(textwrap) is type(sys)
        namespace = {}
        exec("from tokenize import *", namespace)
        assert "generate_tokens" in namespace and type(tokenize) is type(sys)
        assert importlib.reload(tokenize) is tokenize
        print("ok")
    """)


THREADED = """
    import sys, threading, time
    from runner import deferred_imports
    deferred_imports.DEFERRED = frozenset({"slowmod"})
    deferred_imports.install()
    import slowmod
    sys.runs = []
    results, start = [], threading.Barrier(4)

    def ask():
        start.wait()
        results.append(slowmod.VALUE)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(len(sys.runs), results)
"""


def test_threads_asking_at_once_run_the_module_once_and_all_get_it(tmp_path: Path) -> None:
    (tmp_path / "slowmod.py").write_text("import sys, time\nsys.runs.append(1)\ntime.sleep(0.2)\nVALUE = 42\n")
    assert _python(THREADED, tmp_path) == "1 [42, 42, 42, 42]\n"


def test_an_error_while_the_module_runs_surfaces_at_first_use_and_the_next_use_runs_it_again(tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text("import sys\nsys.tries = getattr(sys, 'tries', 0) + 1\n"
                                       "if sys.tries == 1:\n    raise RuntimeError('first run fails')\nVALUE = 7\n")
    out = _python("""
        import sys
        from runner import deferred_imports
        deferred_imports.DEFERRED = frozenset({"flaky"})
        deferred_imports.install()
        import flaky
        try:
            flaky.VALUE
        except RuntimeError as exc:
            print("raised:", exc)
        print(flaky.VALUE, sys.tries)
    """, tmp_path)
    assert out == "raised: first run fails\n7 2\n"


def test_modules_imported_before_install_or_not_deferred_are_untouched() -> None:
    _python("""
        import sys, textwrap
        from runner import deferred_imports
        deferred_imports.install()
        deferred_imports.install()  # once only
        assert sum(type(f).__name__ == "DeferringFinder" for f in sys.meta_path) == 1
        import json, inspect
        assert type(textwrap) is type(sys) and type(json) is type(sys)
        assert type(inspect) is deferred_imports.DeferredModule
        print("ok")
    """)


def test_the_awaitable_checks_answer_as_inspect_does() -> None:
    @types.coroutine
    def old_style():  # type: ignore[no-untyped-def]
        yield

    class Awaits:
        def __await__(self):  # type: ignore[no-untyped-def]
            yield

    async def coro() -> None:
        pass

    def gen():  # type: ignore[no-untyped-def]
        yield

    made = coro()
    try:
        for obj in (made, old_style(), gen(), Awaits(), None, 1, [], old_style):
            assert is_awaitable(obj) == inspect.isawaitable(obj), obj
            assert is_coroutine(obj) == inspect.iscoroutine(obj), obj
    finally:
        made.close()
    assert CO_ITERABLE_COROUTINE == inspect.CO_ITERABLE_COROUTINE
    assert CO_ASYNC_CODE == inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


USES_THEM = """
    import json, sys

    def _state():
        return {name: type(sys.modules[name]).__name__ for name in sorted(NAMES) if name in sys.modules}

    NAMES = ("inspect", "dis", "ast", "tokenize", "textwrap", "locale", "linecache")
    AT_IMPORT = _state()

    async def run(context, input):
        at_run = _state()
        import dis, inspect, linecache, locale, textwrap, traceback
        try:
            raise ValueError("shown with its source line")
        except ValueError:
            shown = traceback.format_exc()
        used = {
            "signature": str(inspect.signature(lambda a, b=1: None)),
            "dedent": textwrap.dedent("  x"),
            "line": linecache.getline(__file__, 2).strip(),
            "encoding": bool(locale.getpreferredencoding(False)),
            "dis": any(i.opname == "RETURN_VALUE" for i in dis.get_instructions(_state)),
            "source_shown": 'raise ValueError("shown with its source line")' in shown,
        }
        yield json.dumps({"at_import": AT_IMPORT, "at_run": at_run, "used": used, "after": _state()}) + "\\n"
"""


def test_a_sequence_uses_them_as_usual_and_the_runner_itself_did_not_run_them(tmp_path: Path) -> None:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent(USES_THEM))
    [facts] = output_lines(path)
    assert facts["used"] == {"signature": "(a, b=1)", "dedent": "x", "line": "import json, sys", "encoding": True,
                             "dis": True, "source_shown": True}
    assert set(facts["after"].values()) == {"module"}
    # cold or forked from a warm template (which defers them the same way, runner/warm_template.py)
    assert facts["at_import"] == facts["at_run"]
    assert set(facts["at_run"].values()) == {"DeferredModule"}
    assert {"dis", *IMPORTED_AT_START} - {"asyncio.sslproto"} <= set(facts["at_run"])


FORK_WHILE_RUNNING = """
    import os, signal, sys, threading, time
    from runner import deferred_imports
    deferred_imports.DEFERRED = frozenset({"slowmod", "othermod"})
    deferred_imports.install()
    import othermod, slowmod
    sys.runs = []
    othermod.VALUE  # a first run: from here on the fork hook is there
    runner = threading.Thread(target=lambda: slowmod.VALUE)
    runner.start()
    while not sys.runs.count("slowmod"):
        time.sleep(0.001)
    pid = os.fork()  # slowmod is running in the other thread, under the lock
    if pid == 0:
        signal.alarm(20)  # a child that deadlocked (the old lock still held) ends instead of staying behind
        os.write(1, f"child {slowmod.VALUE}\\n".encode())  # the thread is gone: runs it again here
        os._exit(0)
    os.waitpid(pid, 0)
    runner.join()
    print("parent", slowmod.VALUE)
"""


def test_a_fork_taken_while_a_module_runs_in_another_thread_runs_it_again_in_the_child(tmp_path: Path) -> None:
    (tmp_path / "slowmod.py").write_text("import sys, time\nsys.runs.append('slowmod')\ntime.sleep(0.3)\nVALUE = 42\n")
    (tmp_path / "othermod.py").write_text("import sys\nsys.runs.append('othermod')\nVALUE = 1\n")
    assert _python(FORK_WHILE_RUNNING, tmp_path) == "child 42\nparent 42\n"


def _other_pythons() -> list[str]:
    found = glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-9]*/bin/python3"))
    return sorted(path for path in found if os.path.realpath(path) != os.path.realpath(sys.executable))


ON_ANOTHER_PYTHON = """
    import sys
    from runner import deferred_imports
    deferred_imports.install()
    import asyncio, logging, traceback, subprocess, json
    ran = [n for n in sorted(deferred_imports.DEFERRED)
           if n in sys.modules and type(sys.modules[n]) is not deferred_imports.DeferredModule]
    import inspect, linecache
    try:
        raise ValueError("x")
    except ValueError:
        shown = traceback.format_exc()
    print(ran, type(inspect).__name__, str(inspect.signature(lambda a: 0)), "ValueError" in shown)
"""


@pytest.mark.parametrize("python", _other_pythons() or [pytest.param("", marks=pytest.mark.skip(
    reason="no other Python 3.10+ here (pyenv)"))])
def test_asyncio_logging_and_traceback_leave_them_unrun_on_other_pythons(python: str, tmp_path: Path) -> None:
    """The modules' own imports differ by version (3.10's asyncio does not import textwrap): whatever
    they import of DEFERRED stays unrun until used. The mechanism is the standard library's only."""
    script = tmp_path / "probe.py"  # a file: 3.13 gives a -c program's source to linecache at start
    script.write_text(textwrap.dedent(ON_ANOTHER_PYTHON))
    done = subprocess.run([python, str(script)], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[] DeferredModule (a) True\n"


DATETIME = """
    import json, re, sys
    made = []
    sys.addaudithook(lambda event, args: made.append(args[0].co_filename) if event == "exec" else None)
    if sys.argv[1] == "finder":
        from runner import deferred_imports
        deferred_imports.install()
    import datetime
    ran_its_file = any(name.endswith("datetime.py") for name in made)
    names = {name: re.sub(" at 0x[0-9a-f]+", "", repr(value)) for name, value in vars(datetime).items()
             if name not in ("__builtins__", "__loader__", "__spec__", "__cached__")}
    now = datetime.datetime(2026, 11, 30, 14, 0, tzinfo=datetime.timezone.utc)
    try:
        import msgpack  # what needs datetime in a runner (another Python here may not have it)
    except ImportError:
        round_trip = None
    else:
        round_trip = msgpack.unpackb(msgpack.packb(now, datetime=True), timestamp=3) == now
    print(json.dumps({"ran_its_file": ran_its_file, "names": names, "loader": type(datetime.__loader__).__name__,
                      "round_trip": round_trip, "version": sys.version_info[:2]}))
"""


@pytest.mark.parametrize("python", [sys.executable, *_other_pythons()])
def test_datetime_made_from_its_c_module_is_the_module_a_usual_import_gives(python: str, tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(DATETIME))
    usual, made = (json.loads(subprocess.run([python, str(script), how], capture_output=True, text=True,
                                             timeout=30, cwd=tmp_path, env={"PYTHONPATH": str(REPO)},
                                             check=True).stdout)
                   for how in ("usual", "finder"))
    assert made["names"] == usual["names"]  # every name, the same objects (C types repr alike), __doc__, __all__
    assert made["loader"] == usual["loader"] == "SourceFileLoader"
    assert made["round_trip"] == usual["round_trip"] and (python != sys.executable or made["round_trip"] is True)
    assert usual["ran_its_file"] is True
    assert made["ran_its_file"] is (tuple(made["version"]) >= (3, 12))  # 3.12 imports _datetime first itself
