"""Settings of the runner process, from argv and the environment (argv wins).

Only ``os`` is imported here (not typing, dataclasses or json): this runs before PING,
and start-up time counts until PING (runner/hello.py).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs ~5 ms of start-up (it imports re)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

ENV_PREFIX = "SEQUENCE_RUNNER_"
DEFAULT_CONNECT_TIMEOUT = 10.0
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL")

#: option -> (env var, help). The order is the order of --help.
OPTIONS: dict[str, tuple[str, str]] = {
    "--fd": ("SEQUENCE_RUNNER_FD", "inherited connected socket file descriptor (what host_bridge passes)"),
    "--connect": ("SEQUENCE_RUNNER_CONNECT", "connect to the host: unix:PATH or tcp:HOST:PORT"),
    "--instance-id": ("SEQUENCE_RUNNER_INSTANCE_ID", "instance id sent in the handshake (required)"),
    "--token": ("SEQUENCE_RUNNER_TOKEN", "auth token for the handshake (prefer the env var: argv shows in ps)"),
    "--sequence": ("SEQUENCE_RUNNER_SEQUENCE", "Sequence: a directory with package.json, a .tar.gz or a .py file"),
    "--config": ("SEQUENCE_RUNNER_CONFIG", "appConfig as a JSON object (PONG's appConfig overrides it)"),
    "--args": ("SEQUENCE_RUNNER_ARGS", "arguments of run() as a JSON array (PONG's args override them)"),
    "--connect-timeout": ("SEQUENCE_RUNNER_CONNECT_TIMEOUT", "seconds to connect and get PONG (default 10)"),
    "--log-level": ("SEQUENCE_RUNNER_LOG_LEVEL", "level of the runner's own log records (default INFO)"),
}

EXIT_CODES_HELP = """exit codes:
  0    the Sequence completed
  20   invalid configuration (bad/missing setting, handshake refused or failed)
  21   invalid Sequence path
  22   the Sequence failed on start (syntax/import error, no run, sys.exit at import)
  23   the Sequence failed during execution (exception, sys.exit(n != 0), bad input);
       sys.exit(0) in run() completes the run (0)
  137  killed (KILL, host gone, protocol error after the handshake)
  138  stopped (KILL after STOP, or the stop deadline passed)"""

OTHER_ENV_HELP = """other environment variables:
  SEQUENCE_RUNNER_UVLOOP=1           run on uvloop when it is installed (default: asyncio's own loop)
  SEQUENCE_RUNNER_PURE_PYTHON=1      force the pure-Python framer
  SEQUENCE_RUNNER_REQUIRE_EXTENSION=1  fail if the compiled framer is missing
  SEQUENCE_RUNNER_FULL_TRACEBACK=1   tracebacks keep the runner's own frames (default: the user's only)
  SEQUENCE_RUNNER_EXTRACT_ROOT=DIR   where .tar.gz packages are unpacked (DIR/runner-<pid>, removed at exit)
  INSTANCES_SERVER_PORT, INSTANCE_ID (without options, at most a startup-log path)
                                     Scramjet Transform Hub mode (docs/sth-compat.md); tuned by
                                     SEQUENCE_RUNNER_STH_RECONNECT_DELAY, _REPLY_TIMEOUT, _EXIT_TIMEOUT_MS"""


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it. Exit code 20."""


class Settings:
    """What the runner was started with. A plain class, not a dataclass: dataclasses imports
    inspect (with ast, dis and tokenize), ~7 ms before PING."""

    __slots__ = ("app_config", "args", "connect", "connect_timeout", "fd", "instance_id", "log_level",
                 "sequence", "sources", "token")

    def __init__(
        self,
        *,
        fd: int | None = None,
        connect: tuple[str, str, int] | None = None,  # ("unix", path, 0) or ("tcp", host, port)
        instance_id: str = "",
        token: str = "",
        sequence: str = "",
        app_config: dict[str, Any] | None = None,
        args: list[Any] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        log_level: str = "INFO",
        sources: dict[str, str] | None = None,  # setting -> "--opt" or "ENV" (for messages)
    ) -> None:
        self.fd = fd
        self.connect = connect
        self.instance_id = instance_id
        self.token = token
        self.sequence = sequence
        self.app_config = app_config
        self.args = args
        self.connect_timeout = connect_timeout
        self.log_level = log_level
        self.sources: dict[str, str] = {} if sources is None else sources

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "token")
        return f"Settings({shown})"


