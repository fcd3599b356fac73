"""Hub settings: command-line flags, each also an environment variable (flag wins)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.protocol.stop import DEFAULT_STOP_TIMEOUT_MS

ENV_PREFIX = "SEQUENCE_HUB_"
MiB = 1 << 20

EXAMPLES = """\
examples:
  python -m hub                                  # http://127.0.0.1:8000/api/v1, store in the user data dir
  python -m hub --port 9000 --store ./hub-data   # another port and store
  SEQUENCE_HUB_TOKEN=s3cret python -m hub        # every request needs 'Authorization: Bearer s3cret'
  python -m hub --host 0.0.0.0 --token s3cret --max-instances 20
  python -m hub --runtime docker --memory-limit 256 --cpu-limit 0.5   # each Instance in a container
  curl -s http://127.0.0.1:8000/api/v1/version

Each flag is also an environment variable: --max-instances is SEQUENCE_HUB_MAX_INSTANCES.
The hub needs its extra (Starlette, uvicorn): pip install -e '.[hub]'.
"""


RUNTIMES = ("process", "docker")


def default_docker_host() -> str:
    """$DOCKER_HOST when it names a unix socket, else the engine's usual socket."""
    host = os.environ.get("DOCKER_HOST", "")
    return host if host.startswith("unix://") else "unix:///var/run/docker.sock"


