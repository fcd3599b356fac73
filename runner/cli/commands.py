"""``python -m runner run|pack``: run, feed and debug a Sequence locally, and package it.

``run`` starts the Sequence in a real runner child process through host_bridge
(the production path; child.py), or in this process with ``--inline``
(inline.py) so debuggers work. ``pack`` builds a .tar.gz a hub accepts
(pack.py). Options are parsed in options.py; what the Sequence sends besides
its output is rendered on stderr by render.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import prog_name
from .options import UsageError, parse_run, parser_pack

USAGE = """\
usage: {prog} run PATH [ARGS ...] [options]   run a Sequence here: input from stdin, output to stdout
       {prog} pack DIRECTORY [-o FILE]        pack a Sequence into a .tar.gz a hub accepts
       {prog} --version

'{prog} run --help' and '{prog} pack --help' tell more. Hosts start the runner
process itself with a connection instead ('{prog} --help').
"""


def _usage_error(prog: str, command: str, message: str) -> int:
    sys.stderr.write(f"{prog} {command}: error: {message}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``argv`` as in sys.argv: [program, "run"|"pack", ...]; no command prints the usage (exit 2)."""
    argv = list(sys.argv if argv is None else argv)
    prog = prog_name(argv[0] if argv else "")
    if len(argv) < 2 or argv[1] not in ("run", "pack"):
        if len(argv) >= 2:
            what = "option" if argv[1].startswith("-") else "command"
            sys.stderr.write(f"{prog}: unknown {what} {argv[1]!r}\n")
        sys.stderr.write(USAGE.format(prog=prog))
        return 2
    command, words = argv[1], argv[2:]
    try:
        if command == "pack":
            from .pack import pack_main

            ns = parser_pack(prog).parse_args(words)
            return pack_main(ns.directory, ns.output, install_deps=ns.install_deps)
        opts = parse_run(words, prog)
    except UsageError as exc:
        return _usage_error(prog, command, str(exc))
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if opts.inline:
        from .inline import run_inline

        return run_inline(opts)
    from .child import run_child

    return run_child(opts)
