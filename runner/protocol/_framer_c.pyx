# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled twin of runner/protocol/_framer_py.py, built as ``runner.protocol._framer_c``.

Same names, arguments, tuples, attributes, exception classes and messages as the
pure-Python framer (that file is the spec; tests/parity checks both agree byte for
byte and error for error). What differs is only how the work is done:

* headers are read with C pointer loads from one buffer acquired per ``decode()``
  call, never through ``struct`` or per-byte Python objects;
* payloads of frames lying whole inside one ``decode()`` argument are memoryview
  slices of it (zero copy), made without slice or int objects (see _subview);
* on Python < 3.12 the cyclic GC is paused around the C loop (3.12+ never collects
  inside it), and frame tuples are untracked when that is provably safe: per-frame
  object churn, not parsing, is what a small frame costs;
* protocol errors are recorded as C codes in the loop and turned into exceptions
  after it, so no Python code runs while the GC is paused;
* a frame cut by the end of a chunk keeps its header in a 10-byte C array and its
  payload in one bytes object allocated at its final size, so the bytes are copied
  once and memory held stays bounded by max_frame_size + 10;
* the encoder coalesces small frames in a C buffer that grows geometrically.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check
from cpython.memoryview cimport PyMemoryView_FromObject
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from runner.protocol.constants import (
    DATA_CHANNELS,
    DEFAULT_MAX_FRAME_SIZE,
    MAX_MAX_FRAME_SIZE,
    MESSAGE_CHANNELS,
)
from runner.protocol.errors import (
    FrameTooLarge,
    LocalProtocolError,
    MalformedFrame,
    ProtocolError,
    UnknownChannel,
)

KIND_DATA = 0
KIND_CREDIT = 1
KIND_END = 2
KIND_MESSAGE = 3
#: Payloads at least this long are not copied into the coalescing buffer; they are
#: handed to writev/sendmsg as their own buffer.
COPY_THRESHOLD = 16384

cdef enum:
    DATA_HEADER = 7
    MESSAGE_HEADER = 10
    C_COPY_THRESHOLD = 16384
    KIND_UNKNOWN_CH = 0
    KIND_DATA_CH = 1
    KIND_MESSAGE_CH = 2
    # An encoder buffer grown beyond this by one big message is freed at take().
    KEEP_BUFFER_MAX = 1 << 20

cdef enum:
    ERR_NONE = 0
    ERR_BAD_LEAD
    ERR_BAD_TYPE
    ERR_BAD_MESSAGE_TYPES
    ERR_DATA_TOO_LARGE
    ERR_MESSAGE_TOO_LARGE
    ERR_NOT_DATA_CHANNEL
    ERR_NOT_MESSAGE_CHANNEL

# Channel table: 0 = unknown, 1 = data channel, 2 = message channel.
cdef unsigned char _CHANNEL_KIND[256]
for _ch in DATA_CHANNELS:
    _CHANNEL_KIND[<int>_ch] = KIND_DATA_CH
for _ch in MESSAGE_CHANNELS:
    _CHANNEL_KIND[<int>_ch] = KIND_MESSAGE_CH
del _ch


# 64-bit so that a length near 2**32 stays positive where Py_ssize_t is 32-bit.
cdef inline long long _be32(const unsigned char* p) noexcept nogil:
    return <long long>(
        (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]
    )


cdef extern from "Python.h":
    # Documented macro: the memoryview's own Py_buffer (shape lives in the object).
    Py_buffer* PyMemoryView_GET_BUFFER(object mview)
    void PyObject_GC_UnTrack(object op)

cdef extern from *:
    """
    /* Before 3.12 the cyclic GC runs inside allocations: one decode() building
       thousands of frame tuples and memoryviews would trigger collections that
       traverse them (and promote them) again and again. 3.12+ defers collection
       to the eval loop, which is what pausing it around the C loop does here. */
    #if PY_VERSION_HEX < 0x030C0000
    #define SR_PAUSE_GC() PyGC_Disable()
    #define SR_RESUME_GC(was) do { if (was) PyGC_Enable(); } while (0)
    #else
    #define SR_PAUSE_GC() 0
    #define SR_RESUME_GC(was) ((void)(was))
    #endif
    """
    int SR_PAUSE_GC() noexcept
    void SR_RESUME_GC(int was) noexcept


