"""Packing the code a warm runner runs into few pages of its template (runner/warm.py).

CPython 3.11 writes into a code object whenever it runs an instruction that is not (or no
longer) specialised: the instruction's counter sits in the code object's own bytecode. Nearly
every function a runner runs has such an instruction, so a fork writes into nearly every code
object its start-up runs, however often the template ran it first, and copies the page it lies
on. Those ~500 code objects were made when their modules were imported, scattered among
everything else: ~320 pages. ``pack`` makes a new copy of each (``code.replace()``) one after
the other, so the copies fill consecutive memory (~100 pages: fresh pymalloc pools for the
smaller ones, the end of malloc's heap for the larger), and points every function that ran one
of them at its copy (``function.__code__``); the template then runs the start-up again so the
copies are specialised before the first fork.

A copy is the same code (bytecode, names, constants, line table): tracebacks, ``inspect`` and
the functions' identities are unchanged; only ``function.__code__`` is another object.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

#: pymalloc serves objects up to this many bytes from pools of one size class; larger ones malloc.
SMALL_OBJECT_LIMIT = 512
_KEPT: list[Any] = []
#: Filler sizes for malloc's holes, largest first (above pymalloc's limit).
HEAP_FILL_SIZES = (1 << 16, 1 << 14, 1 << 12, 2048, 1024, 768, 544)
#: Consecutive blocks handed out one after the other: the pool is a fresh one from here on.
FRESH_RUN = 8


def code_run_by(work: Callable[[], Any]) -> dict[int, types.CodeType]:
    """Every code object ``work()`` runs (Python functions, generators, coroutines), by id, in the
    calling thread and in the threads it starts."""
    ran: dict[int, types.CodeType] = {}

    def profile(frame: types.FrameType, event: str, _arg: Any) -> None:
        if event == "call":
            ran[id(frame.f_code)] = frame.f_code

    previous = sys.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        work()
    finally:
        threading.setprofile(None)
        sys.setprofile(previous)
    return ran


def pack(hot: dict[int, types.CodeType], extra: Iterable[types.CodeType] = ()) -> dict[int, types.CodeType]:
    """Copy the ``hot`` code objects (and ``extra``, with the code of the functions, comprehensions
    and lambdas they make) into consecutive memory and point every function at its code's copy;
    returns old id -> copy."""
    for code in extra:
        for inner in _with_nested(code):
            hot[id(inner)] = inner
    gc.collect()  # what is garbage now would otherwise leave holes among the copies
    copies: dict[int, types.CodeType] = {}
    ballast = _Ballast()
    for code in hot.values():
        _ = code.co_code  # made and kept by the original now, not made by ``replace`` among the copies
    by_size = sorted(hot.values(), key=sys.getsizeof)
    for code in by_size:
        if sys.getsizeof(code) <= SMALL_OBJECT_LIMIT:
            _copy(code, hot, copies, ballast)
    ballast.use_up_heap_holes()  # the larger ones come from malloc: one after the other from the heap's end
    for code in by_size:
        _copy(code, hot, copies, ballast)
    for obj in gc.get_objects():
        if type(obj) is types.FunctionType and id(obj.__code__) in copies:
            obj.__code__ = copies[id(obj.__code__)]
    # Neither the originals nor the ballast are freed: their blocks, scattered among the template's
    # objects, would be where a fork's new objects go first, copying those pages too.
    _KEPT.append((list(hot.values()), ballast.kept))
    return copies


def _with_nested(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if type(const) is types.CodeType:
            found.extend(_with_nested(const))
    return found


def _copy(code: types.CodeType, hot: dict[int, types.CodeType], copies: dict[int, types.CodeType],
          ballast: _Ballast) -> types.CodeType:
    """The copy of ``code``, with the copies of the hot code objects among its constants (the
    functions it makes, e.g. closures and comprehensions, run those)."""
    done = copies.get(id(code))
    if done is not None:
        return done
    consts = code.co_consts
    if any(type(c) is types.CodeType and id(c) in hot for c in consts):
        consts = tuple(_copy(c, hot, copies, ballast) if type(c) is types.CodeType and id(c) in hot else c
                       for c in consts)
    ballast.before(sys.getsizeof(code))
    copy = code.replace(co_consts=consts)
    copies[id(code)] = copy
    return copy


def fill_pools() -> int:
    """Fill the free blocks of every size class's partly used pools, so that a fork's new objects
    go to fresh pools of their own instead of into holes on the template's pages."""
    ballast = _Ballast()
    for block in range(48, SMALL_OBJECT_LIMIT + 1, 16):
        ballast.before(block)
    _KEPT.append(ballast.kept)
    return len(ballast.kept)


