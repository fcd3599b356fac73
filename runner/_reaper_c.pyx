"""Compiled part of runner/reaper.py: ``prctl(PR_SET_CHILD_SUBREAPER)`` without ctypes.

The runner becomes a child subreaper before it imports the Sequence, so before its first
PANG. Through ctypes (the module, libffi and a CDLL of libc) that one system call cost
~1.3 ms of a ~50 ms start. Built by setup.py beside the compiled framer; where it is
missing, reaper.py falls back to ctypes.
"""

cdef extern from *:
    """
    #include <errno.h>
    #ifdef __linux__
    #include <sys/prctl.h>
    #ifndef PR_SET_CHILD_SUBREAPER
    #define PR_SET_CHILD_SUBREAPER 36
    #endif
    static int runner_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL); }
    #else
    static int runner_set_child_subreaper(void) { errno = ENOSYS; return -1; }
    #endif
    """
    int runner_set_child_subreaper()


def set_child_subreaper():
    """True when this process is now a child subreaper; False where the kernel refuses (not Linux)."""
    return runner_set_child_subreaper() == 0