cdef inline object _subview(object base, Py_ssize_t start, Py_ssize_t n):
    """base[start:start + n] for a 1-D byte memoryview, without the slice and int objects.

    PyMemoryView_FromObject(memoryview) registers a new view on the same managed
    buffer (the exporter stays alive while it exists); narrowing its private
    Py_buffer is what memoryview's own slicing does (init_slice + init_len), and
    contiguity flags do not change for a step-1 slice of a contiguous view.
    """
    cdef object mv = PyMemoryView_FromObject(base)
    cdef Py_buffer* b = PyMemoryView_GET_BUFFER(mv)
    b.buf = <char*>b.buf + start
    b.len = n
    b.shape[0] = n
    return mv


cdef inline Py_ssize_t _header_size(unsigned char lead) noexcept nogil:
    if lead == 0x93:
        return MESSAGE_HEADER
    if lead == 0x92:
        return DATA_HEADER
    return 2


def _check_max(max_frame_size):
    max_frame_size = int(max_frame_size)
    if not 1 <= max_frame_size <= MAX_MAX_FRAME_SIZE:
        raise ValueError(f"max_frame_size must be between 1 and {MAX_MAX_FRAME_SIZE}, got {max_frame_size}")
    return max_frame_size


cdef class _PayloadWindow:
    """The unfilled end of a pending payload as a writable buffer (for ``recv_into``). It holds the
    payload object, so a view of it stays valid even if the decoder lets the payload go."""

    cdef object _owner
    cdef char* _start
    cdef Py_ssize_t _len

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self._start, self._len, 0, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass


