"""STH mode: the runner started the way Scramjet Transform Hub starts its Python runner.

STH's adapters pass no options, only an environment (``SEQUENCE_PATH``,
``INSTANCES_SERVER_HOST``, ``INSTANCES_SERVER_PORT``, ``INSTANCE_ID``,
``SEQUENCE_INFO``, ``RUNNER_CONNECT_INFO``) and, under the process adapter, a
startup-log path as the only argument (docs/sth-compat.md §1). This module
reads that, logs to the startup log until LOG is connected, takes the
startup-log argument out of ``sys.argv`` before the Sequence is imported, and
runs the ordinary runner core over ``runner.transport.sth``. Every exit path
writes the exit-code file ``/tmp/runner-<pid>`` (early exits here, the others
through ``Transport.on_exit``).

Before PING (start-up time counts until it arrives) only json, socket, select and
runner.protocol.sth are imported: runner/hello.py opens the connections and writes it, then
waits for PONG and writes STH's first PANG, before the runner core is imported.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # typing is not imported before PING (runner/hello.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

from .protocol import sth
from .protocol.stop import MAX_EXIT_TIMEOUT_MS, STH_EXIT_TIMEOUT_MS
from .startup_log import StartupLog, install_handler

#: Tuning for operators and tests (STH passes them through ``runnerEnvs``).
ENV_RECONNECT_DELAY = "SEQUENCE_RUNNER_STH_RECONNECT_DELAY"  # seconds, default 10 (STH-Node)
ENV_REPLY_TIMEOUT = "SEQUENCE_RUNNER_STH_REPLY_TIMEOUT"  # seconds, default 1 (STH-Node); 0 = never
ENV_EXIT_TIMEOUT = "SEQUENCE_RUNNER_STH_EXIT_TIMEOUT_MS"  # default STH_EXIT_TIMEOUT_MS

INVALID_ENV = 20
INVALID_SEQUENCE_PATH = 21


class STHEnvError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def wanted(words: Sequence[str], env: Mapping[str, str]) -> bool:
    """STH mode: STH's variables are set and no protocol-v1 connection is asked for.

    ``words`` (argv without the program) may hold only the startup-log path.
    """
    if env.get("SEQUENCE_RUNNER_FD") or env.get("SEQUENCE_RUNNER_CONNECT"):
        return False
    if len(words) > 1 or any(w.startswith("-") for w in words):
        return False
    return bool(env.get("INSTANCES_SERVER_PORT") or env.get("INSTANCE_ID"))


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise STHEnvError(INVALID_ENV, f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise STHEnvError(INVALID_ENV, f"{name}={raw!r} is negative")
    return value


def parse_env(env: Mapping[str, str]) -> Any:
    """STHConfig and the Sequence path from STH's environment; STHEnvError(20/21) names what is wrong.

    Which STH host generation started the runner is decided here, once (``profile_for``): an
    0.18-style host passes neither SEQUENCE_INFO nor RUNNER_CONNECT_INFO (docs/sth-compat.md §6)."""
    from .transport.sth_connect import STHConfig
    from .transport.sth_profile import profile_for

    profile = profile_for(env)
    missing = [name for name in profile.required_env if not env.get(name)]
    if missing:
        raise STHEnvError(INVALID_ENV, f"missing environment variable(s): {', '.join(missing)}" + (
            "" if any(name in env for name in ("SEQUENCE_INFO", "RUNNER_CONNECT_INFO")) else
            f" (STH 1.0.x passes all of {', '.join(sth.ENV_VARS)}; an 0.18-style host the first four)"))
    port_text = env["INSTANCES_SERVER_PORT"].strip()
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise STHEnvError(INVALID_ENV, f"INSTANCES_SERVER_PORT={port_text!r} is not a port number")
    instance_id = env["INSTANCE_ID"]
    if len(instance_id) != sth.INSTANCE_ID_LENGTH or not instance_id.isascii() or not instance_id.isprintable():
        raise STHEnvError(INVALID_ENV, f"INSTANCE_ID={instance_id!r} is not {sth.INSTANCE_ID_LENGTH} ASCII "
                                       "characters")
    parsed: dict[str, dict[str, Any]] = {"SEQUENCE_INFO": {}, "RUNNER_CONNECT_INFO": {}}
    for name in ("SEQUENCE_INFO", "RUNNER_CONNECT_INFO") if profile.info_in_env else ():
        try:
            value = json.loads(env[name])
        except ValueError as exc:
            raise STHEnvError(INVALID_ENV, f"{name} is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise STHEnvError(INVALID_ENV, f"{name} is not a JSON object")
        parsed[name] = value
    sequence_path = env["SEQUENCE_PATH"]
    if not os.path.exists(sequence_path):
        raise STHEnvError(INVALID_SEQUENCE_PATH, f"SEQUENCE_PATH {sequence_path!r} does not exist "
                                                 "(check `main` in the Sequence's package.json)")
    if not profile.info_in_env:
        parsed["SEQUENCE_INFO"] = sequence_info_from_package(sequence_path)
    exit_timeout = _number(env, ENV_EXIT_TIMEOUT, STH_EXIT_TIMEOUT_MS)
    cfg = STHConfig(
        host=env["INSTANCES_SERVER_HOST"],
        port=int(port_text),
        instance_id=instance_id,
        sequence_info=parsed["SEQUENCE_INFO"],
        connect_info=parsed["RUNNER_CONNECT_INFO"],
        connect_timeout=_number(env, "SEQUENCE_RUNNER_CONNECT_TIMEOUT", 10.0) or 10.0,
        # a host that never replies (0.18.x) arms no watchdog, whatever the variable says
        reply_timeout=_number(env, ENV_REPLY_TIMEOUT, 1.0) if profile.host_replies else 0.0,
        reconnect_delay=_number(env, ENV_RECONNECT_DELAY, 10.0),
        exit_timeout_ms=int(min(exit_timeout, MAX_EXIT_TIMEOUT_MS)),
        profile=profile,
    )
    return cfg, sequence_path


def package_dir(sequence_path: str) -> tuple[str, dict[str, Any]]:
    """The Sequence's directory and its package.json (``{}`` if none).

    STH's adapters set ``SEQUENCE_PATH = <sequenceDir>/<package.json's main>``: the nearest
    directory above the main file whose package.json's ``main`` leads back to it; without
    one (a lone file), the main file's directory."""
    target = os.path.normpath(os.path.abspath(sequence_path))
    start = here = os.path.dirname(target)
    while True:
        package = _package_json(os.path.join(here, "package.json"))
        main = package.get("main")
        if isinstance(main, str) and os.path.normpath(os.path.join(here, main)) == target:
            return here, package
        parent = os.path.dirname(here)
        if parent == here:
            return start, {}
        here = parent


