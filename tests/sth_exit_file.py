"""Running an STH-mode runner from a test without leaving ``/tmp/runner-<pid>`` behind.

In STH mode the runner writes its exit code to ``/tmp/runner-<pid>`` on every exit path, for STH
1.0's process adapter, which reads it there. A test that starts such a runner itself, with no
adapter (or test host) to read the file, removes it: otherwise each run of the suite leaves one
per such test in /tmp.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from sth_host.exits import remove_stale_exit_file


def run_sth_runner(args: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None = None,
                   timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)``, then
    the runner's exit-code file removed."""
    with subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            remove_stale_exit_file(proc.pid)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
