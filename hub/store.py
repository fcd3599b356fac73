"""The Sequence store: unpacked packages on disk plus an SQLite index.

Layout under the store directory::

    index.sqlite         sequences and the summaries of Instances
    sequences/<id>/      one unpacked package per Sequence (its package.json at ``root``)
    tmp/                 uploads in progress (wiped at start: an interrupted upload leaves nothing)

Every SQLite call and every file operation runs in one worker thread
(``anyio.to_thread`` with a limiter of 1), never on the event loop. The Sequence records are
also kept in memory (this process is the index's only writer), so looking one up, as every
start does, costs no thread hop. An upload is
streamed to ``tmp/``, unpacked and checked there by the runner's own package rules
(``runner.sequence.loader``), and only then renamed into ``sequences/`` and indexed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import anyio

from runner.sequence.loader import SequencePathError, check_package, extract_package, find_package_root

from .records import InstanceSummary, SequenceRecord, is_valid_id

T = TypeVar("T")
WRITE_BATCH = 1 << 20  # bytes of an upload gathered before one write in the worker thread

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sequences (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, root TEXT NOT NULL,
    package TEXT NOT NULL, created TEXT NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, sequence TEXT NOT NULL, summary TEXT NOT NULL, ended INTEGER NOT NULL);
"""


class PackageTooLarge(Exception):
    """The upload passed the size limit (413)."""


class InvalidPackage(Exception):
    """The upload is not a Sequence package the runner would load (422); the message says why."""


class NameTaken(Exception):
    """Another Sequence already has this name."""


