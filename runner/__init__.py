"""sequence-runner: the runner process for streaming Python Sequences.

Importing this package is cheap and has no side effects: hubs import it (and
``runner.protocol``) without starting anything.
"""

import os

__version__ = "0.1.0"


def version_line() -> str:
    """``sequence-runner 0.1.0 (protocol 1, framer cython)``: what ``--version`` prints."""
    from .protocol import FRAMER_IMPLEMENTATION, PROTOCOL_VERSION

    return f"sequence-runner {__version__} (protocol {PROTOCOL_VERSION}, framer {FRAMER_IMPLEMENTATION})"


def prog_name(argv0: str) -> str:
    """How the user called us: ``python -m runner`` or the script's name (``sequence-runner``)."""
    name = os.path.basename(argv0)
    return "python -m runner" if name in ("__main__.py", "") else name
