"""``python -m hub``: see ``python -m hub --help`` and docs/hub.md."""

from __future__ import annotations

import logging
import sys

from .config import logging_level, parse_config

#: What the [hub] extra installs and the server needs (httptools and uvloop are used when present).
HUB_EXTRA_MODULES = ("uvicorn", "starlette")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)  # --help and bad flags need none of the server's dependencies
    try:
        from .server import serve
    except ModuleNotFoundError as exc:
        if exc.name not in HUB_EXTRA_MODULES:
            raise
        print(f"hub: {exc.name} is not installed; the hub needs its extra: pip install -e '.[hub]'",
              file=sys.stderr)
        return 1
    logging.basicConfig(level=logging_level(config.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
