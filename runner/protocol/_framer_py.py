"""Pure-Python frame encoder and decoder of protocol v1 (twin of _framer_c.pyx).

Every frame is one msgpack array with a fixed layout (docs/protocol.md, "Frames"):

    END      [ch]                   91 ch
    DATA     [ch, bin32 payload]    92 ch c6 <u32 len> payload
    CREDIT   [ch, uint32 n]         92 ch ce <u32 n>
    MESSAGE  [ch, code, bin32 body] 93 ch cd <u16 code> c6 <u32 len> body

so the decoder reads fixed headers and never builds msgpack objects. Payloads of
frames that lie whole inside one ``decode()`` argument are handed over as
memoryview slices of it, without a copy.
"""

from __future__ import annotations

from struct import Struct

TYPE_CHECKING = False  # typing is not imported before PING (runner/hello.py): it costs ~5 ms
if TYPE_CHECKING:
    from typing import Any, TypeAlias

from .constants import DATA_CHANNELS, DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE, MESSAGE_CHANNELS
from .errors import FrameTooLarge, LocalProtocolError, MalformedFrame, RemoteProtocolError, UnknownChannel

Buffer = bytes | bytearray | memoryview
if TYPE_CHECKING:
    Frame: TypeAlias = tuple[int, int, int, Any]  # (kind, channel, number, payload)

KIND_DATA = 0
KIND_CREDIT = 1
KIND_END = 2
KIND_MESSAGE = 3

_HDR2 = Struct(">BBBI")  # 92 ch c6|ce u32
_HDR3 = Struct(">BBBHBI")  # 93 ch cd u16 c6 u32
_U32 = Struct(">I")
_DATA_HEADER = 7
_MESSAGE_HEADER = 10
#: Payloads at least this long are not copied into the coalescing buffer; they are
#: handed to writev/sendmsg as their own buffer.
COPY_THRESHOLD = 16384

# Channel table: 0 = unknown, 1 = data channel, 2 = message channel.
_kinds = bytearray(256)
for _ch in DATA_CHANNELS:
    _kinds[_ch] = 1
for _ch in MESSAGE_CHANNELS:
    _kinds[_ch] = 2
_CHANNEL_KIND = bytes(_kinds)
del _kinds


def _check_max(max_frame_size: int) -> int:
    max_frame_size = int(max_frame_size)
    if not 1 <= max_frame_size <= MAX_MAX_FRAME_SIZE:
        raise ValueError(f"max_frame_size must be between 1 and {MAX_MAX_FRAME_SIZE}, got {max_frame_size}")
    return max_frame_size


def _channel_error(ch: int, want: int, lead: int) -> RemoteProtocolError:
    if _CHANNEL_KIND[ch] == 0:
        return UnknownChannel(f"unknown channel {ch}")
    what = "message" if want == 2 else "data/credit/end"
    return MalformedFrame(f"{what} frame (lead byte 0x{lead:02x}) on channel {ch}, which does not carry them")


