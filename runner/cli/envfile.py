"""``run --env FILE``: environment variables for the Sequence from a dotenv-style file.

The format people know from ``docker run --env-file``, ``sam local --env-vars``
and python-dotenv, without variable expansion:

    # a comment; blank lines are skipped too
    NAME=value                 unquoted: surrounding blanks and a " # comment" are dropped
    export NAME=value          "export " is allowed (a file shared with a shell)
    NAME='literal $text'       single quotes: taken as written
    NAME="line\\nnext"          double quotes: \\n \\t \\r \\" \\\\ escapes
    NAME=                      the empty string

A line that is none of these is an error naming the file and line.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class EnvFileError(ValueError):
    """A line of an env file that is not NAME=VALUE; the message names file and line."""


def read_env_file(path: str) -> dict[str, str]:
    """The variables of ``path`` in file order (a later line wins); EnvFileError on a bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    variables: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        try:
            parsed = parse_line(line)
        except EnvFileError as exc:
            raise EnvFileError(f"{path}:{number}: {exc}") from None
        if parsed is not None:
            variables[parsed[0]] = parsed[1]
    return variables


def parse_line(line: str) -> tuple[str, str] | None:
    """``(name, value)``, or None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("export "):
        text = text[len("export "):].lstrip()
    name, eq, rest = text.partition("=")
    name = name.strip()
    if not eq:
        raise EnvFileError(f"expected NAME=VALUE, got {line.strip()!r}")
    if not _NAME.fullmatch(name):
        raise EnvFileError(f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)")
    return name, _value(rest.strip())


def _value(raw: str) -> str:
    if not raw or raw[0] not in "'\"":
        comment = re.search(r"\s#", raw)
        return (raw[: comment.start()] if comment else raw).rstrip()
    quote = raw[0]
    chars: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == quote:
            _only_comment_after(raw[i + 1:])
            return "".join(chars)
        if char == "\\" and quote == '"' and i + 1 < len(raw) and raw[i + 1] in _ESCAPES:
            chars.append(_ESCAPES[raw[i + 1]])
            i += 2
            continue
        chars.append(char)
        i += 1
    raise EnvFileError(f"the value {raw!r} has no closing {quote}")


def _only_comment_after(tail: str) -> None:
    tail = tail.strip()
    if tail and not tail.startswith("#"):
        raise EnvFileError(f"unexpected {tail!r} after the closing quote")
