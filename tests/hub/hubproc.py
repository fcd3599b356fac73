"""A real hub for tests: ``python -m hub`` on an ephemeral loopback port, always stopped."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
from docker_engine import IMAGE

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_sequences"


class HubProcess:
    def __init__(self, store: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.lines: list[str] = []

    def start(self, timeout: float = 20.0) -> HubProcess:
        env = dict(os.environ, **self.env)
        cmd = [sys.executable, "-m", "hub", "--port", "0", "--store", str(self.store), *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("hub listening on "):
                self.url = line.split()[-1]
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("the hub did not start:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the hub and wait for it (SIGKILL if it does not exit in time); its exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        return "".join(self.lines)


def runtime_args(runtime: str) -> tuple[str, ...]:
    """The hub's flags for a runtime: "process" (the default) or "docker" (the test image)."""
    return ("--runtime", "docker", "--runner-image", IMAGE) if runtime == "docker" else ()


def package(sample: str | Path, name: str | None = None) -> bytes:
    """A sample Sequence directory as .tar.gz bytes (package.json at the root)."""
    root = Path(sample) if Path(sample).is_absolute() else SAMPLES / sample
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            tar.add(path, arcname=path.relative_to(root).as_posix())
    return data.getvalue()