#: malloc's chunk sizes are multiples of 16 with an 8-byte header: requests of 24 + 16k bytes
#: take each size class glibc keeps per-size lists of (its tcache and small bins: up to 1 KiB).
MALLOC_SMALL_REQUESTS = tuple(range(1016, 23, -16))
#: Largest first, so a large hole takes one large filler instead of many small ones. One tuple
#: made once: a tuple of these 70 sizes made per call would be freed after it, a new hole.
MALLOC_FILL_REQUESTS = (*HEAP_FILL_SIZES, *MALLOC_SMALL_REQUESTS)
_MALLOC_API: list[Any] = []
#: What glibc's tcache may hold besides the free bytes mallinfo counts (7 chunks of each size up to 1 KiB).
MALLOC_TCACHE_ALLOWANCE = 7 * sum(MALLOC_SMALL_REQUESTS) + (1 << 16)


def fill_malloc_holes() -> int:
    """Take every free chunk of the main thread's malloc heap (its tcache, fast, small and
    large bins: holes the template's start-up left among its live data), so that what a fork
    allocates with malloc (objects over 512 bytes, the interpreter's and libraries' own C
    structures) comes from the top of the heap, a few consecutive pages, instead of holes
    scattered over pages the fork would otherwise share (glibc; elsewhere nothing). The chunks
    are never used nor freed (nor remembered: a list growing here would free its old array, a
    new hole): the template's memory, shared by every fork. Returns how many."""
    if not _MALLOC_API:
        try:  # kept: a CDLL made and dropped here would free its classes' memory, new holes
            libc = ctypes.CDLL(None)
            malloc, sbrk, mallinfo2 = libc.malloc, libc.sbrk, libc.mallinfo2
        except (OSError, AttributeError):
            return 0
        malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        sbrk.restype, sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
        mallinfo2.restype = _MallInfo2
        _MALLOC_API.extend((libc, malloc, sbrk, mallinfo2))
    _, malloc, sbrk, mallinfo2 = _MALLOC_API
    # never more than is free now (the tcache's chunks count as used there: an allowance for them),
    # should the top be misread (a heap that is not one brk area)
    budget = mallinfo2().fordblks + MALLOC_TCACHE_ALLOWANCE
    taken = 0
    for request in MALLOC_FILL_REQUESTS:
        while budget >= request:
            top = (sbrk(0) or 0) - mallinfo2().keepcost  # where the top chunk starts
            address = malloc(request)
            if address is None:
                return taken
            taken += 1
            budget -= request
            if address >= top:  # from the top: no free chunk of this size is left
                break
    return taken


class _Ballast:
    """Filler objects of a copy's size, allocated until the allocator hands out fresh memory (a new
    pool for a size class, the end of malloc's heap) rather than holes among older objects."""

    def __init__(self) -> None:
        self.kept: list[bytes] = []
        self.fresh_classes: set[int] = set()

    def before(self, size: int) -> None:
        if size <= SMALL_OBJECT_LIMIT:
            block = (size + 15) // 16 * 16
            if block not in self.fresh_classes:
                self.fresh_classes.add(block)
                self._fill(block, block, FRESH_RUN)

    def use_up_heap_holes(self) -> None:
        """Fill malloc's free chunks inside its heap, largest sizes first, until a filler of each
        size comes from the top of the heap (glibc >= 2.33, ``mallinfo2``; elsewhere nothing)."""
        try:
            mallinfo2 = ctypes.CDLL(None).mallinfo2
        except (OSError, AttributeError):
            return
        mallinfo2.restype = _MallInfo2
        budget = mallinfo2().fordblks  # never more than what is free now
        for size in HEAP_FILL_SIZES:
            while budget > size:
                top = mallinfo2().keepcost
                filler = b"\1" * (size - 33)
                if mallinfo2().keepcost != top:  # from the top (or the heap grew): no hole this big left
                    break
                self.kept.append(filler)
                budget -= size

    def _fill(self, size: int, step: int, run: int) -> None:
        last, seen = 0, 0
        for _ in range(100_000):
            filler = b"\1" * (size - 33)  # 33: a bytes object's header and its NUL; one allocation
            self.kept.append(filler)
            address = id(filler)
            seen = seen + 1 if address - last == step else 0
            last = address
            if seen >= run:
                return


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
