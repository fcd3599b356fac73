"""Drop-in for Scramjet Transform Hub's ``python-runner/runner.py`` (docs/sth-compat.md §6).

STH's process adapter starts a Python Sequence as
``/usr/bin/env python3 <python-runner dir>/runner.py ./python-runner-startup.log``
with STH's environment. Put this file there (in place of STH's runner.py) and
the hub runs sequence-runner instead, unchanged otherwise.

It runs ``runner.__main__`` in this process (the PID the hub spawned is the
PID in PING and in /tmp/runner-<pid>), with the startup-log argument and the
environment as given. sequence-runner is found, in this order, wherever
``python3`` already imports it from (it is not on a package index: install it
from a checkout with that python3, ``python3 -m pip install /path/to/sequence-runner``,
or ``... --target <python-runner dir>/__pypackages__ /path/to/sequence-runner``:
STH puts that directory on PYTHONPATH), then in ``$SEQUENCE_RUNNER_HOME`` (a
source checkout or an install target; set it through STH's ``runnerEnvs``),
then in ``RUNNER_HOME`` below. Found nowhere: the reason and those commands on
stderr (STH's crash log), exit code 20 (also in ``/tmp/runner-<pid>``).
"""

import os
import sys

#: Fallback location of the directory holding the ``runner`` package (edit when installing).
RUNNER_HOME = ""


def _locate() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # This file is itself named runner.py: its directory must not shadow the package, nor (like
    # STH's own runner modules there) the Sequence's modules.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    import importlib.util

    if importlib.util.find_spec("runner") is not None:
        return
    tried = []
    for name, home in (("SEQUENCE_RUNNER_HOME", os.environ.get("SEQUENCE_RUNNER_HOME", "")),
                       ("RUNNER_HOME in " + os.path.abspath(__file__), RUNNER_HOME)):
        if not home:
            continue
        if os.path.isfile(os.path.join(home, "runner", "__main__.py")):
            sys.path.insert(0, home)
            # the runner's own child processes (none today) and `python -m runner` find it too
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (home, os.environ.get("PYTHONPATH", "")) if p
            )
            return
        tried.append(f"{name}={home} holds no runner/__main__.py; ")
    sys.stderr.write(
        f"runner.py: sequence-runner cannot be imported by {sys.executable}; {''.join(tried)}"
        "it is not on a package index: install it from a checkout with this interpreter, "
        f"'{sys.executable} -m pip install /path/to/sequence-runner' (or add "
        f"'--target {os.path.join(here, '__pypackages__')}'), or set SEQUENCE_RUNNER_HOME "
        "to a checkout through STH's runnerEnvs (docs/sth-compat.md section 6)\n"
    )
    try:
        with open(f"/tmp/runner-{os.getpid()}", "w") as f:
            f.write("20")
    except OSError:
        pass
    sys.exit(20)


if __name__ == "__main__":
    _locate()
    import runpy

    runpy.run_module("runner", run_name="__main__", alter_sys=True)
