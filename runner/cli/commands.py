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

from .options import UsageError, parse_run, parser_pack


def _usage_error(command: str, message: str) -> int:
    sys.stderr.write(f"python -m runner {command}: error: {message}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``argv`` as in sys.argv: [program, "run"|"pack", ...]."""
    argv = list(sys.argv if argv is None else argv)
    command, words = argv[1], argv[2:]
    try:
        if command == "pack":
            from .pack import pack_main

            ns = parser_pack("python -m runner").parse_args(words)
            return pack_main(ns.directory, ns.output, install_deps=ns.install_deps)
        opts = parse_run(words)
    except UsageError as exc:
        return _usage_error(command, str(exc))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if opts.inline:
        from .inline import run_inline

        return run_inline(opts)
    from .child import run_child

    return run_child(opts)
