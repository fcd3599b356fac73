"""What a warm-start template does before its first fork (runner/warm.py, warm_startup.py, warm_codes.py).

The template runs a whole runner start-up ten times in its own process, then forks: nothing of
those runs may be left for a fork to inherit, and the code it moved must be the same code.
Each check runs ``preload`` in a fresh interpreter (it changes that process for good).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from host_bridge.zygote import template_environment

#: The process's state a fork inherits, before and after ``preload``.
STATE = r'''
import json, logging, os, signal, stat, sys, threading

def fd_kinds():
    kinds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            mode = os.fstat(int(name)).st_mode
        except OSError:
            continue
        kinds[name] = [stat.S_IFMT(mode), os.readlink(f"/proc/self/fd/{name}")]
    return kinds

def state():
    from runner import signals, stdio
    loggers = {}
    for name in ("runner", "Sequence"):
        logger = logging.Logger.manager.loggerDict.get(name)
        if isinstance(logger, logging.Logger):
            loggers[name] = [logger.level, len(logger.handlers), logger.propagate, logger.disabled]
    return {
        "threads": [t.name for t in threading.enumerate()],
        "fds": fd_kinds(),
        "handlers": {s.name: repr(signal.getsignal(s)) for s in signal.valid_signals()
                     if isinstance(s, signal.Signals) and s not in (signal.SIGKILL, signal.SIGSTOP)},
        "wakeup_fd": signal.set_wakeup_fd(-1),
        "streams": [id(sys.stdin), id(sys.stdout), id(sys.stderr), id(sys.breakpointhook)],
        "cwd": os.getcwd(), "path": list(sys.path), "environ": dict(os.environ),
        "loggers": loggers, "original_stderr_fd": stdio._original_stderr_fd,
        "runner_signals": [signals._handler is None, signals._handshake_done, list(signals._pending)],
        "sequence_modules": sorted(m for m in sys.modules if m.startswith("sequence_")),
    }
'''


def _run(body: str) -> dict[str, Any]:
    env = template_environment()
    proc = subprocess.run([sys.executable, "-c", STATE + body], check=False, env=env, capture_output=True,
                          text=True, timeout=120, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_the_start_up_rounds_leave_nothing_a_fork_could_inherit() -> None:
    result = _run('''
from runner import logs, signals  # what the rounds touch, imported first: their state is compared
before = state()
from runner.warm import preload
missing, copies = preload()
after = state()
print(json.dumps({"before": before, "after": after, "missing": missing, "copies": len(copies)}))
''')
    before, after = result["before"], result["after"]
    assert after["threads"] == ["MainThread"]
    for key in before.keys() - {"loggers"}:
        assert after[key] == before[key], key
    for name, logger in after["loggers"].items():  # one the rounds made is as getLogger makes it
        assert logger == before["loggers"].get(name, [0, 0, True, False]), name
    assert set(result["missing"]) <= {"runner._reaper_c"}  # not built without a C compiler: ctypes then
    assert result["copies"] > 300  # the code a runner's start-up runs, packed


def test_packed_code_is_the_same_code_in_fewer_pages() -> None:
    result = _run('''
import sys, types
from runner.transport.native import NativeTransport
from runner.runtime import Runtime
functions = [NativeTransport.handshake, NativeTransport._read_loop, Runtime.__init__, Runtime.load]
originals = [f.__code__ for f in functions]
from runner.warm import preload
missing, copies = preload()

def pages(codes):
    spanned = set()
    for code in codes:
        spanned.update(range(id(code) // 4096, (id(code) + sys.getsizeof(code) - 1) // 4096 + 1))
    return len(spanned)

def positions(code):  # columns as well as lines from 3.11; 3.10's code objects have none
    return code.co_positions() if hasattr(code, "co_positions") else ()

from runner.warm_codes import _KEPT
originals_all = _KEPT[0][0]
moved = [f.__code__ is copies.get(id(old)) for f, old in zip(functions, originals)]
same = [f.__code__ == old and f.__code__.co_code == old.co_code and f.__code__.co_consts == old.co_consts
        and list(f.__code__.co_lines()) == list(old.co_lines())
        and list(positions(f.__code__)) == list(positions(old))
        for f, old in zip(functions, originals)]
print(json.dumps({"moved": moved, "same": same, "pages_before": pages(originals_all),
                  "pages_after": pages(copies.values())}))
''')
    assert result["moved"] == [True] * 4
    assert result["same"] == [True] * 4
    # the point of moving them: the copies lie together (measured ~320 pages -> ~150)
    assert result["pages_after"] < 0.7 * result["pages_before"], result


def test_after_filling_the_malloc_holes_a_fork_mallocs_from_the_heap_top() -> None:
    result = _run('''
import ctypes
from runner.warm_codes import _MallInfo2, fill_malloc_holes
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
libc.mallinfo2.restype = _MallInfo2

def holes_reused(sizes):
    """How many of these mallocs did not come from the top of the heap (a hole was reused)."""
    reused = 0
    for size in sizes:
        top = libc.sbrk(0) - libc.mallinfo2().keepcost
        reused += libc.malloc(size) < top
    return reused

sizes = [24, 100, 600, 1000, 3000, 20000] * 3
def make_holes():  # chunks of every size, every other one freed: holes among live chunks
    chunks = [libc.malloc(size) for size in sizes * 4 for _ in range(2)]
    for address in chunks[::2]:
        libc.free(address)

make_holes()
unfilled = holes_reused(sizes)
make_holes()
taken = fill_malloc_holes()
print(json.dumps({"unfilled": unfilled, "filled": holes_reused(sizes), "taken": taken}))
''')
    assert result["unfilled"] > len([24, 100, 600, 1000, 3000, 20000])  # the holes are used first, unfilled
    assert result["taken"] > 0
    assert result["filled"] == 0, result


def test_packed_functions_are_the_same_functions_and_only_those_nothing_else_holds_move() -> None:
    result = _run('''
import sys, types
module = types.ModuleType("packed_demo")
sys.modules["packed_demo"] = module
exec(compile("""
def scale(x, *, by=2):
    "x times by"
    return x * by

