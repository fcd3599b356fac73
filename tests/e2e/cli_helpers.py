"""Helpers for end-to-end tests of ``python -m runner run|pack`` as a user runs it.

Every command runs in a subprocess with no stdin (DEVNULL) unless a test pipes
input, as on CI. Time bounds are generous and only guard against hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_sequences"
RUN_TIMEOUT = 60.0


def sample(name: str) -> str:
    return str(SAMPLES / name)


#: What a host or STH sets; a person's shell has none of these.
HOST_ENVIRONMENT = ("SEQUENCE_RUNNER_FD", "SEQUENCE_RUNNER_CONNECT", "SEQUENCE_RUNNER_INSTANCE_ID",
                    "SEQUENCE_RUNNER_SEQUENCE", "INSTANCES_SERVER_PORT", "INSTANCE_ID")


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HOST_ENVIRONMENT}
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) if not old else f"{REPO}{os.pathsep}{old}"
    env.pop("NO_COLOR", None)
    env.pop("PYTHONBREAKPOINT", None)
    env.update(extra or {})
    return env


def run_cli(*args: str, input: bytes | None = None, cwd: Path | str = REPO,
            timeout: float = RUN_TIMEOUT, env: dict[str, str] | None = None,
            command: Sequence[str] = (sys.executable, "-m", "runner")) -> subprocess.CompletedProcess[bytes]:
    """``python -m runner <args>`` (or ``command``) to completion; stdin is /dev/null unless ``input``
    is given; ``env`` adds to the environment."""
    return subprocess.run(
        [*command, *args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        cwd=cwd,
        env=cli_env(env),
        timeout=timeout,
        check=False,
        start_new_session=True,  # no controlling terminal: /dev/tty is unavailable, as on CI
    )


class Running:
    """A ``python -m runner run`` in the background, its stderr collected line by line."""

    def __init__(self, args: Sequence[str], cwd: Path | str = REPO) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=cli_env(),
            start_new_session=True,
        )
        self.stderr_lines: list[str] = []
        self.stdout = b""
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.stderr_lines.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self.stderr_lines)

    def wait_for(self, predicate: Callable[[str], bool] | str, timeout: float = 30.0) -> None:
        """Until a stderr line satisfies ``predicate`` (or contains the string)."""
        test = (lambda line: predicate in line) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(test(line) for line in self.stderr_lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise AssertionError(f"no stderr line matching {predicate!r}; stderr so far:\n"
                                         + "".join(self.stderr_lines))
                self._cond.wait(min(left, 0.1))

    def signal(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the command did not end; stderr:\n" + self.stderr) from None
        for t in self._threads:
            t.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
