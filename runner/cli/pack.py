"""``python -m runner pack DIR -o FILE.tar.gz``: a Sequence package a hub accepts.

package.json at the archive root; members sorted, owners 0/0 without names,
modes 0644/0755, mtimes fixed (SOURCE_DATE_EPOCH, else 0) and a gzip header
without a timestamp, so the same directory always gives the same bytes.
Leaves out version-control, virtualenv and cache directories and bytecode.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..protocol import ExitCode

EXCLUDED_DIRS = frozenset({
    "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".hypothesis", ".idea", ".vscode", "node_modules",
})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
EXCLUDED_NAMES = frozenset({".DS_Store"})
PYPACKAGES = "__pypackages__"


class PackError(Exception):
    """Packing failed; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _mtime() -> int:
    try:
        return max(0, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    except ValueError:
        return 0


def validate(directory: Path) -> dict[str, object]:
    """package.json of ``directory`` checked as the runner checks it; PackError (21) names the problem."""
    from ..sequence.loader import SequencePathError, _check_fields, _read_package_json, _resolve_main

    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise PackError(f"{directory}: {what}", int(ExitCode.INVALID_SEQUENCE_PATH))
    pj = directory / "package.json"
    try:
        package = _read_package_json(pj)
        main = _resolve_main(directory, pj, package)
        _check_fields(pj, package, main)
    except SequencePathError as exc:
        raise PackError(str(exc), int(ExitCode.INVALID_SEQUENCE_PATH)) from None
    return package


def _files(root: Path, skip: set[Path], skip_pypackages: bool) -> list[tuple[str, Path]]:
    """(archive name, path) of every file to pack, sorted by name."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in dirnames:
            if d in EXCLUDED_DIRS or (skip_pypackages and here == root and d == PYPACKAGES):
                continue
            if (here / d).is_symlink():
                raise PackError(f"{here / d}: symbolic links to directories are not packed; copy it in")
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            path = here / name
            if name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES) or path.resolve() in skip:
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_file():
                    raise PackError(f"{path}: a symbolic link to something that is not a file")
            elif not path.is_file():
                continue  # sockets, FIFOs
            found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return found


def _add(tar: tarfile.TarFile, name: str, path: Path, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    st = path.stat()
    info.size = st.st_size
    info.mtime = mtime
    info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with path.open("rb") as f:
        tar.addfile(info, f)


def install_deps(requirements: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
           "-t", str(target), "-r", str(requirements)]
    sys.stderr.write(f"pack: {' '.join(cmd)}\n")
    sys.stderr.flush()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        details = (proc.stderr or proc.stdout).strip()
        raise PackError(f"pip could not install {requirements} (exit {proc.returncode}):\n{details}")


def pack(directory: str | os.PathLike[str], output: str | os.PathLike[str], *, with_deps: bool = False) -> list[str]:
    """Write the package of ``directory`` to ``output``; return the member names."""
    root = Path(directory).resolve()
    validate(root)
    out = Path(output).resolve()
    mtime = _mtime()
    with tempfile.TemporaryDirectory(prefix="runner-pack-") as tmp:
        deps: list[tuple[str, Path]] = []
        if with_deps:
            requirements = root / "requirements.txt"
            if not requirements.is_file():
                raise PackError(f"--install-deps: {requirements} does not exist", int(ExitCode.INVALID_SEQUENCE_PATH))
            target = Path(tmp) / PYPACKAGES
            install_deps(requirements, target)
            deps = [(f"{PYPACKAGES}/{name}", path) for name, path in _files(target, set(), False)]
        members = _files(root, {out}, skip_pypackages=with_deps) + deps
        members.sort(key=lambda m: (m[0] != "package.json", m[0]))  # package.json first for streaming readers
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, path in members:
                _add(tar, name, path, mtime)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(out.name + ".partial")
            partial.write_bytes(buffer.getvalue())
            partial.replace(out)
        except OSError as exc:
            raise PackError(f"cannot write {out}: {exc.strerror or exc}") from None
    return [name for name, _ in members]


def pack_main(directory: str, output: str | None, *, install_deps: bool = False) -> int:
    if output is None:
        output = f"{Path(directory).resolve().name}.tar.gz"
    try:
        members = pack(directory, output, with_deps=install_deps)
    except PackError as exc:
        sys.stderr.write(f"pack: {exc}\n")
        return exc.code
    size = os.path.getsize(output)
    sys.stderr.write(f"pack: wrote {output} ({len(members)} files, {size} bytes)\n")
    return 0