def _package_json(path: str) -> dict[str, Any]:
    """A package.json's object; ``{}`` when there is none or it is not a JSON object (the hub
    validated the Sequence's own when it was uploaded)."""
    try:
        with open(path, encoding="utf-8") as f:
            package = json.load(f)
    except (OSError, ValueError):
        return {}
    return package if isinstance(package, dict) else {}


def sequence_info_from_package(sequence_path: str) -> dict[str, Any]:
    """An 0.18-style host passes no SEQUENCE_INFO: the PING's ``sequenceInfo`` is built from the
    Sequence's package.json as STH 1.0.x's would hold it (0.18.x reads only ``ports`` of PING)."""
    directory, package = package_dir(sequence_path)
    config: dict[str, Any] = {
        "type": "process",
        "sequenceDir": directory,
        "entrypointPath": os.path.relpath(os.path.abspath(sequence_path), directory),
    }
    for key in ("name", "version", "engines", "args", "description"):
        if key in package:
            config[key] = package[key]
    return {"config": config}


def add_pypackages(sequence_path: str) -> str | None:
    """What STH 1.0.x's ``PYTHONPATH`` ends with and 0.18.x's lacks: ``<sequenceDir>/__pypackages__``,
    put where PYTHONPATH's entries go (before the standard library and site-packages, so the
    Sequence's own copy of a package wins). Returns the directory added, if any."""
    directory, _ = package_dir(sequence_path)
    pyp = os.path.join(directory, "__pypackages__")
    if not os.path.isdir(pyp) or pyp in sys.path:
        return None
    stdlib_parent = os.path.dirname(os.path.dirname(os.__file__))
    at = next((i for i, entry in enumerate(sys.path) if entry and os.path.dirname(entry) == stdlib_parent),
              len(sys.path))
    sys.path.insert(at, pyp)
    return pyp