class Box:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value

    @staticmethod
    def make(value):
        return Box(value)

def registered():
    return "registered"

def weakly_held():
    return "weak"

REGISTRY = [registered]
scale.tag = "kept"
import weakref
WATCHED = weakref.ref(weakly_held)
""", "packed_demo.py", "exec"), vars(module))
def functions():
    return {"scale": module.scale, "get": module.Box.get, "init": module.Box.__init__,
            "registered": module.registered, "make": module.Box.make, "weakly_held": module.weakly_held}

before = {name: id(f) for name, f in functions().items()}  # ids only: a reference here would hold them
codes = [f.__code__ for f in functions().values()]
from runner.warm_functions import pack_functions
moved = pack_functions(codes)
box = module.Box.make(5)
print(json.dumps({
    "moved": moved,
    "new_objects": [name for name, f in functions().items() if id(f) != before[name]],
    "same": [module.scale.__code__ is codes[0], module.scale.__globals__ is vars(module),
             module.scale.__qualname__, module.Box.get.__qualname__, module.scale.__doc__,
             module.scale.__kwdefaults__, module.scale.tag, module.scale.__module__],
    "calls": [module.scale(3), module.scale(3, by=4), box.get(), module.registered(), module.REGISTRY[0](),
              module.WATCHED() is module.weakly_held],
}))
''')
    assert result["moved"] == 3
    # only module and class namespaces held these: moved; the registered one, the static method's
    # function (held by the list, by the staticmethod object) and the weakly referenced one stay
    # the objects they were
    assert sorted(result["new_objects"]) == ["get", "init", "scale"]
    assert result["same"] == [True, True, "scale", "Box.get", "x times by", {"by": 2}, "kept", "packed_demo"]
    assert result["calls"] == [6, 12, 5, "registered", "registered", True]


def test_malloc_filling_takes_at_most_what_is_free_when_the_top_is_misread() -> None:
    result = _run('''
import ctypes
from runner import warm_codes
from runner.warm_codes import _MallInfo2, fill_malloc_holes
fill_malloc_holes()  # loads the functions it uses
libc, malloc, sbrk, mallinfo2 = warm_codes._MALLOC_API
free_before = mallinfo2().fordblks
# a heap whose top is never found: every chunk looks like a hole
warm_codes._MALLOC_API[2] = lambda _increment: 1 << 60
taken = fill_malloc_holes()
print(json.dumps({"taken": taken, "free_before": free_before, "allowance": warm_codes.MALLOC_TCACHE_ALLOWANCE,
                  "smallest": min(warm_codes.MALLOC_FILL_REQUESTS)}))
''')
    assert result["taken"] > 0
    # every request is at least the smallest: the count bounds the bytes taken
    assert result["taken"] * result["smallest"] <= result["free_before"] + result["allowance"]