def help_text(prog: str = "python -m runner") -> str:
    lines = [
        f"usage: {prog} [options]",
        f"       {prog} run|pack ...   (see {prog} run --help)",
        f"       {prog} --version",
        "",
        "Runs one Sequence for a host over one connection (docs/runner.md, docs/protocol.md).",
        "Every option may be given as an environment variable instead; argv wins.",
        "",
        "options (environment variable):",
    ]
    for opt, (env, text) in OPTIONS.items():
        lines.append(f"  {opt} VALUE  ({env})")
        lines.append(f"      {text}")
    lines += ["  --version  print versions and the active framer", "  --help     this text", ""]
    return "\n".join(lines) + "\n" + OTHER_ENV_HELP + "\n\n" + EXIT_CODES_HELP + "\n"


def _split_argv(argv: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    it = iter(argv)
    for word in it:
        opt, eq, inline = word.partition("=")
        if opt not in OPTIONS:
            raise ConfigError(f"unknown option {word!r} (see --help)")
        if eq:
            values[opt] = inline
            continue
        try:
            values[opt] = next(it)
        except StopIteration:
            raise ConfigError(f"option {opt} needs a value") from None
    return values


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``argv`` (without the program name) and ``env``; ConfigError names a bad one."""
    env = os.environ if env is None else env
    given = _split_argv(argv)
    raw: dict[str, tuple[str, str]] = {}  # option -> (value, where from)
    for opt, (var, _) in OPTIONS.items():
        if opt in given:
            raw[opt] = (given[opt], opt)
        elif env.get(var, "") != "":
            raw[opt] = (env[var], var)
    settings = Settings(sources={opt: src for opt, (_, src) in raw.items()})
    if "--fd" in raw:
        settings.fd = _int(raw["--fd"], minimum=0)
    if "--connect" in raw:
        settings.connect = _address(*raw["--connect"])
    if settings.fd is None and settings.connect is None:
        raise ConfigError("no connection: give --fd N (SEQUENCE_RUNNER_FD) or --connect ADDRESS "
                          "(SEQUENCE_RUNNER_CONNECT)")
    if settings.fd is not None and settings.connect is not None:
        raise ConfigError(f"both {raw['--fd'][1]} and {raw['--connect'][1]} are set; give one connection")
    if "--instance-id" not in raw:
        raise ConfigError("missing instance id: give --instance-id (SEQUENCE_RUNNER_INSTANCE_ID)")
    settings.instance_id = raw["--instance-id"][0]
    settings.token = raw.get("--token", ("", ""))[0]
    if "--sequence" not in raw:
        raise ConfigError("missing Sequence: give --sequence PATH (SEQUENCE_RUNNER_SEQUENCE)")
    settings.sequence = raw["--sequence"][0]
    if "--config" in raw:
        settings.app_config = _json(raw["--config"], dict, "a JSON object")
    if "--args" in raw:
        settings.args = _json(raw["--args"], list, "a JSON array")
    if "--connect-timeout" in raw:
        settings.connect_timeout = _float(raw["--connect-timeout"])
    if "--log-level" in raw:
        level, src = raw["--log-level"]
        if level.upper() not in LOG_LEVELS:
            raise ConfigError(f"{src}: log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
        settings.log_level = level.upper()
    return settings


def _int(item: tuple[str, str], minimum: int) -> int:
    value, src = item
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{src}: {value!r} is not an integer") from None
    if number < minimum:
        raise ConfigError(f"{src}: {number} is below {minimum}")
    return number


def _float(item: tuple[str, str]) -> float:
    value, src = item
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{src}: {value!r} is not a number of seconds") from None
    if not number > 0:
        raise ConfigError(f"{src}: the timeout must be positive, got {value!r}")
    return number


def _address(value: str, src: str) -> tuple[str, str, int]:
    scheme, _, rest = value.partition(":")
    if scheme == "unix" and rest:
        return ("unix", rest, 0)
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return ("tcp", host.strip("[]"), int(port))
    raise ConfigError(f"{src}: {value!r} is not unix:PATH or tcp:HOST:PORT")


def _json(item: tuple[str, str], kind: type, what: str) -> Any:
    import json

    value, src = item
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"{src}: not valid JSON ({exc})") from None
    if not isinstance(parsed, kind):
        raise ConfigError(f"{src}: must be {what}, got {type(parsed).__name__}")
    return parsed