def default_store() -> Path:
    """The per-user data directory: $XDG_DATA_HOME/sequence-hub (~/.local/share/sequence-hub)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "sequence-hub"


@dataclass(frozen=True)
class InstanceRequirements:
    """Free resources a start needs (STH's instanceRequirements); else 507. 0 disables a check."""

    free_mem_mib: float = 256.0
    cpu_load_percent: float = 0.0  # refuse when CPU load (%) is above this; off by default (noisy)
    free_space_mib: float = 128.0


@dataclass(frozen=True)
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_base: str = "/api/v1"
    store: Path = field(default_factory=default_store)
    token: str | None = None
    max_instances: int = 100
    max_upload_bytes: int = 512 * MiB
    max_body_bytes: int = 1 * MiB  # JSON bodies: start, _stop, _kill, _event
    log_level: str = "info"
    stop_timeout_ms: float = DEFAULT_STOP_TIMEOUT_MS  # STOP → KILL, for _stop without a timeout and at shutdown
    shutdown_timeout: float = 10.0  # at shutdown: STOP every Instance, KILL what runs after this
    handshake_timeout: float = 30.0  # a runner must connect within this (many starting at once share the CPU)
    requirements: InstanceRequirements = field(default_factory=InstanceRequirements)
    keep_ended: int = 200  # ended Instances kept in memory (their streams); summaries stay on disk
    cors_origins: tuple[str, ...] = ()
    python: str = sys.executable
    runtime: str = "process"  # where Instances run: "process" or "docker" (hub/runtimes/)
    runner_image: str = "sequence-runner:local"  # docker: the image of every Instance's container
    docker_host: str = field(default_factory=default_docker_host)  # docker: the engine's unix socket
    memory_limit_mib: float = 512.0  # docker: per Instance unless the start says otherwise; 0: none
    cpu_limit: float = 0.0  # docker: CPUs per Instance unless the start says otherwise; 0: none
    warm_starts: bool = True  # process: fork runners from host_bridge's warm template, else spawn them cold

    def public(self) -> dict[str, Any]:
        """What GET /config shows: everything but the token."""
        return {
            "host": {"hostname": self.host, "port": self.port, "apiBase": self.api_base},
            "store": str(self.store),
            "authRequired": self.token is not None,
            "logLevel": self.log_level,
            "maxInstances": self.max_instances,
            "maxUploadSize": self.max_upload_bytes,
            "maxBodySize": self.max_body_bytes,
            "stopTimeout": self.stop_timeout_ms,
            "shutdownTimeout": self.shutdown_timeout,
            "handshakeTimeout": self.handshake_timeout,
            "keepEnded": self.keep_ended,
            "instanceRequirements": {
                "freeMem": self.requirements.free_mem_mib,
                "cpuLoad": self.requirements.cpu_load_percent,
                "freeSpace": self.requirements.free_space_mib,
            },
            "corsOrigins": list(self.cors_origins),
            "runtimeAdapter": self.runtime,
            "warmStarts": self.warm_starts,
        }


def _api_base(value: str) -> str:
    value = "/" + value.strip("/")
    if value == "/" or any(not part or part in (".", "..") for part in value[1:].split("/")):
        raise argparse.ArgumentTypeError(f"--api-base {value!r} must be a path like /api/v1")
    return value


def _runtime(value: str) -> str:
    if value not in RUNTIMES:
        raise argparse.ArgumentTypeError(f"{value!r} is not a runtime: choose {' or '.join(RUNTIMES)}")
    return value


def _docker_host(value: str) -> str:
    if not value.startswith("unix:///"):
        raise argparse.ArgumentTypeError(f"{value!r}: only a unix socket is supported, as unix:///path/to/docker.sock")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(text: str) -> bool:
    """An on/off environment variable (the flag itself is --NAME / --no-NAME)."""
    value = text.strip().lower()
    if value not in _TRUE + _FALSE:
        raise argparse.ArgumentTypeError(f"{text!r} is not on or off: use 1/0, true/false, yes/no or on/off")
    return value in _TRUE


def _positive(kind: type[int | float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        return value

    return parse


_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

# (flag, dest, type, help); the environment variable is the flag's: --max-instances -> SEQUENCE_HUB_MAX_INSTANCES
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--host", "host", str, "address to listen on (default 127.0.0.1: loopback only)"),
    ("--port", "port", _positive(int), "TCP port (default 8000; 0 picks a free one)"),
    ("--api-base", "api_base", _api_base, "path prefix of the API (default /api/v1)"),
    ("--store", "store", Path, "directory of the Sequence store (default: the user data dir)"),
    ("--token", "token", str, "require 'Authorization: Bearer TOKEN' on every request"),
    ("--max-instances", "max_instances", _positive(int), "Instances running at once (default 100)"),
    ("--max-upload-size", "max_upload_bytes", _positive(int), "largest package upload, bytes (512 MiB)"),
    ("--max-body-size", "max_body_bytes", _positive(int), "largest JSON request body, bytes (1 MiB)"),
    ("--log-level", "log_level", str.lower, f"one of {', '.join(_LEVELS)} (default info)"),
    ("--stop-timeout", "stop_timeout_ms", _positive(float), "ms between STOP and KILL (default 7000)"),
    ("--shutdown-timeout", "shutdown_timeout", _positive(float), "s to wait for Instances at exit (10)"),
    ("--handshake-timeout", "handshake_timeout", _positive(float), "s a new runner has to connect (default 30)"),
    ("--keep-ended", "keep_ended", _positive(int), "ended Instances kept with their streams (200)"),
    ("--min-free-mem", "free_mem_mib", _positive(float), "MiB of free memory a start needs (256; 0: off)"),
    ("--max-cpu-load", "cpu_load_percent", _positive(float), "refuse starts above this CPU load %% (default 0: off)"),
    ("--min-free-space", "free_space_mib", _positive(float), "MiB free in the store a start needs (128)"),
    ("--cors-origin", "cors_origins", str, "allow CORS from these origins (comma-separated; default: no CORS)"),
    ("--runtime", "runtime", _runtime, "where Instances run: process (default) or docker (a container each)"),
    ("--runner-image", "runner_image", str, "docker: the runner image (default sequence-runner:local)"),
    ("--docker-host", "docker_host", _docker_host, ("docker: the engine's socket (default $DOCKER_HOST or "
                                           "unix:///var/run/docker.sock)")),
    ("--memory-limit", "memory_limit_mib", _positive(float), ("docker: MiB per Instance (512; 0: none); "
                                                              "a start's limits.memory overrides it")),
    ("--cpu-limit", "cpu_limit", _positive(float), ("docker: CPUs per Instance (default 0: none); "
                                                    "a start's limits.cpu overrides it")),
    ("--warm-starts", "warm_starts", _boolean, ("process: fork each runner from a warm template (default); "
                                                "--no-warm-starts spawns a cold Python each time")),
]


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hub",
        description="Serve the Sequence REST API (upload, start, stream, stop; topics) on host_bridge.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, dest, kind, text in _OPTIONS:
        if kind is _boolean:  # --NAME / --no-NAME; its environment variable takes 1/0, true/false, ...
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{text} [{env_name(flag)}]")
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=None, help=f"{text} [{env_name(flag)}]")
    return parser


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> HubConfig:
    """Flags, else environment variables, else defaults. Exits 2 with the reason on a bad value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for flag, dest, kind, _ in _OPTIONS:
        value = getattr(args, dest)
        if value is None and (raw := env.get(env_name(flag))) not in (None, ""):
            try:
                value = kind(raw)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                parser.error(f"{env_name(flag)}: {exc}")
        if value is not None:
            values[dest] = value
    if values.get("log_level", "info") not in _LEVELS:
        parser.error(f"--log-level must be one of {', '.join(_LEVELS)}, not {values['log_level']!r}")
    requirements = InstanceRequirements(
        **{k: values.pop(k) for k in ("free_mem_mib", "cpu_load_percent", "free_space_mib") if k in values}
    )
    if "cors_origins" in values:
        values["cors_origins"] = tuple(o.strip() for o in values["cors_origins"].split(",") if o.strip())
    return HubConfig(requirements=requirements, **values)


def logging_level(name: str) -> int:
    return 5 if name == "trace" else int(getattr(logging, name.upper()))
