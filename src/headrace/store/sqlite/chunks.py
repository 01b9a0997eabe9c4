"""The chunk codec: one run of samples of one (device, point), columnar and compact.

A chunk holds up to ``CHUNK_MAX`` samples sorted by time, each time once. Its row
(table ``chunks``, see ``schema``) keeps the first and last time, the count and, for
numeric chunks, min/max/sum/first/last, so that aggregates over whole chunks read the row
and decode nothing; the columns are:

- ``tsb`` times: NULL for one sample, ``b""`` when evenly spaced (t0 + k * step, the
  usual case of buffered history), else the deltas as int64;
- ``vb`` values by ``kind``: float64 (``KIND_FLOAT``), int64 (``KIND_INT``), one byte per
  bool (``KIND_BOOL``), or a msgpack list of anything else (strings, arrays, structs,
  mixed or null values; msgpack keeps int/float/bool/str apart, -0.0 and key order);
- ``qb`` qualities, msgpack list, NULL when no sample has one;
- ``sb`` sources, one byte each, NULL when every sample has the chunk's ``src``.

int64/float64 columns are byte-shuffled (byte i of every value together) and deflated
with a small window when that saves at least an eighth; measured on this machine: 100
regular doubles 800 -> 113 bytes. A one-byte header says which (``_RAW``/``_ZIP``). The
deflate stream of each column is complete on its own (any inflater reads it), but the
writer does not set up a compressor per column (~10 us each, the largest part of the
writer's time per chunk): one compressor per thread compresses every column and is reset
between them by a full flush (which forgets the history, so a column never refers to
another), the stream then closed by an empty final block (``_END``).
"""

from __future__ import annotations

import threading
import zlib
from array import array
from collections.abc import Sequence
from itertools import accumulate, pairwise
from operator import lt
from typing import Any

import msgspec

CHUNK_MAX = 1024
"""Most samples in one chunk (a longer run is split)."""

SMALL = 64
"""A chunk of fewer samples is merged with its small neighbours by ``compact``."""

KIND_FLOAT, KIND_INT, KIND_BOOL, KIND_PACK = 1, 2, 3, 4
NUMERIC_KINDS = (KIND_FLOAT, KIND_INT, KIND_BOOL)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_RAW, _ZIP = b"\x00", b"\x01"
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode

ChunkRow = tuple[int, int, int, int, int, int, int, Any, Any, Any, Any, Any, Any, bytes, Any, Any]
"""(device, point, t1, t0, n, kind, src, vmin, vmax, vsum, vfirst, vlast, tsb, vb, qb, sb)"""

COLUMNS = "device, point, t1, t0, n, kind, src, vmin, vmax, vsum, vfirst, vlast, tsb, vb, qb, sb"
DATA_COLUMNS = "t1, t0, n, kind, src, tsb, vb, qb, sb"
"""What ``decode`` needs, in its order."""


_END = b"\x03\x00"
"""A final, empty block of fixed codes: closes a stream left byte-aligned by a full flush."""
_local = threading.local()
_FULL_FLUSH = zlib.Z_FULL_FLUSH


def _compressor() -> Any:
    c = _local.__dict__.get("z")
    if c is None:
        c = _local.z = zlib.compressobj(1, zlib.DEFLATED, -10, 4)
    return c


def _deflate(raw: bytes) -> bytes:
    c = _compressor()
    try:
        z = c.compress(raw) + c.flush(_FULL_FLUSH) + _END
    except BaseException:  # its state is unknown now: the next column gets a new one
        _local.z = None
        raise
    return _ZIP + z if len(z) < len(raw) - (len(raw) >> 3) else _RAW + raw


def _inflate(b: bytes) -> bytes:
    return zlib.decompress(b[1:], -10) if b[:1] == _ZIP else b[1:]


def _shuffled(a: array[Any]) -> bytes:
    raw = a.tobytes()
    w = a.itemsize
    return _deflate(b"".join([raw[i::w] for i in range(w)]))


def _unshuffled(b: bytes, typecode: str) -> list[Any]:
    data = _inflate(b)
    w = 8
    n = len(data) // w
    raw = bytearray(len(data))
    for i in range(w):
        raw[i::w] = data[i * n : (i + 1) * n]
    return array(typecode, raw).tolist()


def normalize(
    ts: Sequence[int], vs: Sequence[Any], qs: Sequence[Any]
) -> tuple[Sequence[int], Sequence[Any], Sequence[Any]]:
    """Sort by time, keeping the last of equal times (a later value replaces an earlier)."""
    if all(map(lt, ts, ts[1:])):
        return ts, vs, qs
    last: dict[int, int] = {}
    for i, t in enumerate(ts):
        last[t] = i
    order = sorted(last)
    idx = [last[t] for t in order]
    return order, [vs[i] for i in idx], [qs[i] for i in idx]


