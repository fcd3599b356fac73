"""Plain records the hub keeps and the JSON shapes of the API that show them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_EVENT = re.compile(r"^[^\x00-\x1f/]{1,200}$")

#: States while an Instance runs (host_bridge's).
LIVE = ("initializing", "starting", "running", "stopping", "killing")
#: Ending states: STH's completed and errored, plus stopped and killed (what the hub asked for).
ENDED = ("completed", "errored", "stopped", "killed")
#: Every ``status`` the API shows (hub/instances.py hub_status; the OpenAPI enum).
STATUSES = (*LIVE, *ENDED)


def is_valid_id(value: str) -> bool:
    """Sequence and Instance ids are UUIDs (lower-case, as the hub makes them)."""
    return bool(_ID.match(value))


def is_valid_topic(name: str) -> bool:
    return bool(_TOPIC.match(name))


def is_valid_event_name(name: str) -> bool:
    return bool(_EVENT.match(name))


def iso(value: datetime | None) -> str | None:
    """UTC with milliseconds and a Z, as STH writes times."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class SequenceRecord:
    id: str
    name: str
    root: str  # where package.json is, relative to the Sequence's directory
    package: dict[str, Any]
    created: datetime
    size: int

    def config(self, directory: str) -> dict[str, Any]:
        """STH's Sequence ``config``: the package.json fields it shows plus where the package is."""
        pkg = self.package
        engines = pkg.get("engines") if isinstance(pkg.get("engines"), dict) else {}
        config = {
            "type": "process",
            "language": "py",
            "entrypointPath": pkg.get("main"),
            "version": pkg.get("version", ""),
            "name": self.name,
            "id": self.id,
            "sequenceDir": directory,
            "engines": engines,
            "args": pkg.get("args", []),
            "config": pkg.get("config", {}) if isinstance(pkg.get("config"), dict) else {},
            "created": iso(self.created),
            "size": self.size,
        }
        for key in ("description", "author", "keywords", "repository", "provides", "requires"):
            if key in pkg:
                config[key] = pkg[key]
        return config


@dataclass
class InstanceSummary:
    """What the hub keeps of an Instance, in memory and on disk (it outlives the process)."""

    id: str
    sequence: str
    sequence_name: str
    app_config: dict[str, Any]
    args: list[Any] | None
    created: datetime
    started: datetime | None = None
    ended: datetime | None = None
    status: str = "starting"
    exit_code: int | None = None
    reason: str | None = None
    provides: str | None = None
    requires: str | None = None
    pid: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # what the runtime adds (container, limits)
    extra: dict[str, Any] = field(default_factory=dict)

    def lose(self, reason: str) -> None:
        self.status = "errored"
        self.ended = datetime.now(timezone.utc)
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "sequence": self.sequence,
            "sequenceName": self.sequence_name,
            "appConfig": self.app_config,
            "sequenceArgs": self.args,
            "created": iso(self.created),
            "started": iso(self.started),
            "ended": iso(self.ended),
            "status": self.status,
            "provides": self.provides,
            "requires": self.requires,
            "pid": self.pid,
        }
        if self.ended is not None:
            body["exitCode"] = self.exit_code
            body["reason"] = self.reason
            body["terminated"] = {"exitcode": self.exit_code, "reason": self.reason}
        body.update(self.details)
        body.update(self.extra)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> InstanceSummary:
        known = {"id", "sequence", "sequenceName", "appConfig", "sequenceArgs", "created", "started", "ended",
                 "status", "provides", "requires", "pid", "exitCode", "reason", "terminated"}
        return cls(
            id=body["id"], sequence=body["sequence"], sequence_name=body.get("sequenceName", ""),
            app_config=body.get("appConfig") or {}, args=body.get("sequenceArgs"),
            created=parse_iso(body["created"]) or datetime.now(timezone.utc),
            started=parse_iso(body.get("started")), ended=parse_iso(body.get("ended")),
            status=body.get("status", "errored"), exit_code=body.get("exitCode"), reason=body.get("reason"),
            provides=body.get("provides"), requires=body.get("requires"), pid=body.get("pid"),
            extra={k: v for k, v in body.items() if k not in known},
        )