def early_exit(log: StartupLog, code: int, message: str) -> int:
    """Exit before the core runs: the message to stderr (STH's crash log) and the log, the exit-code file."""
    from .transport.sth_connect import write_exit_code

    log.error("%s (exit %d)", message, code)
    try:
        sys.stderr.write(f"runner: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    write_exit_code(code)
    return code


def _remove_stale_exit_code_file(log: StartupLog) -> None:
    """A /tmp/runner-<pid> left by an earlier process with our (reused) PID would tell the
    host we already exited: the process adapter polls that file for the exit code."""
    path = sth.exit_code_file(os.getpid())
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot remove the stale exit-code file %s: %s", path, exc)
        return
    log.warning("removed a stale exit-code file %s left by an earlier process", path)


def main(words: Sequence[str]) -> int:
    """Run in STH mode; returns an exit code only for exits before the core takes over."""
    startup_log = words[0] if words else None
    # STH-Py leaked the startup-log path to the Sequence's argparse; take it out before the import
    if startup_log is not None and len(sys.argv) > 1 and sys.argv[1] == startup_log:
        del sys.argv[1]
    log = StartupLog(startup_log)
    from . import signals
    from .transport.sth_connect import write_exit_code

    def signalled(code: int) -> None:  # a signal before the handshake (runner.signals)
        log.error("stopped by a signal before the handshake completed (exit %d)", code)
        write_exit_code(code)

    signals.on_early_exit.append(signalled)
    _remove_stale_exit_code_file(log)
    try:
        cfg, sequence_path = parse_env(os.environ)
    except STHEnvError as exc:
        return early_exit(log, exc.code, str(exc))
    log.info("STH mode: instance %s, host %s:%d, Sequence %s", cfg.instance_id, cfg.host, cfg.port,
             sequence_path)
    if not cfg.profile.info_in_env:
        log.info("STH 0.18-style host (no SEQUENCE_INFO or RUNNER_CONNECT_INFO in the environment): "
                 "%d connections, no MONITORING_REPLY expected (no reply watchdog), appConfig/args from "
                 "PONG only", cfg.profile.channels)
    if not cfg.profile.pypackages_on_path:
        added = add_pypackages(sequence_path)
        if added is not None:
            log.info("STH: %s added to sys.path (this host does not put it on PYTHONPATH)", added)
    from .config import LOG_LEVELS, Settings

    app_config = cfg.connect_info.get("appConfig")
    args = cfg.connect_info.get("args")
    level = os.environ.get("SEQUENCE_RUNNER_LOG_LEVEL", "INFO").upper()
    settings = Settings(
        instance_id=cfg.instance_id,
        sequence=sequence_path,
        app_config=app_config if isinstance(app_config, dict) else None,
        args=args if isinstance(args, list) else None,
        connect_timeout=cfg.connect_timeout,
        log_level=level if level in LOG_LEVELS else "INFO",
        sources={"--sequence": "SEQUENCE_PATH", "--instance-id": "INSTANCE_ID"},
    )
    from .hello import EarlyPingError, ping_fields, sth_connect_and_ping, sth_pong_and_pang

    fields = ping_fields(settings)
    try:  # PING first: STH counts the runner as started ("established") when it arrives
        early = sth_connect_and_ping(cfg, fields)
        # and the first PANG right after PONG: STH marks it "running" and supervises its exit from then on
        sth_pong_and_pang(early, cfg.connect_timeout)
    except EarlyPingError as exc:
        return early_exit(log, INVALID_ENV, str(exc))
    install_handler(startup_log)  # the transport logs through `logging` until LOG takes over
    from .app import App, ConfigExit
    from .hello import SentPing
    from .transport.sth import STHTransport

    transport = STHTransport(cfg, early)
    try:
        App(settings, transport, SentPing(fields, early.frame)).run()
    except ConfigExit as exc:
        return early_exit(log, INVALID_ENV, str(exc))
    return 0  # pragma: no cover - App.run never returns
