"""The topics and content types a Sequence declares, wherever it declares them.

A Sequence says what it ``requires`` (an input topic and its content type) and
``provides`` (an output topic and its content type) in any of these places; the
first one that names a value wins:

1. attributes of the result of ``run()``: ``provides``/``requires`` (a topic or a
   ``{provides|requires, contentType}`` dict), ``topic``, ``content_type``/``contentType``;
2. attributes of the run function itself, as STH's samples set them, at import or inside
   ``run()``: ``run.requires``/``run.provides`` (a topic or a dict) with ``run.contentType``
   (or ``content_type``) for a bare topic (for a pipeline: the first function's
   ``requires``, the last one's ``provides``);
3. the pipeline's leading ``{requires, contentType}`` descriptor (STH-Node's form);
4. the module-level ``requires``/``provides`` dicts, read when asked (a module may set them
   at run time too), then the legacy module ``output_type`` for the output content type.

``declared_topics(seq)`` before ``run()`` is called sees 2-4; with the result, all four.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..protocol.records import FrozenRecord, checked_as

__all__ = ["Topics", "declared_topics", "is_number"]

#: Results with no topics on them (and, runner/sequence/shapes.py, written once), numbers aside
#: (``is_number``): int, float and complex here (bool is an int).
_PLAIN_RESULTS: tuple[type, ...] = (str, bytes, bytearray, memoryview, dict, int, float, complex)


def is_number(value: object) -> bool:
    """``isinstance(value, numbers.Number)`` without importing numbers. A class that is a Number
    (Decimal, Fraction, numpy's scalars, a class registered with it) comes from a module that
    imported numbers, so while nothing has, only int, float and complex can be one. A runner that
    imported numbers itself paid for it before every PANG (~0.3 ms), and after the load (the
    Sequence's directory leads sys.path) it would have imported a Sequence's own numbers.py
    (tests/e2e/test_cli_endings.py), so it looks the module up instead."""
    if isinstance(value, (int, float, complex)):
        return True
    number = getattr(sys.modules.get("numbers"), "Number", None)
    return isinstance(number, type) and isinstance(value, number)


@checked_as(frozen=True)
class Topics(FrozenRecord):
    """What a Sequence declares (the first PANG's). Written by hand, as the frozen dataclass it was
    (runner/protocol/records.py): every runner makes the class before its first PANG."""

    __slots__ = ("input_content_type", "output_content_type", "provides", "requires")
    __match_args__ = ("requires", "input_content_type", "provides", "output_content_type")
    requires: str
    input_content_type: str | None  # as declared (not normalised); None: not declared
    provides: str
    output_content_type: str | None

    def __init__(self, requires: str = "", input_content_type: str | None = None, provides: str = "",
                 output_content_type: str | None = None) -> None:
        object.__setattr__(self, "requires", requires)
        object.__setattr__(self, "input_content_type", input_content_type)
        object.__setattr__(self, "provides", provides)
        object.__setattr__(self, "output_content_type", output_content_type)


def _topic_and_type(value: Any, key: str) -> tuple[str | None, str | None]:
    """A ``provides``/``requires`` value: a topic string, or a dict with the topic and contentType."""
    if isinstance(value, str):
        return (value or None), None
    if isinstance(value, dict):
        topic = value.get(key)
        ct = value.get("contentType") or value.get("content_type")
        return (topic if isinstance(topic, str) and topic else None), (ct if isinstance(ct, str) and ct else None)
    return None, None


def _attr(obj: Any, *names: str) -> Any:
    """The first of ``names`` that ``obj`` has as a non-callable attribute (exotic objects: None)."""
    if obj is None:
        return None
    for name in names:
        try:
            value = getattr(obj, name, None)
        except Exception:  # noqa: BLE001 - a property that raises counts as absent
            value = None
        if value is not None and not callable(value):
            return value
    return None


def _result_source(result: Any) -> Any:
    if result is None:  # at load (the first PANG): shapes (and content) are not imported for it
        return None
    from .shapes import SequenceInput

    if isinstance(result, (SequenceInput, *_PLAIN_RESULTS)) or is_number(result):
        return None
    return result


def _declared(source: Any, key: str) -> tuple[str | None, str | None]:
    """Topic and content type from ``source.<key>`` and, for a bare topic, ``source.contentType``."""
    topic, ct = _topic_and_type(_attr(source, key), key)
    if ct is None:
        bare_ct = _attr(source, "contentType", "content_type")
        ct = bare_ct if isinstance(bare_ct, str) and bare_ct else None
    return topic, ct


def _entry_parts(entry: Any) -> tuple[list[Callable[..., Any]], dict[str, Any] | None]:
    if isinstance(entry, (list, tuple)):
        funcs = list(entry)
        descriptor = funcs.pop(0) if funcs and isinstance(funcs[0], dict) else None
        return funcs, descriptor
    return [entry], None


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def declared_topics(seq: Any, result: Any = None) -> Topics:
    """What ``seq`` (a LoadedSequence, or anything with ``entry`` and optionally ``module``,
    ``requires``, ``provides``, ``output_type``) declares, with ``run()``'s ``result`` if given."""
    funcs, descriptor = _entry_parts(getattr(seq, "entry", None))
    module = getattr(seq, "module", None)
    module_requires = _attr(module, "requires") if module is not None else getattr(seq, "requires", None)
    module_provides = _attr(module, "provides") if module is not None else getattr(seq, "provides", None)
    res = _result_source(result)

    res_r, res_r_ct = _topic_and_type(_attr(res, "requires"), "requires")
    fn_r, fn_r_ct = _declared(funcs[0] if funcs else None, "requires")
    d_r, d_r_ct = _topic_and_type(descriptor, "requires")
    mod_r, mod_r_ct = _topic_and_type(module_requires, "requires")

    res_ct = _attr(res, "content_type", "contentType")
    res_p, res_p_ct = _topic_and_type(_attr(res, "provides"), "provides")
    res_topic = _attr(res, "topic")
    fn_p, fn_p_ct = _declared(funcs[-1] if funcs else None, "provides")
    mod_p, mod_p_ct = _topic_and_type(module_provides, "provides")
    output_type = getattr(seq, "output_type", None)

    return Topics(
        requires=_first(res_r, fn_r, d_r, mod_r) or "",
        input_content_type=_first(res_r_ct, fn_r_ct if fn_r else None, d_r_ct, mod_r_ct),
        provides=_first(res_p, res_topic if isinstance(res_topic, str) else None, fn_p, mod_p) or "",
        output_content_type=_first(res_ct if isinstance(res_ct, str) else None, res_p_ct,
                                   fn_p_ct if fn_p else None, mod_p_ct,
                                   output_type if isinstance(output_type, str) else None),
    )