cdef class FrameDecoder:
    """Turns a byte stream into frame tuples ``(kind, channel, number, payload)``.

    ``decode(data)`` returns every frame completed by ``data``. After a protocol
    error the decoder is dead: the error carries the frames decoded before it in
    that call (``err.frames``) and every later call raises the same error again.
    Memory held between calls is bounded by the frame header plus one payload of
    at most ``max_frame_size`` bytes.
    """

    cdef Py_ssize_t _max
    cdef public Py_ssize_t frames_decoded
    cdef object _error
    # Pending partial frame: its header bytes, then its payload being filled.
    cdef unsigned char _hdr[MESSAGE_HEADER]
    cdef Py_ssize_t _hdr_len
    cdef object _payload
    cdef Py_ssize_t _fill
    # The protocol error found by the C loop, turned into an exception afterwards.
    cdef int _err
    cdef long long _err_a
    cdef int _err_b
    cdef int _err_lead

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        self._max = _check_max(max_frame_size)
        self.frames_decoded = 0
        self._error = None
        self._err = ERR_NONE
        self._clear_pending()

    @property
    def max_frame_size(self):
        return self._max

    @max_frame_size.setter
    def max_frame_size(self, value):
        self._max = _check_max(value)

    @property
    def buffered(self):
        """Bytes held of a frame not complete yet."""
        return self._hdr_len + self._fill

    cdef inline void _clear_pending(self) noexcept:
        self._hdr_len = 0
        self._payload = None
        self._fill = 0

    def decode(self, data):
        if self._error is not None:
            raise type(self._error)(str(self._error))
        cdef list frames = []
        cdef Py_buffer pb
        cdef Py_ssize_t pos = 0
        cdef int gc_was_enabled
        cdef bint own_exporter
        # Frame tuples are untracked by the cyclic GC when their payload's exporter is
        # an exact bytes/bytearray: such a tuple can never be part of a reference cycle.
        if isinstance(data, (bytes, bytearray)):
            view = PyMemoryView_FromObject(data)
        else:
            view = memoryview(data).cast("B")
        own_exporter = type(view.obj) is bytes or type(view.obj) is bytearray
        PyObject_GetBuffer(view, &pb, PyBUF_SIMPLE)
        # Only C code runs between pause and resume (errors are built afterwards),
        # so no Python code, thread or signal handler can see the collector paused.
        gc_was_enabled = SR_PAUSE_GC()
        try:
            if self._hdr_len:
                pos = self._feed_pending(<const unsigned char*>pb.buf, pb.len, frames)
            if pos >= 0 and pos < pb.len:
                self._parse(view, own_exporter, <const unsigned char*>pb.buf, pos, pb.len, frames)
        finally:
            SR_RESUME_GC(gc_was_enabled)
            PyBuffer_Release(&pb)
        if self._err != ERR_NONE:
            self._raise_failed(frames)
        self.frames_decoded += len(frames)
        return frames

    cdef inline Py_ssize_t _fail(self, int code, long long a, int b, int lead) noexcept:
        self._err = code
        self._err_a = a
        self._err_b = b
        self._err_lead = lead
        return -1

    cdef object _raise_failed(self, list frames):
        """Raise the error the parse recorded, carrying the frames decoded before it; every later
        call raises it again (the pure twin's ``err.frames``)."""
        err = self._make_error()
        err.frames = frames
        self._error = err
        self._clear_pending()
        raise err

    cdef object _make_error(self):
        cdef int code = self._err
        if code == ERR_BAD_LEAD:
            return MalformedFrame(
                f"bad lead byte 0x{self._err_lead:02x}: a frame is a msgpack array of 1 to 3 elements"
            )
        if code == ERR_BAD_TYPE:
            return MalformedFrame(f"bad type byte 0x{self._err_b:02x} in a 2-element frame")
        if code == ERR_BAD_MESSAGE_TYPES:
            return MalformedFrame("bad type bytes in a message frame header")
        if code == ERR_DATA_TOO_LARGE:
            return FrameTooLarge(f"frame payload of {self._err_a} bytes exceeds max frame size {self._max}")
        if code == ERR_MESSAGE_TOO_LARGE:
            return FrameTooLarge(f"message body of {self._err_a} bytes exceeds max frame size {self._max}")
        ch = self._err_b
        if _CHANNEL_KIND[ch] == KIND_UNKNOWN_CH:
            return UnknownChannel(f"unknown channel {ch}")
        what = "message" if code == ERR_NOT_MESSAGE_CHANNEL else "data/credit/end"
        return MalformedFrame(
            f"{what} frame (lead byte 0x{self._err_lead:02x}) on channel {ch}, which does not carry them"
        )

    cdef inline Py_ssize_t _channel_fail(self, unsigned char ch, unsigned char want, unsigned char lead) noexcept:
        return self._fail(
            ERR_NOT_MESSAGE_CHANNEL if want == KIND_MESSAGE_CH else ERR_NOT_DATA_CHANNEL, 0, ch, lead
        )

    cdef Py_ssize_t _wanted(self, const unsigned char* b, Py_ssize_t n) noexcept:
        """Total bytes of the frame starting at b[0], or of its header if that is not whole yet.

        -1 (with the error recorded) if what is there already breaks protocol.
        """
        cdef unsigned char lead = b[0]
        cdef long long length
        # One order of checks for whole and cut headers (lead, channel, type bytes,
        # size), so the error does not depend on where a read happened to end.
        if lead != 0x91 and lead != 0x92 and lead != 0x93:
            return self._fail(ERR_BAD_LEAD, 0, 0, lead)
        if n < 2:
            return 2
        if lead == 0x93:
            if _CHANNEL_KIND[b[1]] != KIND_MESSAGE_CH:
                return self._channel_fail(b[1], KIND_MESSAGE_CH, lead)
        elif _CHANNEL_KIND[b[1]] != KIND_DATA_CH:
            return self._channel_fail(b[1], KIND_DATA_CH, lead)
        if lead == 0x91:
            return 2
        if n < 3:
            return 3
        if lead == 0x92:
            if b[2] == 0xCE:
                return DATA_HEADER
            if b[2] != 0xC6:
                return self._fail(ERR_BAD_TYPE, 0, b[2], lead)
            if n < DATA_HEADER:
                return DATA_HEADER
            length = _be32(b + 3)
            if length > self._max:
                return self._fail(ERR_DATA_TOO_LARGE, length, 0, lead)
            return DATA_HEADER + length
        if b[2] != 0xCD or (n >= 6 and b[5] != 0xC6):
            return self._fail(ERR_BAD_MESSAGE_TYPES, 0, 0, lead)
        if n < MESSAGE_HEADER:
            return MESSAGE_HEADER
        length = _be32(b + 6)
        if length > self._max:
            return self._fail(ERR_MESSAGE_TOO_LARGE, length, 0, lead)
        return MESSAGE_HEADER + length

    cdef int _parse(self, object view, bint own_exporter, const unsigned char* p, Py_ssize_t pos,
                    Py_ssize_t end, list frames) except -1:
        # The order of checks matches _framer_py._parse exactly, so that both twins
        # raise the same class for the same bytes.
        cdef Py_ssize_t max_size = self._max
        cdef long long n
        cdef Py_ssize_t stop
        cdef unsigned char lead, ch, t
        cdef tuple item
        while pos < end:
            lead = p[pos]
            if lead == 0x92 and end - pos >= DATA_HEADER:
                ch = p[pos + 1]
                t = p[pos + 2]
                n = _be32(p + pos + 3)
                if _CHANNEL_KIND[ch] != KIND_DATA_CH:
                    self._channel_fail(ch, KIND_DATA_CH, lead)
                    return 0
                if t == 0xC6:
                    if n > max_size:
                        self._fail(ERR_DATA_TOO_LARGE, n, 0, lead)
                        return 0
                    stop = pos + DATA_HEADER + n
                    if stop > end:
                        break
                    item = (0, ch, 0, _subview(view, pos + DATA_HEADER, n))
                    if own_exporter:
                        PyObject_GC_UnTrack(item)
                    frames.append(item)
                    pos = stop
                elif t == 0xCE:
                    item = (1, ch, n, None)
                    PyObject_GC_UnTrack(item)
                    frames.append(item)
                    pos += DATA_HEADER
                else:
                    self._fail(ERR_BAD_TYPE, 0, t, lead)
                    return 0
            elif lead == 0x91 and end - pos >= 2:
                ch = p[pos + 1]
                if _CHANNEL_KIND[ch] != KIND_DATA_CH:
                    self._channel_fail(ch, KIND_DATA_CH, lead)
                    return 0
                frames.append((2, ch, 0, None))
                pos += 2
            elif lead == 0x93 and end - pos >= MESSAGE_HEADER:
                ch = p[pos + 1]
                if _CHANNEL_KIND[ch] != KIND_MESSAGE_CH:
                    self._channel_fail(ch, KIND_MESSAGE_CH, lead)
                    return 0
                if p[pos + 2] != 0xCD or p[pos + 5] != 0xC6:
                    self._fail(ERR_BAD_MESSAGE_TYPES, 0, 0, lead)
                    return 0
                n = _be32(p + pos + 6)
                if n > max_size:
                    self._fail(ERR_MESSAGE_TOO_LARGE, n, 0, lead)
                    return 0
                stop = pos + MESSAGE_HEADER + n
                if stop > end:
                    break
                item = (3, ch, (p[pos + 3] << 8) | p[pos + 4], _subview(view, pos + MESSAGE_HEADER, n))
                if own_exporter:
                    PyObject_GC_UnTrack(item)
                frames.append(item)
                pos = stop
            elif lead == 0x91 or lead == 0x92 or lead == 0x93:
                break  # a header cut by the end of this chunk: checked by _keep_pending
            else:
                self._fail(ERR_BAD_LEAD, 0, 0, lead)
                return 0
        if pos < end:
            self._keep_pending(p + pos, end - pos)
        return 0

    def detach_payload(self, channel):
        """Hand the caller the DATA frame on ``channel`` held cut by the end of a chunk, once its
        header is whole: ``(head, rest)``, the payload bytes received so far and how many are still
        to come; the decoder forgets the frame and the caller takes the next ``rest`` bytes of the
        stream itself. None (and nothing changes) when no such frame is held."""
        if (self._error is not None or self._hdr_len < DATA_HEADER or self._hdr[0] != 0x92
                or self._hdr[2] != 0xC6 or self._hdr[1] != channel):
            return None
        cdef Py_ssize_t length = <Py_ssize_t>_be32(self._hdr + 3)
        cdef Py_ssize_t fill = self._fill
        payload = self._payload
        self._clear_pending()
        if payload is None or fill == 0:
            return memoryview(b""), length
        return _subview(PyMemoryView_FromObject(payload), 0, fill), length - fill

    def pending_view(self, Py_ssize_t at_least=1):
        """A writable view of the rest of the payload of the frame held cut by a read (its header
        whole), to ``recv_into`` without a copy; None when no such frame is held or fewer than
        ``at_least`` bytes of it are missing. Report what went in with ``pending_filled``."""
        if self._error is not None or self._hdr_len == 0:
            return None
        cdef Py_ssize_t header = _header_size(self._hdr[0])
        if self._hdr_len < header:
            return None
        cdef Py_ssize_t wanted = self._wanted(self._hdr, header)
        if wanted <= header or wanted - header - self._fill < at_least:
            return None
        if self._payload is None:
            self._payload = PyBytes_FromStringAndSize(NULL, wanted - header)
        window = _PayloadWindow()
        window._owner = self._payload
        window._start = PyBytes_AS_STRING(self._payload) + self._fill
        window._len = wanted - header - self._fill
        return memoryview(window)

    def pending_filled(self, Py_ssize_t n):
        """``n`` bytes were written at the start of the last ``pending_view``: the frames they
        complete (the held frame, once whole)."""
        cdef list frames = []
        if self._error is not None:
            raise type(self._error)(str(self._error))
        cdef Py_ssize_t header = _header_size(self._hdr[0]) if self._hdr_len else 0
        if self._payload is None or self._hdr_len < header or not 0 <= n <= PyBytes_GET_SIZE(self._payload) - self._fill:
            raise ValueError(f"{n} bytes do not fit the pending payload")
        self._fill += n
        if self._fill < PyBytes_GET_SIZE(self._payload):
            return frames
        if self._emit_pending(frames) != 0:
            self._raise_failed(frames)
        self.frames_decoded += len(frames)
        return frames

    cdef int _keep_pending(self, const unsigned char* p, Py_ssize_t n) except -1:
        """Holds the start of a frame cut by the end of a chunk, failing early on a bad header."""
        cdef Py_ssize_t wanted = self._wanted(p, n)
        cdef Py_ssize_t header = _header_size(p[0])
        if wanted < 0:
            return 0
        if n <= header:
            memcpy(self._hdr, p, n)
            self._hdr_len = n
            return 0
        # Allocated at its final size (<= max_frame_size) so it is filled by one copy per chunk.
        self._payload = PyBytes_FromStringAndSize(NULL, wanted - header)
        memcpy(self._hdr, p, header)
        self._hdr_len = header
        self._fill = n - header
        memcpy(PyBytes_AS_STRING(self._payload), p + header, self._fill)
        return 0

    cdef Py_ssize_t _feed_pending(self, const unsigned char* p, Py_ssize_t end, list frames) except -1:
        """Completes the pending frame from p; returns the bytes of p used, or -2 on a protocol error."""
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t header = _header_size(self._hdr[0])
        cdef Py_ssize_t wanted, missing, take
        while self._hdr_len < header:
            wanted = self._wanted(self._hdr, self._hdr_len)
            if wanted < 0:
                return -2
            missing = wanted - self._hdr_len
            take = missing if missing <= end - pos else end - pos
            memcpy(self._hdr + self._hdr_len, p + pos, take)
            self._hdr_len += take
            pos += take
            if take < missing:
                return pos
        wanted = self._wanted(self._hdr, header)
        if wanted < 0:
            return -2
        if wanted > header:
            if self._payload is None:
                if pos == end:
                    return pos
                self._payload = PyBytes_FromStringAndSize(NULL, wanted - header)
            missing = wanted - header - self._fill
            take = missing if missing <= end - pos else end - pos
            memcpy(PyBytes_AS_STRING(self._payload) + self._fill, p + pos, take)
            self._fill += take
            pos += take
            if take < missing:
                return pos
        return pos if self._emit_pending(frames) == 0 else -2

    cdef int _emit_pending(self, list frames) except -1:
        """Appends the completed pending frame; 1 if its channel is wrong (error recorded)."""
        cdef unsigned char lead = self._hdr[0]
        cdef unsigned char ch = self._hdr[1]
        cdef object payload = self._payload
        self._clear_pending()
        if lead == 0x93:
            if _CHANNEL_KIND[ch] != KIND_MESSAGE_CH:
                self._channel_fail(ch, KIND_MESSAGE_CH, lead)
                return 1
            frames.append((3, ch, (self._hdr[3] << 8) | self._hdr[4], memoryview(payload or b"")))
            return 0
        if _CHANNEL_KIND[ch] != KIND_DATA_CH:
            self._channel_fail(ch, KIND_DATA_CH, lead)
            return 1
        if lead == 0x91:
            frames.append((2, ch, 0, None))
        elif self._hdr[2] == 0xCE:
            frames.append((1, ch, _be32(self._hdr + 3), None))
        else:
            frames.append((0, ch, 0, memoryview(payload or b"")))
        return 0


