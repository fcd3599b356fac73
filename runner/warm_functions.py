"""Packing the function objects a warm runner calls into few pages of its template (runner/warm.py).

CPython 3.11 writes a function object whenever it calls it: the new frame holds a reference
to the function (its reference count goes up, and down again when the frame ends). A fork
calling the ~500 functions of a runner's start-up so copies every page one of them lies on:
made when their modules were imported, they lie scattered among everything else (~100 pages,
nearly all of them private to each fork). ``pack_functions`` makes a new function object for
each one that only its module or its class refers to, one after the other in fresh memory,
and puts it where the old one was (the module's or the class's namespace). The template then
runs the start-up again, so the callers' caches are refilled with the new ones before the
first fork.

A moved function is the same function to every caller: same code, globals, defaults,
closure, name, qualified name, module, doc, annotations and attributes; only its identity
differs from the old object's, which no one else holds (checked by its reference count: a
function held anywhere else, e.g. by a registry, a decorator's wrapper, a signal handler or a
bound method, stays where it is, and so does one a weak reference points at).
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from collections.abc import Iterable
from typing import Any

#: Old functions and their attribute dicts, kept alive: freed, their blocks would be where a
#: fork's new objects go first, copying those pages after all.
_KEPT: list[Any] = []


def pack_functions(codes: Iterable[types.CodeType]) -> int:
    """Move every function running one of ``codes`` that only module and class namespaces refer
    to into consecutive memory; returns how many moved."""
    from .warm_codes import _Ballast

    wanted = {id(code) for code in codes}
    # the first is held by nothing else: its count is what this list, the loop and the call add
    functions: list[Any] = [lambda: None, *(obj for obj in gc.get_objects()
                                 if type(obj) is types.FunctionType and id(obj.__code__) in wanted)]
    places = _namespace_references({id(f) for f in functions})
    counts = [sys.getrefcount(f) for f in functions]
    movable = [f for f, count in zip(functions[1:], counts[1:])
               if count - counts[0] == len(places.get(id(f), ())) > 0 and not weakref.getweakrefcount(f)]
    del functions
    details = [_details(f) for f in movable]  # everything read (and made) before the copies
    if not movable:
        return 0
    ballast = _Ballast()
    ballast.before(sys.getsizeof(movable[0]))  # a fresh pool: the copies one after the other
    copies = [types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
              for f in movable]
    for old, new, (qualname, module, doc, kwdefaults, annotated, attributes) in zip(movable, copies, details):
        new.__qualname__, new.__module__, new.__doc__ = qualname, module, doc
        new.__kwdefaults__, new.__annotations__ = kwdefaults, annotated
        if attributes:
            new.__dict__ = attributes
        for namespace, name in places[id(old)]:
            if isinstance(namespace, type):
                type.__setattr__(namespace, name, new)
            else:
                namespace[name] = new
    _KEPT.append((movable, details, ballast.kept))
    return len(copies)


def _namespace_references(ids: set[int]) -> dict[int, list[tuple[Any, str]]]:
    """Function id -> where modules' globals and classes' namespaces hold it: (the module's
    dict or the class, name)."""
    found: dict[int, list[tuple[Any, str]]] = {}
    modules = {id(m): m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)}  # once
    namespaces: list[tuple[Any, Any]] = [(vars(m), vars(m)) for m in modules.values()]  # each (os.path)
    namespaces += [(cls, cls.__dict__) for cls in gc.get_objects() if isinstance(cls, type)]
    for target, mapping in namespaces:
        for name, value in list(mapping.items()):
            if id(value) in ids and isinstance(name, str):
                found.setdefault(id(value), []).append((target, name))
    return found


def _details(f: types.FunctionType) -> tuple[Any, ...]:
    attributes = f.__dict__  # made now (empty) for a function that has none: among the originals
    return (f.__qualname__, f.__module__, f.__doc__, f.__kwdefaults__, f.__annotations__,
            attributes if attributes else None)
