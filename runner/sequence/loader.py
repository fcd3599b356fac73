"""Find, unpack and import a Sequence: a directory, a ``.tar.gz`` package or one ``.py`` file.

Errors are split the way STH's exit codes are:

* :class:`SequencePathError` (exit 21): the path does not name a usable Sequence
  (missing, no package.json, bad JSON, bad ``main``, unsafe or oversized archive).
* :class:`SequenceLoadError` (exit 22): the Sequence code could not be imported
  (syntax error, import error, exception at import time, no callable ``run``).
  ``.traceback_text`` holds the formatted traceback for stderr and the log.

Paths are strings (os.path) on the way to the import: pathlib (with urllib.parse, ipaddress,
ntpath and fnmatch, ~2 ms) is imported only for a package archive or when a caller reads
``LoadedSequence.root``/``main``/``extracted_to`` or calls ``check_package``/``find_package_root``,
none of which a runner does before its PANG.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from ..protocol.records import Record, checked_as
from .errors import SequenceLoadError, SequencePathError
from .paths import DEFAULT_MAX_ARCHIVE_BYTES, DEFAULT_MAX_ARCHIVE_MEMBERS, inside, is_archive

if TYPE_CHECKING:
    from pathlib import Path

    from .archive import extract_package

#: runner/cli/pack.py passes Paths to the package.json checks
StrPath: TypeAlias = "str | os.PathLike[str]"

__all__ = [
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "DEFAULT_MAX_ARCHIVE_MEMBERS",
    "LoadedSequence",
    "SequenceLoadError",
    "SequencePathError",
    "check_package",
    "extract_package",
    "find_package_root",
    "load_sequence",
]


def __getattr__(name: str) -> object:
    """``extract_package`` from runner/sequence/archive.py, imported when asked for (a package)."""
    if name == "extract_package":
        from .archive import extract_package

        return extract_package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@checked_as()
class LoadedSequence(Record):
    """A Sequence whose module has been imported and whose ``run`` was found. Written by hand, as
    the dataclass it was (runner/protocol/records.py): every runner makes it before its first PANG."""

    __match_args__ = ("root_dir", "main_file", "name", "version", "package", "module", "entry", "default_args",
                      "requires", "provides", "output_type", "extracted_dir")
    root_dir: str
    main_file: str
    name: str
    version: str
    package: dict[str, Any]
    module: ModuleType
    entry: Callable[..., Any] | list[Any]
    default_args: list[Any]
    requires: dict[str, Any] | None
    provides: dict[str, Any] | None
    #: legacy module attribute ``output_type`` (a content type hint for the output)
    output_type: str | None
    #: the directory a ``.tar.gz`` was extracted to (None for directories and files)
    extracted_dir: str | None

    def __init__(self, root_dir: str, main_file: str, name: str, version: str, package: dict[str, Any],
                 module: ModuleType, entry: Callable[..., Any] | list[Any], default_args: list[Any] | None = None,
                 requires: dict[str, Any] | None = None, provides: dict[str, Any] | None = None,
                 output_type: str | None = None, extracted_dir: str | None = None) -> None:
        self.root_dir = root_dir
        self.main_file = main_file
        self.name = name
        self.version = version
        self.package = package
        self.module = module
        self.entry = entry
        self.default_args = [] if default_args is None else default_args
        self.requires = requires
        self.provides = provides
        self.output_type = output_type
        self.extracted_dir = extracted_dir

    @property
    def root(self) -> Path:
        """The Sequence's directory (resolved)."""
        from pathlib import Path

        return Path(self.root_dir)

    @property
    def main(self) -> Path:
        """The entry ``.py`` file that was imported (resolved)."""
        from pathlib import Path

        return Path(self.main_file)

    @property
    def extracted_to(self) -> Path | None:
        """The directory a ``.tar.gz`` was extracted to (None for directories and files)."""
        from pathlib import Path

        return None if self.extracted_dir is None else Path(self.extracted_dir)

    @property
    def input_content_type(self) -> str | None:
        """``requires['contentType']`` when the module declares one."""
        ct = (self.requires or {}).get("contentType")
        return ct if isinstance(ct, str) and ct else None

    @property
    def output_content_type(self) -> str | None:
        """``provides['contentType']``, else the legacy ``output_type``, else None."""
        ct = (self.provides or {}).get("contentType")
        if isinstance(ct, str) and ct:
            return ct
        return self.output_type or None


# --------------------------------------------------------------------------- package.json


