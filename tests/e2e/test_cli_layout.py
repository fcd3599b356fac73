"""The CLI's place in the layout (issue 12 part 6): ``runner/cli/`` is the only part of
``runner`` that imports host_bridge, and its modules import each other without a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cli_helpers import REPO

RUNNER = REPO / "runner"
CLI = RUNNER / "cli"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (at any depth, lazy imports included)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    package = ".".join(parts if parts[-1] == "__init__" else parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def test_only_runner_cli_imports_host_bridge():
    importers = {
        str(path.relative_to(REPO))
        for path in RUNNER.rglob("*.py")
        if any(name == "host_bridge" or name.startswith("host_bridge.") for name in imported_modules(path))
    }
    assert importers, "the CLI runs Sequences through host_bridge; the check found no importer at all"
    assert all(name.startswith("runner/cli/") for name in importers), importers


def test_no_import_circle_between_cli_modules():
    modules = {f"runner.cli.{p.stem}": p for p in CLI.glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in imported_modules(path) if m in modules and m != name}
             for name, path in modules.items()}
    assert graph["runner.cli.commands"], "the dispatcher imports the commands it runs"

    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        assert name not in stack, f"import circle: {' -> '.join([*stack, name])}"
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


PATH_MENTION = re.compile(r"(?<![\w./-])((?:runner|host_bridge|hub|scripts|tests|docs|deploy|sample_sequences|_speedups)"
                          r"/[\w./-]*\w)")


def test_the_cli_and_its_docs_name_only_files_that_exist():
    """A docstring once sent readers to a runner/cli_render.py that never existed (issue 14 item 13)."""
    texts = [REPO / "README.md", REPO / "docs" / "runner.md", RUNNER / "__main__.py", *sorted(CLI.glob("*.py"))]
    missing = {}
    for path in texts:
        for match in PATH_MENTION.finditer(path.read_text(encoding="utf-8")):
            named = match.group(1).rstrip(".")
            if not (REPO / named).exists():
                missing.setdefault(named, []).append(path.name)
    assert not missing, missing


def test_the_cli_stop_timeout_default_is_the_runners_signal_stop_timeout():
    """``run --help`` must not import runner.protocol (start-up time), so the CLI writes the number
    itself; it is the same grace period as the runner's own stop on SIGTERM, defined once."""
    from runner.cli.options import RunOptions, _parser_run
    from runner.protocol.stop import SIGNAL_STOP_TIMEOUT_MS

    assert RunOptions.stop_timeout_ms == SIGNAL_STOP_TIMEOUT_MS
    assert _parser_run("run").get_default("stop_timeout") == SIGNAL_STOP_TIMEOUT_MS
