"""``python -m hub``: see ``python -m hub --help`` and docs/hub.md."""

from __future__ import annotations

import logging
import sys

from .config import logging_level, parse_config
from .server import serve


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=logging_level(config.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
