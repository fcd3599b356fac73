"""Is the editable install in this venv current? (scripts/install asks before it runs pip.)

    python scripts/install_check.py            exit 0: current; 1: not (the reason on stderr)
    python scripts/install_check.py --record   after a successful install: remember its inputs

Current means all of:
- the build inputs (pyproject.toml, setup.py, every .pyx/.pxd) and the Python version are
  the ones recorded after the last install (a changed dependency list, entry point or
  Cython source needs pip again);
- sequence-runner is installed editable from this checkout;
- every requirement of sequence-runner[dev] (recursively, extras included) is installed
  at a version its specifier allows;
- with SEQUENCE_RUNNER_REQUIRE_EXTENSION set, the compiled framer is there.

Standard library only (plus pip's vendored ``packaging`` when ``packaging`` itself is absent),
run by the venv's own python so it sees what that venv has.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import site
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

DIST = "sequence-runner"
EXTRAS = ("dev",)
BUILD_INPUTS = ("pyproject.toml", "setup.py")
CYTHON_SUFFIXES = (".pyx", ".pxd")
SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules", "__pycache__"}
EXTENSION = "runner.protocol._framer_c"


def default_stamp() -> Path:
    return Path(sys.prefix) / "sequence-runner-install.json"


def _cython_sources(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            if name.endswith(CYTHON_SUFFIXES):
                yield Path(dirpath, name)


def fingerprint(root: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    paths = [root / name for name in BUILD_INPUTS if (root / name).exists()] + list(_cython_sources(root))
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _requirement_class() -> Any:
    try:
        from packaging import requirements
    except ImportError:  # pip vendors it; every venv scripts/install makes has pip
        from pip._vendor.packaging import requirements  # type: ignore[no-redef]
    return requirements.Requirement


def unmet_requirements(dist: str = DIST, extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """What of ``dist[extras]``'s requirement tree is missing or at a version its specifier refuses."""
    requirement = _requirement_class()
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str], Any]] = [(dist, frozenset(extras), None)]
    while todo:
        name, wanted_extras, spec = todo.pop()
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        if spec is not None and not spec.contains(version, prereleases=True):
            problems.append(f"{name} {version} does not satisfy {spec}")
        key = (name.lower().replace("_", "-"), wanted_extras)
        if key in seen:
            continue
        seen.add(key)
        for raw in metadata.requires(name) or []:
            req = requirement(raw)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e})
                                                  for e in (wanted_extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras), req.specifier))
    return problems


def installed_from(root: Path) -> str | None:
    """Why the installed sequence-runner is not an editable install of ``root`` (None: it is)."""
    # Look in the venv only: a build's sequence_runner.egg-info in the checkout is no install.
    installed = next(iter(metadata.distributions(name=DIST, path=site.getsitepackages())), None)
    if installed is None:
        return f"{DIST} is not installed in {sys.prefix}"
    info = json.loads(installed.read_text("direct_url.json") or "{}")
    url = str(info.get("url", ""))
    if not info.get("dir_info", {}).get("editable"):
        return f"{DIST} is not an editable install"
    if url.removeprefix("file://") != str(root.resolve()):
        return f"{DIST} is installed from {url}, not from {root.resolve()}"
    return None


def extension_required() -> bool:
    value = os.environ.get("SEQUENCE_RUNNER_REQUIRE_EXTENSION", "").strip().lower()
    return value not in ("", "0", "false", "no")


def why_not_current(root: Path, stamp: Path) -> str | None:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return "no record of a previous install"
    if recorded.get("fingerprint") != fingerprint(root):
        return "pyproject.toml, setup.py, a Cython source or the Python version changed since the last install"
    reason = installed_from(root)
    if reason:
        return reason
    unmet = unmet_requirements()
    if unmet:
        return "; ".join(unmet)
    if extension_required() and importlib.util.find_spec(EXTENSION) is None:
        return f"the compiled framer {EXTENSION} is missing and SEQUENCE_RUNNER_REQUIRE_EXTENSION is set"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--record", action="store_true", help="remember the current build inputs")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--stamp", type=Path, default=None, help="default: <venv>/sequence-runner-install.json")
    ns = parser.parse_args(argv)
    stamp = ns.stamp or default_stamp()
    if ns.record:
        stamp.write_text(json.dumps({"fingerprint": fingerprint(ns.root)}) + "\n")
        return 0
    reason = why_not_current(ns.root, stamp)
    if reason:
        sys.stderr.write(f"install needed: {reason}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