class Store:
    """Packages and the index. Create with ``await Store.open(directory)``; ``close()`` at the end."""

    def __init__(self, directory: Path, db: sqlite3.Connection) -> None:
        self.directory = directory
        self._db = db
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        # Copy-on-write snapshot of the sequences table: the worker thread replaces it after each
        # change, the event loop reads whichever snapshot is current (never one being mutated).
        self._records: dict[str, SequenceRecord] = {}

    @classmethod
    async def open(cls, directory: Path) -> Store:
        def setup() -> Store:
            for sub in ("sequences", "tmp"):
                (directory / sub).mkdir(parents=True, exist_ok=True)
            shutil.rmtree(directory / "tmp", ignore_errors=True)
            (directory / "tmp").mkdir()
            db = sqlite3.connect(directory / "index.sqlite", check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit; a crash loses no more than the last ones
            db.executescript(_SCHEMA)
            store = cls(directory, db)
            store._drop_orphans()
            store._records = {r.id: r for r in store._select_sequences("SELECT * FROM sequences", ())}
            return store

        return await anyio.to_thread.run_sync(setup)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return func(*args)

        return await anyio.to_thread.run_sync(locked, limiter=self._limiter)

    async def close(self) -> None:
        await self._run(self._db.close)

    def _drop_orphans(self) -> None:
        """Directories without an index row (a crash between rename and insert) go; so do rows without one."""
        known = {row[0] for row in self._db.execute("SELECT id FROM sequences")}
        for entry in (self.directory / "sequences").iterdir():
            if entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)
        for seq_id in known:
            if not (self.directory / "sequences" / seq_id).is_dir():
                self._db.execute("DELETE FROM sequences WHERE id = ?", (seq_id,))

    # -- Sequences ---------------------------------------------------------------------
    async def receive_package(self, chunks: AsyncIterator[bytes], limit: int) -> Path:
        """Stream an upload into tmp/, unpack and check it; return the unpacked directory.

        PackageTooLarge past ``limit`` bytes, InvalidPackage when the runner would refuse it.
        The caller must ``commit_*`` or ``discard`` the directory (done for it on error)."""
        staging = self.directory / "tmp" / uuid.uuid4().hex
        archive = staging.with_suffix(".tar.gz")
        try:
            await self._write_upload(chunks, archive, limit)
            await self._run(self._unpack, archive, staging)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._run(_remove, staging)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._run(_remove, archive)
        return staging

    async def _write_upload(self, chunks: AsyncIterator[bytes], archive: Path, limit: int) -> None:
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        file = await self._run(open, archive, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PackageTooLarge(f"package larger than the upload limit of {limit} bytes")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH:
                    await self._run(file.writelines, pending)
                    pending, pending_size = [], 0
            await self._run(file.writelines, pending)
        finally:
            with anyio.CancelScope(shield=True):
                await self._run(file.close)
        if size == 0:
            raise InvalidPackage("empty request body: expected a .tar.gz Sequence package")

    @staticmethod
    def _unpack(archive: Path, staging: Path) -> None:
        try:
            extract_package(archive, staging)
            root = find_package_root(staging)
            if not (root / "package.json").is_file():
                raise InvalidPackage("no package.json in the package (at its root or in its single top directory)")
            check_package(root)
        except SequencePathError as exc:
            raise InvalidPackage(str(exc).replace(str(archive), "package").replace(str(staging), "package")) from None

    async def discard(self, staging: Path) -> None:
        await self._run(_remove, staging)

    async def commit_new(self, staging: Path, name: str | None) -> SequenceRecord:
        """Index an unpacked upload as a new Sequence (named ``name``, else its package.json name)."""
        return await self._run(self._commit, staging, None, name)

    async def commit_replace(self, staging: Path, record: SequenceRecord, name: str | None) -> SequenceRecord:
        """Replace the package of ``record`` with an unpacked upload (same id)."""
        return await self._run(self._commit, staging, record, name)

    def _commit(self, staging: Path, old: SequenceRecord | None, name: str | None) -> SequenceRecord:
        try:
            root = find_package_root(staging)
            package = json.loads((root / "package.json").read_text("utf-8"))
            seq_id = old.id if old else str(uuid.uuid4())
            # a replaced Sequence keeps its name unless the upload names it (x-name)
            name = name or (old.name if old else str(package.get("name") or "") or seq_id)
            clash = self._db.execute("SELECT id FROM sequences WHERE name = ?", (name,)).fetchone()
            if clash and clash[0] != seq_id:
                raise NameTaken(f"Sequence with name {name} already exists")
            size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
            record = SequenceRecord(
                id=seq_id, name=name, root=root.relative_to(staging).as_posix(), package=package,
                created=old.created if old else datetime.now(timezone.utc), size=size,
            )
            final = self.directory / "sequences" / seq_id
            retired = self.directory / "tmp" / f"retired-{uuid.uuid4().hex}"
            if old:
                final.rename(retired)
            staging.rename(final)
            self._db.execute(
                "INSERT OR REPLACE INTO sequences VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, record.name, record.root, json.dumps(package), record.created.isoformat(), size),
            )
            self._records = {**self._records, record.id: record}
            _remove(retired)
            return record
        finally:
            _remove(staging)

    async def sequences(self) -> list[SequenceRecord]:
        return sorted(self._records.values(), key=lambda r: r.created)

    async def find_sequence(self, id_or_name: str) -> SequenceRecord | None:
        """By id, else by name."""
        records = self._records
        found = records.get(id_or_name)
        return found or next((r for r in records.values() if r.name == id_or_name), None)

    def _select_sequences(self, sql: str, params: tuple[Any, ...]) -> list[SequenceRecord]:
        return [
            SequenceRecord(id=r[0], name=r[1], root=r[2], package=json.loads(r[3]),
                           created=datetime.fromisoformat(r[4]), size=r[5])
            for r in self._db.execute(sql, params)
        ]

    def package_dir(self, record: SequenceRecord) -> Path:
        if not is_valid_id(record.id):  # ids name directories: never let one leave the store
            raise ValueError(f"invalid Sequence id {record.id!r}")
        return self.directory / "sequences" / record.id / record.root

    async def delete_sequence(self, record: SequenceRecord) -> None:
        def delete() -> None:
            self._db.execute("DELETE FROM sequences WHERE id = ?", (record.id,))
            self._records = {k: v for k, v in self._records.items() if k != record.id}
            _remove(self.directory / "sequences" / record.id)

        await self._run(delete)

    # -- Instance summaries ----------------------------------------------------------
    async def save_instance(self, summary: InstanceSummary) -> None:
        await self._run(
            self._db.execute,
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?)",
            (summary.id, summary.sequence, json.dumps(summary.to_json()), int(summary.ended is not None)),
        )

    async def instances(self) -> list[InstanceSummary]:
        def select() -> list[InstanceSummary]:
            rows = self._db.execute("SELECT summary FROM instances ORDER BY rowid")
            return [InstanceSummary.from_json(json.loads(r[0])) for r in rows]

        return await self._run(select)

    async def mark_lost(self, reason: str, reasons: Mapping[str, str] | None = None) -> list[str]:
        """Instances recorded as running by a hub that died: errored, with ``reasons[id]``, else
        ``reasons[""]``, else ``reason``; their ids."""
        reasons = reasons or {}
        lost: list[str] = []
        for summary in await self.instances():
            if summary.ended is None:
                summary.lose(reasons.get(summary.id) or reasons.get("") or reason)
                await self.save_instance(summary)
                lost.append(summary.id)
        return lost


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
