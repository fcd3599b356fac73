"""Compiled part of runner/warm_template.py: the template's round between two forks, in C.

Every page the template writes between two forks stays, in its old content, with each runner
forked before (it alone maps that copy then): with 100 Instances kept, each paid for ~60 pages
the Python loop wrote while serving the later forks (reference counts of what it touched, the
blocks its objects took, the counters in its code objects, the interpreter's state). Here the
loop (poll, receive the request and its fds, fork, reply, reap) runs without making a Python
object or running Python code; it returns to Python only in a new child, for a request it
refuses, and when the host is gone. Children's exits arrive on a signalfd (SIGCHLD blocked in
the template, unblocked in each child before it runs anything). Built by setup.py beside the
compiled framer; where it is missing, or SEQUENCE_RUNNER_PURE_PYTHON is set, the template
runs its Python loop instead (runner/warm_template.py).
"""

import _imp

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer


cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    #include <poll.h>
    #include <signal.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/signalfd.h>
    #include <sys/socket.h>
    #include <sys/syscall.h>
    #include <sys/wait.h>
    #include <unistd.h>

    #if !defined(SYS_clone3) && (defined(__x86_64__) || defined(__aarch64__))
    #define SYS_clone3 435
    #endif
    #define WARM_CLONE_INTO_CGROUP 0x200000000ULL

    enum { WARM_CLOSED = 0, WARM_CHILD = 1, WARM_REFUSED = 2 };

    typedef struct { int pid; int fd; } warm_child;
    typedef struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
                 set_tid, set_tid_size, cgroup;
    } warm_clone_args;

    static warm_child *warm_children = NULL;   /* pid -> its status socket */
    static size_t warm_count = 0, warm_capacity = 0;
    static int warm_clone3_works = 1;
    static int warm_sigfd = -1;
    static sigset_t warm_old_mask;

    /* SIGCHLD blocked and read from a signalfd: no handler, no Python between two forks. */
    static int warm_setup(void) {
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, &warm_old_mask) != 0) return -1;
        warm_sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
        return warm_sigfd;
    }

    static int warm_remember(int pid, int fd) {
        if (warm_count == warm_capacity) {
            size_t capacity = warm_capacity ? warm_capacity * 2 : 256;
            warm_child *grown = realloc(warm_children, capacity * sizeof *grown);
            if (grown == NULL) return -1;
            warm_children = grown;
            warm_capacity = capacity;
        }
        warm_children[warm_count].pid = pid;
        warm_children[warm_count].fd = fd;
        warm_count++;
        return 0;
    }

    /* Each exited child's raw wait status goes to its status socket, which is then closed. */
    static void warm_reap(void) {
        struct signalfd_siginfo info;
        while (read(warm_sigfd, &info, sizeof info) == (ssize_t)sizeof info) {}
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0) return;  /* none left to reap now, or no children at all */
            for (size_t i = 0; i < warm_count; i++) {
                if (warm_children[i].pid != pid) continue;
                int fd = warm_children[i].fd;
                warm_children[i] = warm_children[--warm_count];
                ssize_t ignored = write(fd, &status, sizeof status);  /* the host may have stopped waiting */
                (void)ignored;
                close(fd);
                break;
            }
        }
    }

    /* os.fork()'s Python side in the child only (PyOS_AfterFork_Child: the interpreter's threads and
       locks, at-fork hooks, the random reseed). Not PyOS_BeforeFork / AfterFork_Parent: their work
       is for other threads (logging's lock held across the fork; the import lock, which serve()
       holds for the whole loop instead), and the template has none, while running their Python
       hooks on every request wrote pages that then stayed private to every runner kept meanwhile
       (0.03-0.08 MiB each, alternated at 100 Instances). */
    static pid_t warm_python_fork(int use_clone3, warm_clone_args *args) {
        pid_t pid;
    #ifdef SYS_clone3
        if (use_clone3) pid = (pid_t)syscall(SYS_clone3, args, sizeof *args);
        else
    #endif
        pid = fork();
        int saved = errno;
        if (pid == 0) PyOS_AfterFork_Child();
        errno = saved;
        return pid;
    }

    /* os.fork(), or born in the cgroup directory when it is given and the kernel allows it (as
       warm_template.fork_into does); *in_cgroup says which. */
    static pid_t warm_fork_into(const char *cgroup, int *in_cgroup) {
        *in_cgroup = 0;
    #ifdef SYS_clone3
        if (cgroup[0] && warm_clone3_works) {
            int dirfd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dirfd >= 0) {
                warm_clone_args args;
                memset(&args, 0, sizeof args);
                args.flags = WARM_CLONE_INTO_CGROUP;
                args.exit_signal = SIGCHLD;
                args.cgroup = (uint64_t)dirfd;
                pid_t pid = warm_python_fork(1, &args);
                int saved = errno;
                close(dirfd);  /* in both: the child must not keep it */
                if (pid >= 0) {
                    *in_cgroup = 1;
                    return pid;
                }
                errno = saved;
                warm_clone3_works = 0;  /* ENOSYS, EPERM, a v1-only cgroup: fork, and the host moves it */
            }
        }
    #endif
        return warm_python_fork(0, NULL);
    }

    static void warm_refuse(char *reason, size_t room, const char *text) {
        snprintf(reason, room, "%s", text);
    }

    /* One request: WARM_CHILD in a new child, WARM_REFUSED with a reason, -1 when served. */
    static int warm_request(int control, char *buffer, size_t size_max, int max_fds, int *fds, int *nfds,
                            size_t *size, size_t *cut, char *reason, size_t room) {
        char control_data[CMSG_SPACE(8 * sizeof(int))];
        struct iovec iov = { buffer, size_max };
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control_data;
        msg.msg_controllen = CMSG_LEN(max_fds * sizeof(int));
        ssize_t got = recvmsg(control, &msg, 0);
        if (got <= 0) return got < 0 && errno == EINTR ? -1 : WARM_CLOSED;
        *size = (size_t)got;
        *nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < n && *nfds < 8; i++) memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
            snprintf(reason, room, "ValueError: a fork request is at most %zu bytes and %d fds", size_max, max_fds);
            return WARM_REFUSED;
        }
        if (*nfds != 4) {
            snprintf(reason, room, "ValueError: expected 4 fds (connection, stdout, stderr, status), got %d", *nfds);
            return WARM_REFUSED;
        }
        char *nul = memchr(buffer, 0, *size);
        if (nul == NULL) {
            warm_refuse(reason, room, "ValueError: a fork request starts with the cgroup directory (or nothing) and a NUL byte");
            return WARM_REFUSED;
        }
        *cut = (size_t)(nul - buffer);
        int in_cgroup;
        pid_t pid = warm_fork_into(buffer, &in_cgroup);
        if (pid == 0) {
            sigprocmask(SIG_SETMASK, &warm_old_mask, NULL);  /* a runner starts with the mask a cold one has */
            return WARM_CHILD;
        }
        if (pid < 0 || warm_remember(pid, fds[3]) != 0) {
            snprintf(reason, room, "OSError: [Errno %d] %s", errno, strerror(errno));
            if (pid > 0) kill(pid, SIGKILL);  /* no room to remember it: it never runs */
            return WARM_REFUSED;
        }
        for (int i = 0; i < 3; i++) close(fds[i]);  /* the status socket (last) stays: it reports the exit */
        memset(buffer, 0, *size);  /* no instance's token (in its environment) stays here */
        char reply[64];
        int length = snprintf(reply, sizeof reply, "{\\"pid\\": %d, \\"in_cgroup\\": %s}", (int)pid,
                              in_cgroup ? "true" : "false");
        send(control, reply, (size_t)length, MSG_NOSIGNAL);
        return -1;
    }

    /* Serves requests until one needs Python: WARM_CHILD (in the new child), WARM_REFUSED (fds
       received, reason set), WARM_CLOSED (the host is gone). */
    static int warm_serve(int control, char *buffer, size_t size_max, int max_fds, int *fds, int *nfds,
                          size_t *size, size_t *cut, char *reason, size_t room) {
        for (;;) {
            struct pollfd polled[2] = { { control, POLLIN, 0 }, { warm_sigfd, POLLIN, 0 } };
            if (poll(polled, 2, -1) < 0) {
                if (errno == EINTR) continue;
                return WARM_CLOSED;
            }
            if (polled[1].revents) warm_reap();
            if (polled[0].revents) {
                int outcome = warm_request(control, buffer, size_max, max_fds, fds, nfds, size, cut, reason, room);
                if (outcome >= 0) return outcome;
            }
        }
    }
    """
    int WARM_CLOSED, WARM_CHILD, WARM_REFUSED
    int warm_setup()
    int warm_serve(int control, char *buffer, size_t size_max, int max_fds, int *fds, int *nfds,
                   size_t *size, size_t *cut, char *reason, size_t room)


def setup():
    """Block SIGCHLD and read it from a signalfd from now on (call once, before the first fork)."""
    if warm_setup() < 0:
        raise OSError("cannot block SIGCHLD and open a signalfd for it")


def serve(int control, object buffer, int max_fds):
    """Serve fork requests until one needs Python. Returns ("child", size, cut, fds) in a new child
    (it runs the request in ``buffer[cut + 1:size]``), ("refused", size, reason, fds) for a request
    the template answers from Python, or ("closed",) when the host is gone."""
    cdef Py_buffer view
    cdef int fds[8]
    cdef int nfds = 0
    cdef size_t size = 0, cut = 0
    cdef char reason[256]
    reason[0] = 0
    # the buffer protocol itself, not a typed memoryview: Cython's memoryview types register
    # with the collections ABCs on import, which empties every ABC's negative cache
    PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
    # Held across every fork, as os.fork() holds it (PyOS_BeforeFork): from 3.13 on the child's
    # PyOS_AfterFork_Child releases it, and aborts the child when it is not held ("unlocking a
    # recursive mutex that is not owned by the current thread"); 3.10-3.12 make it anew there.
    # Taken once for the whole loop, not per fork: no page of the template is written per fork.
    _imp.acquire_lock()
    try:
        outcome = warm_serve(control, <char *>view.buf, <size_t>view.len, max_fds, fds, &nfds, &size, &cut,
                             reason, sizeof(reason))
    finally:
        PyBuffer_Release(&view)
    if outcome != WARM_CHILD:  # a child's was released (or made anew) by PyOS_AfterFork_Child
        _imp.release_lock()
    received = [fds[i] for i in range(nfds)]
    if outcome == WARM_CHILD:
        return ("child", size, cut, received)
    if outcome == WARM_REFUSED:
        return ("refused", size, reason.decode("utf-8", "replace"), received)
    return ("closed",)
