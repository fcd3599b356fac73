"""Unpacking a ``.tar.gz`` Sequence package safely, and where the runner unpacks it.

The checks are our own and do not rely on tarfile's ``data`` filter (absent on
Python 3.10.0-3.10.11 and 3.11.0-3.11.3, which we support); the filter is applied
on top where the running Python has it (``TAR_FILTER``). The invariant: **every
path that is written is resolved, component by component and including its
last one, against the real extraction root right before it is written**, so a
link that only points outside after a later link lands cannot be written
through; and after the last member every symlink in the tree is resolved again
and must still land inside (a chain of links may change what an earlier one
means).

The runner process unpacks into ``extraction_dir()``: ``<root>/runner-<pid>``
where ``<root>`` is ``$SEQUENCE_RUNNER_EXTRACT_ROOT`` or
``<tempdir>/sequence-runner-<uid>`` (mode 0700). The runner removes it on every
exit; a hub that outlives a crashed runner removes ``runner-<pid>`` directories
of processes that no longer run (docs/runner.md "Packages").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import SequencePathError
from .paths import DEFAULT_MAX_ARCHIVE_BYTES, DEFAULT_MAX_ARCHIVE_MEMBERS, inside, is_archive

if TYPE_CHECKING:  # pathlib is imported where a package is unpacked: a runner checks is_archive only
    from pathlib import Path

__all__ = [
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "DEFAULT_MAX_ARCHIVE_MEMBERS",
    "EXTRACT_ROOT_ENV",
    "UnsafeArchive",
    "extract_package",
    "extraction_dir",
    "extraction_root",
    "inside",
    "is_archive",
    "prepare_extraction_dir",
    "remove_extraction",
]

#: Where the runner process unpacks packages (a directory per runner below it).
EXTRACT_ROOT_ENV = "SEQUENCE_RUNNER_EXTRACT_ROOT"


#: tarfile's extraction filter applied on top of our own checks: "auto" is its ``data`` filter
#: where the running Python has one; tests set "fully_trusted" or "" (none) to show that our
#: checks hold without it, as on Python 3.10.0-3.10.11 and 3.11.0-3.11.3.
TAR_FILTER = "auto"


class UnsafeArchive(SequencePathError):
    """The archive is not a usable package (exit 21); the message names the member and why."""


def _safe_member_name(archive: Path, name: str) -> str:
    """Normalise a member name, rejecting absolute paths and ``..`` components."""
    if "\x00" in name:
        raise UnsafeArchive(f"{archive}: member {name!r} has a NUL byte in its name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path")
    from pathlib import PurePosixPath

    parts = [p for p in PurePosixPath(posix).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: member {name!r} has a '..' component (path traversal)")
    return "/".join(parts)


def _check_type(archive: Path, member: Any) -> None:
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"{archive}: member {member.name!r} is a device or FIFO")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"{archive}: member {member.name!r} has an unsupported type")


def _check_destination(archive: Path, base: str, member: Any, name: str) -> None:
    """Where ``name`` lands with every component resolved as the tree is NOW (existing links
    followed, the last component too: tarfile opens a regular file through a link there)."""
    destination = os.path.realpath(os.path.join(base, name))
    parent = os.path.realpath(os.path.join(base, os.path.dirname(name)))
    if member.issym():
        destination = os.path.join(parent, os.path.basename(name))  # the link itself is replaced
    if not inside(base, parent) or not inside(base, destination):
        raise UnsafeArchive(f"{archive}: member {member.name!r} would be written outside the package dir")


def _check_link(archive: Path, base: str, member: Any, name: str) -> None:
    if member.issym():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            raise UnsafeArchive(f"{archive}: symlink {member.name!r} -> {member.linkname!r} is absolute")
        parent = os.path.realpath(os.path.join(base, os.path.dirname(name)))
        if not inside(base, os.path.realpath(os.path.join(parent, link))):
            raise UnsafeArchive(f"{archive}: symlink {member.name!r} -> {member.linkname!r} "
                                "points outside the package dir")
    elif member.islnk():
        link_name = _safe_member_name(archive, member.linkname)
        if not inside(base, os.path.realpath(os.path.join(base, link_name))):
            raise UnsafeArchive(f"{archive}: hardlink {member.name!r} -> {member.linkname!r} "
                                "points outside the package dir")
        member.linkname = link_name


def _sanitize(member: Any, name: str) -> None:
    member.name = name
    if member.isreg() or member.isdir():
        # never carry setuid/setgid/sticky or odd permissions over
        member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
    # never chown to the archive's owners (tarfile does when running as root)
    member.uid, member.gid = os.getuid(), os.getgid()
    member.uname = member.gname = ""


def _recheck_links(archive: Path, base: str, links: list[str]) -> None:
    """A later link can change what an earlier one means: every link must still land inside."""
    for name in links:
        path = os.path.join(base, name)
        if os.path.islink(path) and not inside(base, os.path.realpath(path)):
            raise UnsafeArchive(f"{archive}: symlink {name!r} -> {os.readlink(path)!r} points outside "
                                "the package dir once the archive's other links are in place")


def _filter_kwargs(tarfile: Any) -> dict[str, Any]:
    name = TAR_FILTER
    if name == "auto":
        name = "data" if hasattr(tarfile, "data_filter") else ""
    return {"filter": name} if name else {}


def extract_package(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
    max_members: int = DEFAULT_MAX_ARCHIVE_MEMBERS,
) -> Path:
    """Extract a (gzipped) tar package into ``dest`` safely and return ``dest``.

    Refuses (:class:`UnsafeArchive`): absolute names, ``..`` components, links whose
    target lands outside ``dest`` (absolute symlinks too), members that would be
    written outside through links already extracted, device files, FIFOs, more than
    ``max_members`` entries and more than ``max_bytes`` of file data. On error the
    partial extraction is left in ``dest`` for the caller to remove.
    """
    import tarfile  # here, not at the top: only packages need it (and it costs every runner memory)
    from pathlib import Path

    archive_p = Path(archive)
    dest_p = Path(dest)
    dest_p.mkdir(parents=True, exist_ok=True)
    base = os.path.realpath(dest_p)
    extra = _filter_kwargs(tarfile)
    try:
        tar = tarfile.open(archive_p, "r:*")  # noqa: SIM115 - closed by the `with tar` below
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UnsafeArchive(f"{archive_p}: not a valid .tar.gz package: {e}") from e
    total = 0
    links: list[str] = []
    with tar:
        try:
            for count, member in enumerate(tar, 1):
                if count > max_members:
                    raise UnsafeArchive(f"{archive_p}: package has more than {max_members} entries (limit)")
                name = _safe_member_name(archive_p, member.name)
                if not name:
                    continue  # the archive root itself ("./")
                _check_type(archive_p, member)
                _check_destination(archive_p, base, member, name)
                _check_link(archive_p, base, member, name)
                if member.isreg():
                    total += member.size
                    if total > max_bytes:
                        raise UnsafeArchive(f"{archive_p}: package unpacks to more than {max_bytes} bytes (limit)")
                elif member.issym():
                    links.append(name)
                _sanitize(member, name)
                tar.extract(member, base, set_attrs=member.isreg(), **extra)
            _recheck_links(archive_p, base, links)
        except UnsafeArchive:
            raise
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            raise UnsafeArchive(f"{archive_p}: cannot extract package: {e}") from e
    return dest_p


# --------------------------------------------------------------------------- where the runner unpacks


def extraction_root(env: Mapping[str, str] | None = None) -> Path:
    """``$SEQUENCE_RUNNER_EXTRACT_ROOT``, else ``<tempdir>/sequence-runner-<uid>``."""
    from pathlib import Path

    env = os.environ if env is None else env
    configured = env.get(EXTRACT_ROOT_ENV, "")
    if configured:
        return Path(configured)
    import tempfile  # here: every runner imports this module, only packages unpack (tempfile, shutil ~1 MiB)

    return Path(tempfile.gettempdir()) / f"sequence-runner-{os.getuid()}"


def extraction_dir(pid: int | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The directory this runner process unpacks its package into: ``<root>/runner-<pid>``."""
    return extraction_root(env) / f"runner-{os.getpid() if pid is None else pid}"


def prepare_extraction_dir(path: Path) -> Path:
    """Create the root (0700) and an empty ``path``; a stale one of a reused PID is removed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.path.lexists(path):
        remove_extraction(path)
    path.mkdir(mode=0o700)
    return path


def remover(path: Path) -> Callable[[], None]:
    """``remove_extraction(path)`` for the exit path, with shutil imported now: the exit path's
    clean-up has a time budget (runner/exiting.py) that an import on a loaded machine can use up,
    and only a runner that unpacked a package pays for shutil."""
    import shutil  # noqa: F401 - loaded here for remove_extraction

    return lambda: remove_extraction(path)


def remove_extraction(path: Path) -> None:
    """Remove an extraction tree (files made read-only inside it included)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return

    if not os.path.isdir(path):
        return
    import shutil

    try:
        shutil.rmtree(path)
    except OSError:  # the Sequence made a directory unwritable: give the owner its rights back
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)
