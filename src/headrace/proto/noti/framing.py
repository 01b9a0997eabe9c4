"""Line framing for noti 1.0: one JSON object per line, each ending in ``\\n`` (docs/protocols.md C.1).

A line without its ``\\n`` is simply not complete yet. ``\\r\\n`` is tolerated and blank
lines are skipped. Every line has a length limit; a line over it is the peer's protocol
error, and the buffer never holds more than the limit plus one read.
"""

from __future__ import annotations

from headrace.proto.noti.messages import ErrorCode, NotiProtocolError

DEFAULT_MAX_LINE = 64 * 1024
"""Inbound line limit of the server (docs/protocols.md C.1), excluding the line ending."""

_LF = b"\n"
_CR = 0x0D


class LineTooLong(NotiProtocolError):
    """A line over the limit arrived. ``lines`` are the complete lines that preceded it
    in the same read; the caller should still handle them, in order."""

    def __init__(self, limit: int, lines: list[bytes] | None = None) -> None:
        super().__init__(f"line longer than {limit} bytes", error_code=ErrorCode.MALFORMED)
        self.limit = limit
        self.lines: list[bytes] = lines if lines is not None else []


class LineBuffer:
    """Splits a byte stream into lines of at most ``max_line`` bytes (without ``\\r\\n``).

    After one over-long line the buffer is spent: every later ``feed`` raises
    ``LineTooLong`` with no lines, because the stream cannot be resynchronised safely.
    """

    __slots__ = ("_buf", "_failed", "_scanned", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._buf = bytearray()
        # Bytes at the start of _buf already searched for "\n": byte-at-a-time feeding
        # stays linear instead of rescanning the partial line on every read.
        self._scanned = 0
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete line held."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        return self._failed

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the lines it completed, without their line endings."""
        if self._failed:
            raise LineTooLong(self.max_line)
        buf = self._buf
        buf += data
        limit = self.max_line
        lines: list[bytes] = []
        start = 0
        pos = self._scanned
        while True:
            nl = buf.find(_LF, pos)
            if nl < 0:
                break
            end = nl
            if end > start and buf[end - 1] == _CR:
                end -= 1
            if end - start > limit:
                self._fail()
                raise LineTooLong(limit, lines)
            if end > start:
                line = bytes(buf[start:end])
                if not line.isspace():
                    lines.append(line)
            start = pos = nl + 1
        if start:
            del buf[:start]
        rest = len(buf)
        self._scanned = rest
        # The partial line may still end in "\r" before its "\n", which does not count.
        if rest > limit and not (rest == limit + 1 and buf[-1] == _CR):
            self._fail()
            raise LineTooLong(limit, lines)
        return lines

    def _fail(self) -> None:
        self._failed = True
        self._buf = bytearray()
        self._scanned = 0