_KINDS = {float: KIND_FLOAT, int: KIND_INT, bool: KIND_BOOL}


def _kind(vs: Sequence[Any]) -> int:
    types = set(map(type, vs))  # in C: no Python per value
    if len(types) != 1:
        return KIND_PACK
    return _KINDS.get(types.pop(), KIND_PACK)


def _times(ts: Sequence[int]) -> bytes | None:
    n = len(ts)
    t0, t1 = ts[0], ts[-1]
    if n == 1:
        return None
    if (t1 - t0) % (n - 1) == 0:
        even = range(t0, t1 + 1, (t1 - t0) // (n - 1))
        if ts == (list(even) if type(ts) is list else tuple(even)):
            return b""
    return _shuffled(array("q", [b - a for a, b in pairwise(ts)]))


def encode(
    device: int,
    point: int,
    ts: Sequence[int],
    vs: Sequence[Any],
    qs: Sequence[Any],
    srcs: Sequence[int] | int,
) -> ChunkRow:
    """One chunk row from sorted, distinct times (at most ``CHUNK_MAX``)."""
    n = len(ts)
    t0, t1 = ts[0], ts[-1]
    # the points of a stretch of records share one list of times: encoded once (the
    # length and ends checked too, in case a caller reused the list)
    last = _local.__dict__.get("times")
    if last is not None and last[0] is ts and last[1] == (n, t0, t1):
        tsb = last[2]
    else:
        tsb = _times(ts)
        _local.times = (ts, (n, t0, t1), tsb)
    kind = _kind(vs)
    vmin = vmax = vsum = vfirst = vlast = None
    if kind == KIND_FLOAT:
        vb = _shuffled(array("d", vs))
    elif kind == KIND_INT:
        try:
            vb = _shuffled(array("q", vs))
        except OverflowError:  # beyond int64: msgpack takes up to uint64
            kind = KIND_PACK
    elif kind == KIND_BOOL:
        vb = bytes(vs)
    if kind == KIND_PACK:
        vb = _pack(vs)
    else:
        vmin, vmax, vfirst, vlast = min(vs), max(vs), vs[0], vs[-1]
        vsum = sum(vs)
        if kind != KIND_FLOAT:
            vmin, vmax, vfirst, vlast = int(vmin), int(vmax), int(vfirst), int(vlast)
            if not INT64_MIN <= vsum <= INT64_MAX:
                vsum = None  # SQLite holds int64: aggregates decode this chunk instead
    qb = None if qs.count(None) == n else _pack(qs)
    if isinstance(srcs, int):
        src, sb = srcs, None
    else:
        src = srcs[0]
        sb = None if srcs.count(src) == n else bytes(srcs)
    return (device, point, t1, t0, n, kind, src, vmin, vmax, vsum, vfirst, vlast, tsb, vb, qb, sb)


def encode_run(
    device: int,
    point: int,
    ts: Sequence[int],
    vs: Sequence[Any],
    qs: Sequence[Any],
    srcs: Sequence[int] | int,
) -> list[ChunkRow]:
    """Chunk rows of one sorted run, split every ``CHUNK_MAX`` samples."""
    if len(ts) <= CHUNK_MAX:
        return [encode(device, point, ts, vs, qs, srcs)]
    out = []
    for i in range(0, len(ts), CHUNK_MAX):
        j = i + CHUNK_MAX
        s = srcs if isinstance(srcs, int) else srcs[i:j]
        out.append(encode(device, point, ts[i:j], vs[i:j], qs[i:j], s))
    return out


def decode_times(t0: int, t1: int, n: int, tsb: bytes | None) -> list[int]:
    if tsb is None:
        return [t0]
    if not tsb:
        return list(range(t0, t1 + 1, (t1 - t0) // (n - 1)))
    return list(accumulate(_unshuffled(tsb, "q"), initial=t0))


def decode_values(kind: int, vb: bytes) -> list[Any]:
    if kind == KIND_FLOAT:
        return _unshuffled(vb, "d")
    if kind == KIND_INT:
        return _unshuffled(vb, "q")
    if kind == KIND_BOOL:
        return [b == 1 for b in vb]
    out: list[Any] = _unpack(vb)
    return out


def decode(
    row: tuple[Any, ...],
) -> tuple[list[int], list[Any], list[Any], list[int]]:
    """(times, values, qualities, sources) of a row of ``DATA_COLUMNS``."""
    t1, t0, n, kind, src, tsb, vb, qb, sb = row
    ts = decode_times(t0, t1, n, tsb)
    vs = decode_values(kind, vb)
    qs: list[Any] = [None] * n if qb is None else _unpack(qb)
    srcs = [src] * n if sb is None else list(sb)
    return ts, vs, qs, srcs
