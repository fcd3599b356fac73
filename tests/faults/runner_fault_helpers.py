"""Helpers shared by tests/faults/test_runner_*.py: the runner test host and small builders."""

from __future__ import annotations

import io
import sys
import tarfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sth"))

from testhost import REPO, SAMPLES, TestHost, runner_cmd, runner_env

__all__ = ["REPO", "SAMPLES", "TestHost", "make_tgz", "package_dir", "runner_cmd", "runner_env", "sequence_file"]


def sequence_file(tmp_path: Path, code: str, name: str = "seq.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def package_dir(tmp_path: Path, code: str, name: str = "pkg") -> Path:
    """A Sequence directory: package.json (main.py, a python3 engine) and main.py with ``code``."""
    import json

    root = tmp_path / name
    root.mkdir()
    (root / "package.json").write_text(json.dumps({"name": name, "main": "main.py",
                                                   "engines": {"python3": "3"}}))
    (root / "main.py").write_text(textwrap.dedent(code))
    return root


def make_tgz(path: Path, members: list[tuple[str, bytes, dict[str, object]]]) -> Path:
    """A .tar.gz with exactly these members, in this order (name, data, TarInfo attributes)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, attrs in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path