cdef inline long long _as_int(object value) except? -2:
    """An integer argument as a C value; -1 (rejected by every caller) if it does not fit."""
    cdef int overflow = 0
    cdef long long v
    if not PyLong_Check(value):
        value = PyNumber_Index(value)  # TypeError for floats, str, None: not an integer
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    return -1 if overflow else v


cdef inline int _channel_arg(object channel, unsigned char want, str what) except -1:
    cdef long long ch = _as_int(channel)
    if ch < 0 or ch > 0x7F or _CHANNEL_KIND[ch] != want:
        raise LocalProtocolError(f"channel {channel} does not carry {what} frames")
    return <int>ch


cdef class FrameEncoder:
    """Builds frames into one coalesced output.

    Small frames are copied into one buffer; payloads of COPY_THRESHOLD bytes or
    more are kept as separate buffers. ``take()`` returns the buffers to write (for
    ``socket.sendmsg``/writev) in order and empties the encoder; ``take_bytes()``
    joins them. Payloads longer than ``max_frame_size`` are split into several DATA
    frames.
    """

    cdef Py_ssize_t _max
    cdef public Py_ssize_t pending
    cdef list _chunks
    cdef unsigned char* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap

    def __cinit__(self):
        self._buf = NULL
        self._len = 0
        self._cap = 0

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        self._max = _check_max(max_frame_size)
        self._chunks = []
        self._len = 0
        self.pending = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)

    @property
    def max_frame_size(self):
        return self._max

    @max_frame_size.setter
    def max_frame_size(self, value):
        self._max = _check_max(value)

    cdef unsigned char* _reserve(self, Py_ssize_t extra) except NULL:
        """Room for ``extra`` more bytes; returns where they go."""
        cdef Py_ssize_t need = self._len + extra
        cdef Py_ssize_t cap
        cdef unsigned char* grown
        if need > self._cap:
            cap = self._cap * 2 if self._cap else 4096
            if cap < need:
                cap = need
            grown = <unsigned char*>PyMem_Realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._cap = cap
        return self._buf + self._len

    cdef inline void _put_data_header(self, unsigned char* out, int channel, Py_ssize_t n) noexcept:
        out[0] = 0x92
        out[1] = <unsigned char>channel
        out[2] = 0xC6
        out[3] = <unsigned char>(n >> 24)
        out[4] = <unsigned char>(n >> 16)
        out[5] = <unsigned char>(n >> 8)
        out[6] = <unsigned char>n

    def data(self, channel, payload):
        cdef int ch = _channel_arg(channel, KIND_DATA_CH, "data")
        cdef Py_buffer pb
        cdef Py_ssize_t start, n
        if PyBytes_CheckExact(payload):  # the common case, without the buffer protocol
            n = PyBytes_GET_SIZE(payload)
            if n <= self._max:
                self._data_frame(ch, payload, <const unsigned char*>PyBytes_AS_STRING(payload), n)
                return
        PyObject_GetBuffer(payload, &pb, PyBUF_SIMPLE)
        try:
            n = pb.len
            if n <= self._max:
                self._data_frame(ch, payload, <const unsigned char*>pb.buf, n)
                return
            view = memoryview(payload).cast("B")
            for start in range(0, n, self._max):
                part = view[start:start + self._max]
                self._data_frame(ch, part, <const unsigned char*>pb.buf + start, len(part))
        finally:
            PyBuffer_Release(&pb)

    cdef int _data_frame(self, int channel, object payload, const unsigned char* p, Py_ssize_t n) except -1:
        cdef unsigned char* out
        if n >= C_COPY_THRESHOLD:
            out = self._reserve(DATA_HEADER)
            self._put_data_header(out, channel, n)
            self._len += DATA_HEADER
            self._chunks.append(PyBytes_FromStringAndSize(<char*>self._buf, self._len))
            self._chunks.append(payload)
            self._len = 0
        else:
            out = self._reserve(DATA_HEADER + n)
            self._put_data_header(out, channel, n)
            memcpy(out + DATA_HEADER, p, n)
            self._len += DATA_HEADER + n
        self.pending += DATA_HEADER + n
        return 0

    def data_header(self, channel, n):
        """Queue the header of a DATA frame of ``n`` payload bytes without its payload: the caller
        writes those ``n`` bytes itself right after the buffers ``take()`` returns next and before
        anything queued later."""
        cdef int ch = _channel_arg(channel, KIND_DATA_CH, "data")
        cdef long long size = _as_int(n)
        if not 0 < size <= self._max:
            raise LocalProtocolError(f"a data frame carries 1..{self._max} bytes, not {n}")
        cdef unsigned char* out = self._reserve(DATA_HEADER)
        self._put_data_header(out, ch, <Py_ssize_t>size)
        self._len += DATA_HEADER
        self.pending += DATA_HEADER

    def credit(self, channel, increment):
        cdef int ch = _channel_arg(channel, KIND_DATA_CH, "credit")
        cdef long long n = _as_int(increment)
        if not 0 < n <= 0xFFFFFFFF:
            raise LocalProtocolError(f"credit increment must be 1..2**32-1, got {increment}")
        cdef unsigned char* out = self._reserve(DATA_HEADER)
        out[0] = 0x92
        out[1] = <unsigned char>ch
        out[2] = 0xCE
        out[3] = <unsigned char>(n >> 24)
        out[4] = <unsigned char>(n >> 16)
        out[5] = <unsigned char>(n >> 8)
        out[6] = <unsigned char>n
        self._len += DATA_HEADER
        self.pending += DATA_HEADER

    def end(self, channel):
        cdef int ch = _channel_arg(channel, KIND_DATA_CH, "end")
        cdef unsigned char* out = self._reserve(2)
        out[0] = 0x91
        out[1] = <unsigned char>ch
        self._len += 2
        self.pending += 2

    def message(self, channel, code, body):
        cdef int ch = _channel_arg(channel, KIND_MESSAGE_CH, "message")
        cdef long long c = _as_int(code)
        if not 0 <= c <= 0xFFFF:
            raise LocalProtocolError(f"message code must be 0..65535, got {code}")
        cdef Py_buffer pb
        cdef Py_ssize_t n
        cdef unsigned char* out
        PyObject_GetBuffer(body, &pb, PyBUF_SIMPLE)
        try:
            n = pb.len
            if n > self._max:
                raise LocalProtocolError(f"message body of {n} bytes exceeds max frame size {self._max}")
            out = self._reserve(MESSAGE_HEADER + n)
            out[0] = 0x93
            out[1] = <unsigned char>ch
            out[2] = 0xCD
            out[3] = <unsigned char>(c >> 8)
            out[4] = <unsigned char>c
            out[5] = 0xC6
            out[6] = <unsigned char>(n >> 24)
            out[7] = <unsigned char>(n >> 16)
            out[8] = <unsigned char>(n >> 8)
            out[9] = <unsigned char>n
            memcpy(out + MESSAGE_HEADER, pb.buf, n)
            self._len += MESSAGE_HEADER + n
            self.pending += MESSAGE_HEADER + n
        finally:
            PyBuffer_Release(&pb)

    def take(self):
        cdef list chunks = self._chunks
        if self._len:
            chunks.append(PyBytes_FromStringAndSize(<char*>self._buf, self._len))
            self._len = 0
            if self._cap > KEEP_BUFFER_MAX:
                PyMem_Free(self._buf)
                self._buf = NULL
                self._cap = 0
        self._chunks = []
        self.pending = 0
        return chunks

    def take_bytes(self):
        cdef bytes out
        if not self._chunks:
            out = PyBytes_FromStringAndSize(<char*>self._buf, self._len) if self._len else b""
            self.take()
            return out
        return b"".join(self.take())