class FrameDecoder:
    """Turns a byte stream into frame tuples ``(kind, channel, number, payload)``.

    ``decode(data)`` returns every frame completed by ``data``. After a protocol
    error the decoder is dead: the error carries the frames decoded before it in
    that call (``err.frames``) and every later call raises the same error again.
    Memory held between calls is bounded by the frame header plus one payload of
    at most ``max_frame_size`` bytes.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = _check_max(max_frame_size)
        self._buf = bytearray()
        self._spare: bytearray | None = None  # what pending_view handed out
        self._error: RemoteProtocolError | None = None
        self.frames_decoded = 0

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not complete yet."""
        return len(self._buf)

    def decode(self, data: Buffer) -> list[Frame]:
        if self._error is not None:
            raise type(self._error)(str(self._error))
        frames: list[Frame] = []
        try:
            view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
            pos = 0
            if self._buf:
                pos = self._complete_pending(view, frames)
            if pos < len(view):
                self._parse(view, pos, frames)
        except RemoteProtocolError as err:
            err.frames = frames
            self._error = err
            self._buf = bytearray()
            raise
        self.frames_decoded += len(frames)
        return frames

    def _wanted(self, b: Buffer, n: int) -> int:
        """Total bytes of the frame starting at b[0], or of its header if that is not whole yet.

        One order of checks for whole and cut headers (lead, channel, type bytes,
        size), so the error does not depend on where a read happened to end.
        """
        lead = b[0]
        if lead not in (0x91, 0x92, 0x93):
            raise MalformedFrame(f"bad lead byte 0x{lead:02x}: a frame is a msgpack array of 1 to 3 elements")
        if n < 2:
            return 2
        want = 2 if lead == 0x93 else 1
        if _CHANNEL_KIND[b[1]] != want:
            raise _channel_error(b[1], want, lead)
        if lead == 0x91:
            return 2
        if n < 3:
            return 3
        if lead == 0x92:
            t = b[2]
            if t == 0xCE:
                return _DATA_HEADER
            if t != 0xC6:
                raise MalformedFrame(f"bad type byte 0x{t:02x} in a 2-element frame")
            if n < _DATA_HEADER:
                return _DATA_HEADER
            length = _U32.unpack_from(b, 3)[0]
            if length > self.max_frame_size:
                raise FrameTooLarge(f"frame payload of {length} bytes exceeds max frame size {self.max_frame_size}")
            return _DATA_HEADER + int(length)
        if b[2] != 0xCD or (n >= 6 and b[5] != 0xC6):
            raise MalformedFrame("bad type bytes in a message frame header")
        if n < _MESSAGE_HEADER:
            return _MESSAGE_HEADER
        length = _U32.unpack_from(b, 6)[0]
        if length > self.max_frame_size:
            raise FrameTooLarge(f"message body of {length} bytes exceeds max frame size {self.max_frame_size}")
        return _MESSAGE_HEADER + int(length)

    def detach_payload(self, channel: int) -> tuple[memoryview, int] | None:
        """Hand the caller the DATA frame on ``channel`` that this decoder holds cut by the end of a
        chunk, once its header is whole: ``(head, rest)``, the payload bytes received so far and how
        many are still to come. The decoder forgets the frame; the caller takes the next ``rest``
        bytes of the stream itself (``os.splice`` them to a file, say) and decodes from the next
        frame on. None (and nothing changes) when no such frame is held."""
        buf = self._buf
        if self._error is not None or len(buf) < _DATA_HEADER or buf[0] != 0x92 or buf[2] != 0xC6 or buf[1] != channel:
            return None
        length = _U32.unpack_from(buf, 3)[0]
        head = bytes(buf[_DATA_HEADER:])
        self._buf = bytearray()
        return memoryview(head), length - len(head)

    def pending_view(self, at_least: int = 1) -> memoryview | None:
        """A writable view of the rest of the payload of the frame held cut by a read (its header
        whole), to ``recv_into`` without a copy; None when no such frame is held or fewer than
        ``at_least`` bytes of it are missing. Report what went in with ``pending_filled``."""
        buf = self._buf
        if self._error is not None or not buf:
            return None
        header = _MESSAGE_HEADER if buf[0] == 0x93 else _DATA_HEADER if buf[0] == 0x92 else 2
        if len(buf) < header:
            return None
        wanted = self._wanted(buf, len(buf))
        if wanted <= header or wanted - len(buf) < at_least:
            return None
        self._spare = bytearray(wanted - len(buf))
        return memoryview(self._spare)

    def pending_filled(self, n: int) -> list[Frame]:
        """``n`` bytes were written at the start of the last ``pending_view``: the frames they
        complete (the held frame, once whole)."""
        if self._error is not None:
            raise type(self._error)(str(self._error))
        spare = self._spare
        if spare is None or not 0 <= n <= len(spare):
            raise ValueError(f"{n} bytes do not fit the pending payload")
        self._spare = None
        return self.decode(bytes(spare[:n])) if n else []

    def _complete_pending(self, view: memoryview, frames: list[Frame]) -> int:
        buf = self._buf
        pos = 0
        end = len(view)
        while True:
            wanted = self._wanted(buf, len(buf))
            missing = wanted - len(buf)
            if missing > 0:
                take = min(missing, end - pos)
                buf += view[pos : pos + take]
                pos += take
                if take < missing:
                    return pos
                continue
            # buf holds exactly one whole frame (wanted() grows only to the frame size).
            whole = bytes(buf)
            self._buf = bytearray()
            self._parse(memoryview(whole), 0, frames)
            return pos

    def _parse(self, view: memoryview, pos: int, frames: list[Frame]) -> None:
        end = len(view)
        max_size = self.max_frame_size
        kinds = _CHANNEL_KIND
        append = frames.append
        while pos < end:
            lead = view[pos]
            if lead == 0x92 and end - pos >= _DATA_HEADER:
                _, ch, t, n = _HDR2.unpack_from(view, pos)
                if ch > 0x7F or kinds[ch] != 1:
                    raise _channel_error(ch, 1, lead)
                if t == 0xC6:
                    if n > max_size:
                        raise FrameTooLarge(f"frame payload of {n} bytes exceeds max frame size {max_size}")
                    stop = pos + _DATA_HEADER + n
                    if stop > end:
                        break
                    append((KIND_DATA, ch, 0, view[pos + _DATA_HEADER : stop]))
                    pos = stop
                elif t == 0xCE:
                    append((KIND_CREDIT, ch, n, None))
                    pos += _DATA_HEADER
                else:
                    raise MalformedFrame(f"bad type byte 0x{t:02x} in a 2-element frame")
            elif lead == 0x91 and end - pos >= 2:
                ch = view[pos + 1]
                if ch > 0x7F or kinds[ch] != 1:
                    raise _channel_error(ch, 1, lead)
                append((KIND_END, ch, 0, None))
                pos += 2
            elif lead == 0x93 and end - pos >= _MESSAGE_HEADER:
                stop = self._message(view, pos, end, frames)  # a method: messages are rare, data is not
                if stop < 0:
                    break
                pos = stop
            elif lead in (0x91, 0x92, 0x93):
                # A header cut by the end of this chunk: validate what we have.
                self._wanted(view[pos:], end - pos)
                break
            else:
                raise MalformedFrame(
                    f"bad lead byte 0x{lead:02x}: a frame is a msgpack array of 1 to 3 elements"
                )
        if pos < end:
            rest = view[pos:]
            self._wanted(rest, len(rest))  # raises early on an oversized or bad header
            self._buf = bytearray(rest)

    def _message(self, view: memoryview, pos: int, end: int, frames: list[Frame]) -> int:
        """Append the MESSAGE frame whose whole header is at ``pos``; its end, or -1 if the body is cut."""
        _, ch, tc, code, tb, n = _HDR3.unpack_from(view, pos)
        if _CHANNEL_KIND[ch] != 2:
            raise _channel_error(ch, 2, 0x93)
        if tc != 0xCD or tb != 0xC6:
            raise MalformedFrame("bad type bytes in a message frame header")
        if n > self.max_frame_size:
            raise FrameTooLarge(f"message body of {n} bytes exceeds max frame size {self.max_frame_size}")
        stop: int = pos + _MESSAGE_HEADER + n
        if stop > end:
            return -1
        frames.append((KIND_MESSAGE, ch, code, view[pos + _MESSAGE_HEADER : stop]))
        return stop