def _read_package_json(pj: StrPath) -> dict[str, Any]:
    try:
        with open(pj, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as e:
        raise SequencePathError(f"{os.path.dirname(pj)}: no package.json (expected {pj})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SequencePathError(f"{pj}: cannot read: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SequencePathError(
            f"{pj}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from e
    if not isinstance(data, dict):
        raise SequencePathError(f"{pj}: must hold a JSON object, not {type(data).__name__}")
    return data


def _find_package_root(extracted: Path) -> Path:
    """package.json at the archive root, or inside its single top-level directory."""
    if (extracted / "package.json").is_file():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "package.json").is_file():
        return entries[0]
    return extracted


def _resolve_main(root: StrPath, pj: StrPath, package: dict[str, Any]) -> str:
    if "main" not in package:
        raise SequencePathError(f"{pj}: field `main` is missing (it names the Sequence's entry .py file)")
    main = package["main"]
    if not isinstance(main, str) or not main.strip():
        raise SequencePathError(f"{pj}: field `main` must be a non-empty string, not {main!r}")
    main_path = os.path.realpath(os.path.join(root, main))
    if not inside(os.path.realpath(root), main_path):
        raise SequencePathError(f"{pj}: field `main` ({main!r}) points outside the package directory")
    if os.path.isdir(main_path) and os.path.isfile(os.path.join(main_path, "__init__.py")):
        main_path = os.path.join(main_path, "__init__.py")
    if not os.path.isfile(main_path):
        raise SequencePathError(
            f"Sequence entrypoint path {main} is invalid. Check `main` field in Sequence package.json"
            f" ({pj}: {main_path} does not exist)"
        )
    return main_path


def _check_fields(pj: StrPath, package: dict[str, Any], main_path: StrPath) -> None:
    for key in ("name", "version"):
        if key in package and not isinstance(package[key], str):
            raise SequencePathError(f"{pj}: field `{key}` must be a string, not {package[key]!r}")
    if "args" in package and not isinstance(package["args"], list):
        raise SequencePathError(f"{pj}: field `args` must be a JSON array, not {package['args']!r}")
    engines = package.get("engines")
    if engines is not None:
        if not isinstance(engines, dict):
            raise SequencePathError(f"{pj}: field `engines` must be an object, not {engines!r}")
        pythonish = any(str(k).lower().startswith("python") for k in engines)
        if engines and not pythonish and os.path.splitext(main_path)[1] != ".py":
            raise SequencePathError(
                f"{pj}: field `engines` ({', '.join(map(str, engines))}) names no python engine;"
                " this is not a Python Sequence"
            )


def find_package_root(extracted: str | os.PathLike[str]) -> Path:
    """Where an extracted package's package.json lives: the archive root or its single top-level dir."""
    from pathlib import Path

    return _find_package_root(Path(extracted))


def check_package(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The package.json of the Sequence directory ``root``, checked as the loader checks it
    (valid JSON object, ``main`` inside the package and present, field types, a Python engine),
    without importing any of its code. Raises SequencePathError naming what is wrong."""
    root_p = os.path.realpath(root)
    pj = os.path.join(root_p, "package.json")
    package = _read_package_json(pj)
    _check_fields(pj, package, _resolve_main(root_p, pj, package))
    return package


# --------------------------------------------------------------------------- import


#: What a module name keeps of a Sequence's name (anything else becomes "_"); no regex: compiling one
#: was ~0.1 ms of every runner's start to PANG.
_NAME_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


def _module_name(name: str) -> str:
    base = "sequence_" + ("".join(c if c in _NAME_CHARS else "_" for c in name) or "main")
    candidate = base
    n = 1
    while candidate in sys.modules:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def _prepend_paths(root: str, main_path: str) -> None:
    paths: list[str] = []
    pyp = os.path.join(root, "__pypackages__")
    if os.path.isdir(pyp):
        paths.append(pyp)
        # PEP 582 layout: __pypackages__/X.Y/lib
        pep582 = os.path.join(pyp, f"{sys.version_info[0]}.{sys.version_info[1]}", "lib")
        if os.path.isdir(pep582):
            paths.append(pep582)
    paths.append(root)
    if os.path.dirname(main_path) != root:
        paths.append(os.path.dirname(main_path))
    for p in paths:
        while p in sys.path:
            sys.path.remove(p)
    sys.path[0:0] = paths


def _import(main_path: str, mod_name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(mod_name, main_path)
    spec = importlib.util.spec_from_file_location(mod_name, main_path, loader=loader)
    if spec is None:  # pragma: no cover - SourceFileLoader always gives a spec
        raise SequenceLoadError(f"{main_path}: cannot create an import spec")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        loader.exec_module(module)
    except BaseException as e:  # sys.exit()/KeyboardInterrupt at import fail the start too (exit 22)
        sys.modules.pop(mod_name, None)
        from .failure import import_failure_message, user_traceback  # only for a failed import

        raise SequenceLoadError(import_failure_message(e, main_path), user_traceback(e)) from e
    return module


def _check_entry(module: ModuleType, main_path: str) -> Callable[..., Any] | list[Any]:
    if not hasattr(module, "run"):
        raise SequenceLoadError(f"{main_path}: defines no `run` (expected `def run(context, input, *args)`)")
    entry = module.run
    if isinstance(entry, (list, tuple)):
        funcs = list(entry)
        body = funcs[1:] if funcs and isinstance(funcs[0], dict) else funcs
        if not body:
            raise SequenceLoadError(f"{main_path}: `run` is an empty list of functions")
        for i, f in enumerate(body):
            if not callable(f):
                raise SequenceLoadError(
                    f"{main_path}: `run` list item {i} is not callable ({type(f).__name__})"
                )
        return funcs
    if not callable(entry):
        raise SequenceLoadError(f"{main_path}: `run` is not callable ({type(entry).__name__})")
    return entry  # type: ignore[no-any-return]


def _dict_attr(module: ModuleType, name: str, main_path: str) -> dict[str, Any] | None:
    v = getattr(module, name, None)
    if v is None:
        return None
    if isinstance(v, dict):
        return v
    if isinstance(v, str):  # a bare topic name
        return {name: v}
    raise SequenceLoadError(f"{main_path}: module-level `{name}` must be a dict, not {type(v).__name__}")


def load_sequence(
    path: str | os.PathLike[str],
    *,
    extract_dir: str | None = None,
    max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
    max_members: int = DEFAULT_MAX_ARCHIVE_MEMBERS,
    chdir: bool = True,
) -> LoadedSequence:
    """Load a Sequence from a directory, a ``.tar.gz`` package or a ``.py`` file.

    ``extract_dir``: where a package is unpacked (created if missing; default a
    fresh temporary directory, reported as ``LoadedSequence.extracted_to``).
    ``chdir=False`` skips ``os.chdir(root)`` (for tests and embedding).
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise SequencePathError(f"{p}: no such file or directory")
    extracted: str | None = None
    package: dict[str, Any]
    if os.path.isfile(p) and is_archive(p):
        import shutil
        import tempfile
        from pathlib import Path

        from .archive import extract_package

        target = Path(extract_dir) if extract_dir else Path(tempfile.mkdtemp(prefix="sequence-"))
        try:
            extract_package(p, target, max_bytes=max_bytes, max_members=max_members)
        except SequencePathError:
            if not extract_dir:
                shutil.rmtree(target, ignore_errors=True)
            raise
        extracted = str(target)
        p = str(_find_package_root(target))
    if os.path.isdir(p):
        root = os.path.realpath(p)
        pj = os.path.join(root, "package.json")
        if extracted is not None and not os.path.isfile(pj):
            raise SequencePathError(f"{path}: no package.json in the package archive")
        package = _read_package_json(pj)
        main_path = _resolve_main(root, pj, package)
        _check_fields(pj, package, main_path)
    elif os.path.isfile(p):
        main_path = os.path.realpath(p)
        if os.path.splitext(main_path)[1] != ".py":
            raise SequencePathError(f"{p}: not a Sequence (expected a directory, a .tar.gz package or a .py file)")
        root = os.path.dirname(main_path)
        package = {"main": os.path.basename(main_path), "name": _stem(main_path)}
    else:
        raise SequencePathError(f"{p}: not a regular file or directory")

    name = str(package.get("name") or _stem(main_path))
    version = str(package.get("version") or "0.0.0")
    default_args = list(package.get("args") or [])

    _prepend_paths(root, main_path)
    if chdir:
        try:
            os.chdir(root)
        except OSError as e:
            raise SequencePathError(f"{root}: cannot chdir into the package: {e}") from e
    module = _import(main_path, _module_name(name))
    entry = _check_entry(module, main_path)
    requires = _dict_attr(module, "requires", main_path)
    provides = _dict_attr(module, "provides", main_path)
    ot = getattr(module, "output_type", None)
    return LoadedSequence(
        root_dir=root,
        main_file=main_path,
        name=name,
        version=version,
        package=package,
        module=module,
        entry=entry,
        default_args=default_args,
        requires=requires,
        provides=provides,
        output_type=ot if isinstance(ot, str) and ot else None,
        extracted_dir=extracted,
    )


def _stem(path: str) -> str:
    """``Path(path).stem``."""
    return os.path.splitext(os.path.basename(path))[0]