class FrameEncoder:
    """Builds frames into one coalesced output.

    Small frames are copied into one bytearray; payloads of COPY_THRESHOLD bytes or
    more are kept as separate buffers. ``take()`` returns the buffers to write (for
    ``socket.sendmsg``/writev) in order and empties the encoder; ``take_bytes()``
    joins them. Payloads longer than ``max_frame_size`` are split into several DATA
    frames.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = _check_max(max_frame_size)
        self._chunks: list[Any] = []
        self._buf = bytearray()
        self.pending = 0

    def data(self, channel: int, payload: Buffer) -> None:
        if not 0 <= channel <= 0x7F or _CHANNEL_KIND[channel] != 1:
            raise LocalProtocolError(f"channel {channel} does not carry data frames")
        # Bytes, not len(): an array('H') has 2 bytes per item. memoryview() also
        # rejects a non-buffer before anything is written to the output.
        n = memoryview(payload).nbytes
        max_size = self.max_frame_size
        if n <= max_size:
            self._data_frame(channel, payload, n)
            return
        view = memoryview(payload).cast("B")
        for start in range(0, n, max_size):
            part = view[start : start + max_size]
            self._data_frame(channel, part, len(part))

    def _data_frame(self, channel: int, payload: Buffer, n: int) -> None:
        buf = self._buf
        buf += _HDR2.pack(0x92, channel, 0xC6, n)
        if n >= COPY_THRESHOLD:
            self._chunks.append(bytes(buf))
            self._chunks.append(payload)
            self._buf = bytearray()
        else:
            buf += payload
        self.pending += _DATA_HEADER + n

    def data_header(self, channel: int, n: int) -> None:
        """Queue the header of a DATA frame of ``n`` payload bytes without its payload: the caller
        writes those ``n`` bytes itself right after the buffers ``take()`` returns next (with
        ``os.sendfile``, say) and before anything queued later."""
        if not 0 <= channel <= 0x7F or _CHANNEL_KIND[channel] != 1:
            raise LocalProtocolError(f"channel {channel} does not carry data frames")
        if not 0 < n <= self.max_frame_size:
            raise LocalProtocolError(f"a data frame carries 1..{self.max_frame_size} bytes, not {n}")
        self._buf += _HDR2.pack(0x92, channel, 0xC6, n)
        self.pending += _DATA_HEADER

    def credit(self, channel: int, increment: int) -> None:
        if not 0 <= channel <= 0x7F or _CHANNEL_KIND[channel] != 1:
            raise LocalProtocolError(f"channel {channel} does not carry credit frames")
        if not 0 < increment <= 0xFFFFFFFF:
            raise LocalProtocolError(f"credit increment must be 1..2**32-1, got {increment}")
        self._buf += _HDR2.pack(0x92, channel, 0xCE, increment)
        self.pending += _DATA_HEADER

    def end(self, channel: int) -> None:
        if not 0 <= channel <= 0x7F or _CHANNEL_KIND[channel] != 1:
            raise LocalProtocolError(f"channel {channel} does not carry end frames")
        self._buf += bytes((0x91, channel))
        self.pending += 2

    def message(self, channel: int, code: int, body: Buffer) -> None:
        if not 0 <= channel <= 0x7F or _CHANNEL_KIND[channel] != 2:
            raise LocalProtocolError(f"channel {channel} does not carry message frames")
        if not 0 <= code <= 0xFFFF:
            raise LocalProtocolError(f"message code must be 0..65535, got {code}")
        n = memoryview(body).nbytes
        if n > self.max_frame_size:
            raise LocalProtocolError(f"message body of {n} bytes exceeds max frame size {self.max_frame_size}")
        self._buf += _HDR3.pack(0x93, channel, 0xCD, code, 0xC6, n)
        self._buf += body
        self.pending += _MESSAGE_HEADER + n

    def take(self) -> list[Any]:
        chunks = self._chunks
        if self._buf:
            chunks.append(bytes(self._buf))
            self._buf = bytearray()
        self._chunks = []
        self.pending = 0
        return chunks

    def take_bytes(self) -> bytes:
        return b"".join(self.take())
