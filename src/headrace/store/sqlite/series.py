"""The time series part of the SQLite store: samples in chunks (codec in ``chunks``).

Writes (in the writer thread, inside the batch's one transaction): the samples of a
request are grouped per (device, point), sorted, a later value of an equal time replacing
an earlier one, and written as one chunk row per run (split at ``CHUNK_MAX``). The
chunks of one (device, point) never overlap in time: a run that overlaps stored chunks
(a resend, backfilled history) is merged with them, the new value winning on equal times,
and the merged run replaces them. So a resend stores nothing twice, and reads never
merge. An append (the run starts after everything stored of that point, the usual case
of an import) costs no read: the writer keeps an upper bound of each point's last time.

Short runs (fewer than ``LIVE_RUN`` samples: live data, a sample per request and
point) skip the chunk codec: they go to the table ``live`` as plain rows, one upsert per
sample in one ``executemany`` per write, and the background ``fold`` moves them into
chunks per (device, point) once a point has ``FOLD_ROWS`` of them or its oldest is
``FOLD_AGE`` seconds old, each step (at most ``FOLD_STEP`` rows) one transaction that
writes the chunks and deletes the rows together. The invariant: a plain row is newer
than any chunk sample of the same time. A short write is always the newest; a chunk
write (a long run, or a fold) takes the plain rows of its range into the run first (the
run winning on equal times) and deletes them. So reads merge the two tables by time,
the plain row winning on an equal time; a resend of a plain row rewrites nothing (the
upsert's WHERE compares value, type, quality and source). The writer keeps, per
(device, point) with plain rows, an over-estimate of their time range and count and when
the first came (``_live``, rebuilt from the table at start and after a rollback), so a
chunk write of a point without plain rows costs no read of ``live``.

``latest`` keeps, per (device, point), the sample with the highest time ever stored; for
a point with plain rows it is the newer of its ``latest`` row and its newest plain row
(a point's first plain row since its last fold writes the ``latest`` row, the fold the
newest it moves: no upsert per plain row).

New chunk rows go to ``chunks_recent``, in arrival order (rowid) with an index by
(device, point, t1), and the background ``fold`` moves them into ``chunks_sorted`` (keyed
by (device, point, t1), WITHOUT ROWID) once there are ``SETTLE_ROWS`` of them, in key
order, each step (about ``SETTLE_STEP`` rows, a point's never split) one transaction.
Written straight into the keyed table, a commit dirtied a page per point it appended to
once the table was large (each point's newest chunks in a leaf of their own): the import
slowed as the store grew (``bench/store_growth.py``). The fold writes many chunks of a
point per page. The view ``chunks`` is both tables: the non-overlap holds across them,
and a write that deletes or rewrites stored chunks of a point (a merge, ``compact``,
``prune``) first moves that point's recent chunks into ``chunks_sorted``
(``_settle_key``).

Reads seek by the key (device, point, t1) in both tables (the view's two arms merged by
time) and stop at the first chunk past the range, so a range costs what it holds, not
what the store holds. Aggregates take whole chunks inside
one interval from the row's precomputed n/min/max/sum/first/last and decode only the
chunks that cross an interval's edge.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sqlite3
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgspec

from ..base import PointRecord, Sample
from . import chunks as ck

_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode

if TYPE_CHECKING:
    from .engine import SQLiteEngine

log = logging.getLogger("headrace.store")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

# new chunks go to chunks_recent (arrival order); reads see both tables through the view
# chunks; a write that changes stored chunks of a point first settles the point's recent
# ones (_settle_key), so that _DELETE and its merges address chunks_sorted alone
_INSERT = f"INSERT INTO chunks_recent ({ck.COLUMNS}) VALUES ({','.join('?' * 16)})"
_OVERLAP = f"SELECT {ck.DATA_COLUMNS} FROM chunks WHERE device=? AND point=? AND t1>=? ORDER BY t1"
_DELETE = "DELETE FROM chunks_sorted WHERE device=? AND point=? AND t1=?"
_LAST = (
    "SELECT max(t1) FROM (SELECT max(t1) AS t1 FROM chunks_sorted WHERE device=?1 AND point=?2 "
    "UNION ALL SELECT max(t1) FROM chunks_recent WHERE device=?1 AND point=?2)"
)
_SETTLE = (
    f"INSERT INTO chunks_sorted ({ck.COLUMNS}) SELECT {ck.COLUMNS} FROM chunks_recent "
    "WHERE {where} ORDER BY device, point, t1"
)
_SETTLED = "DELETE FROM chunks_recent WHERE {where}"
_SETTLE_KEY = _SETTLE.format(where="device=? AND point=?")
_SETTLED_KEY = _SETTLED.format(where="device=? AND point=?")
_UPSERT_LATEST = (
    "INSERT INTO latest(device, point, ts, value, quality, source) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT(device, point) DO UPDATE SET ts=excluded.ts, value=excluded.value, "
    "quality=excluded.quality, source=excluded.source WHERE excluded.ts >= latest.ts"
)
_AGG_FUNCTIONS = ("min", "max", "avg", "sum", "count", "first", "last")

# plain rows of short runs (table live)
_UPSERT_LIVE = (
    "INSERT INTO live(device, point, ts, value, quality, source) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT(device, point, ts) DO UPDATE SET value=excluded.value, "
    "quality=excluded.quality, source=excluded.source WHERE value IS NOT excluded.value "
    "OR typeof(value) != typeof(excluded.value) OR quality IS NOT excluded.quality "
    "OR typeof(quality) != typeof(excluded.quality) OR source != excluded.source"
)
_LIVE_IN = (
    "SELECT ts, value, quality, source FROM live WHERE device=? AND point=? "
    "AND ts>=? AND ts<=? ORDER BY ts"
)
_LIVE_DROP = "DELETE FROM live WHERE device=? AND point=? AND ts>=? AND ts<=?"
_LIVE_ASC = (
    "SELECT ts, value, quality, source FROM live WHERE device=? AND point=? "
    "AND ts>=? AND ts<? ORDER BY ts LIMIT ?"
)
_LIVE_DESC = (
    "SELECT ts, value, quality, source FROM live WHERE device=? AND point=? "
    "AND ts>=? AND ts<? ORDER BY ts DESC LIMIT ?"
)
_LIVE_TOP = (
    "SELECT ts, value, quality, source FROM live WHERE device=? AND point=? "
    "ORDER BY ts DESC LIMIT 1"
)
_LIVE_TAKE_ALL = "DELETE FROM live WHERE device=? AND point=? RETURNING ts, value, quality, source"
_LIVE_FIRST = (
    "SELECT ts, value, quality, source FROM live WHERE device=? AND point=? ORDER BY ts LIMIT ?"
)
_INT64 = range(-(2**63), 2**63)
_copysign = math.copysign

# the writer's upper bound of each (device, point)'s last stored time; capped in size
_TAILS_MAX = 1_000_000


def latest_value(v: Any) -> Any:
    """``latest.value``: int, float and str natively; bool, arrays, structs as JSON."""
    if isinstance(v, (list, dict, bool)):
        return _json_encode(v)
    return v


def latest_decode(v: Any) -> Any:
    if isinstance(v, bytes):
        return _json_decode(v)
    return v


def live_value(v: Any) -> Any:
    """A value or quality of a plain row: natively where SQLite holds it exactly (int64,
    a float but NaN and -0.0, text, NULL), else msgpack (bool, arrays, structs, ...)."""
    t = type(v)
    if t is float:
        if v == v and (v or _copysign(1.0, v) > 0):
            return v
    elif t is int:
        if v in _INT64:
            return v
    elif t is str or v is None:
        return v
    return _pack(v)


def live_decode(v: Any) -> Any:
    return _unpack(v) if type(v) is bytes else v


def _live_rows(rows: list[tuple[Any, ...]]) -> list[tuple[int, Any, Any, int]]:
    return [(t, live_decode(v), live_decode(q), s) for t, v, q, s in rows]


class SeriesMixin:
    engine: SQLiteEngine
    _tails: dict[tuple[int, int], int]
    _small: set[tuple[int, int]]
    _compacted: dict[tuple[int, int], int]
    _point_ids: dict[str, int]
    _live: dict[tuple[int, int], list[Any]]
    MIGRATE_STEP = 100_000
    """Old sample rows moved into chunks per transaction at start."""
    LIVE_RUN = 8
    """A run of fewer samples is kept as plain rows until folded into chunks (0: never)."""
    FOLD_ROWS = ck.SMALL
    """A point with this many plain rows is folded by the next ``fold`` (a chunk that
    ``compact`` leaves as it is). Quick checks with ``bench/store_small.py`` (15 s, a
    shared machine): 8-64 about the same, 256 slower (4,400 against ~7,000 requests/s:
    a larger table of plain rows, more pages written per commit)."""
    SETTLE_ROWS = 20_000
    """The fold moves the recent chunks into chunks_sorted once they are this many."""
    SETTLE_STEP = 2_000
    """About as many recent chunks one transaction of the fold moves."""
    FOLD_AGE = 10.0
    """A point whose first plain row came this many seconds ago is folded by ``fold``."""
    FOLD_STEP = 512
    """Most plain rows one transaction of ``fold`` moves into chunks. A step holds up the
    ingest writes grouped with it: at 5,000 events/s (`bench/noti_push.py
    --latency-only`, three pairs) ingest-only replies had p99 40-59 ms with 512 against
    100-111 ms with 4,096, at the same small-message rate (`bench/small_messages.py`)."""

    # -- writes (writer thread) ------------------------------------------------------

    def _intern_points(self, c: sqlite3.Connection, names: set[str]) -> dict[str, int]:
        # A rollback that undoes these inserts makes the engine call _reload_point_ids.
        ids = self._point_ids
        for name in names:
            if name not in ids:
                c.execute("INSERT OR IGNORE INTO point_names(name) VALUES (?)", (name,))
                ids[name] = c.execute(
                    "SELECT id FROM point_names WHERE name=?", (name,)
                ).fetchone()[0]
        return ids

    def _encode_ahead(self, runs: list[Run], source: int) -> list[Encoded | None]:
        """Each long run sorted and encoded as chunk rows (the point id left at -1: the
        writer interns the names), before the write is queued: off the writer thread. The
        writer uses them when the run is an append, else encodes what it merges."""
        short = self.LIVE_RUN
        out: list[Encoded | None] = []
        for d, _p, ts, vs, qs in runs:
            n = len(ts)
            if n < short or not n == len(vs) == len(qs):
                out.append(None)
                continue
            ts, vs, qs = ck.normalize(ts, vs, qs)
            out.append((ts, vs, qs, ck.encode_run(d, -1, ts, vs, qs, source)))
        return out

    def _write_runs(
        self,
        c: sqlite3.Connection,
        runs: list[Run],
        source: int,
        ahead: list[Encoded | None] | None = None,
    ) -> None:
        """Store runs (device, point name, times, values, qualities), in their order (a
        later value of an equal time replacing an earlier one), and update ``latest``.
        Short runs become plain rows, the others chunks."""
        latest = []
        rows: list[ck.ChunkRow] = []  # appended chunks: one executemany at the end
        plain: list[tuple[int, int, int, Any, Any, int]] = []  # plain rows: the same
        ids = self._intern_points(c, {r[1] for r in runs})
        live = self._live
        short = self.LIVE_RUN
        room = len(live) < _TAILS_MAX
        now = time.monotonic()
        for i, (d, p, ts, vs, qs) in enumerate(runs):
            n = len(ts)
            if not n == len(vs) == len(qs):
                raise ValueError(f"a run of {p!r} has {len(ts)} times, {len(vs)} values")
            if not n:
                continue
            pid = ids[p]
            key = (d, pid)
            e = live.get(key)
            if n < short and (room or e is not None):
                if n == 1:
                    lo = hi = ts[0]
                    v, q = vs[0], qs[0]
                    qv = q if q is None else live_value(q)
                    plain.append((d, pid, lo, live_value(v), qv, source))
                else:
                    ts, vs, qs = ck.normalize(ts, vs, qs)
                    lo, hi, v, q = ts[0], ts[-1], vs[-1], qs[-1]
                    plain += zip(
                        itertools.repeat(d),
                        itertools.repeat(pid),
                        ts,
                        map(live_value, vs),
                        map(live_value, qs),
                        itertools.repeat(source),
                    )
                if e is None:
                    live[key] = [lo, hi, n, now]
                    # the point's first plain row since its last fold: give it a latest
                    # row; later plain rows leave it be (latest reads the newest plain
                    # row beside it, and the fold updates it)
                    latest.append((d, pid, hi, latest_value(v), q, source))
                else:
                    if lo < e[0]:
                        e[0] = lo
                    if hi > e[1]:
                        e[1] = hi
                    e[2] += n
                continue
            enc = None if ahead is None else ahead[i]
            if enc is None:
                ts, vs, qs = ck.normalize(ts, vs, qs)
                encoded = None
            else:
                ts, vs, qs, encoded = enc
            latest.append((d, pid, ts[-1], latest_value(vs[-1]), qs[-1], source))
            srcs: Sequence[int] | int = source
            if e is not None:
                if plain:  # this write's earlier plain rows first: they are older
                    c.executemany(_UPSERT_LIVE, plain)
                    plain.clear()
                if e[0] <= ts[-1] and e[1] >= ts[0]:
                    ts, vs, qs, srcs = self._take_live(c, e, d, pid, ts, vs, qs, source)
                    encoded = None  # the run took plain rows: encoded again
            self._store_run(c, d, pid, ts, vs, qs, srcs, rows, encoded)
        if plain:
            c.executemany(_UPSERT_LIVE, plain)
        if rows:
            c.executemany(_INSERT, rows)
        # the table keeps the highest timestamp ever stored: backfill never replaces it
        c.executemany(_UPSERT_LATEST, latest)

    @staticmethod
    def _take_live(
        c: sqlite3.Connection,
        e: list[Any],
        d: int,
        pid: int,
        ts: Sequence[int],
        vs: Sequence[Any],
        qs: Sequence[Any],
        source: int,
    ) -> tuple[Sequence[int], Sequence[Any], Sequence[Any], Sequence[int] | int]:
        """The plain rows of (d, pid) within the run's times, taken into the run (the run
        winning on equal times: it is newer) and deleted: a chunk write never leaves an
        older plain row to win over it."""
        key = (d, pid, ts[0], ts[-1])
        old = c.execute(_LIVE_IN, key).fetchall()
        if not old:
            return ts, vs, qs, source
        c.execute(_LIVE_DROP, key)
        e[2] -= len(old)
        merged = {t: (v, q, s) for t, v, q, s in _live_rows(old)}
        merged.update(zip(ts, zip(vs, qs, itertools.repeat(source)), strict=False))
        order = sorted(merged)
        items = [merged[t] for t in order]
        return order, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]

    def _reload_live(self, c: sqlite3.Connection) -> None:
        """Rebuild ``_live`` from the table (at start, and after a rollback): every point
        with plain rows, due for the next fold."""
        self._live = {
            (d, p): [lo, hi, n, -math.inf]
            for d, p, lo, hi, n in c.execute(
                "SELECT device, point, min(ts), max(ts), count(*) FROM live GROUP BY device, point"
            )
        }

    def _fold_due(self, c: sqlite3.Connection, everything: bool) -> list[tuple[int, int]]:
        """The points whose plain rows the fold moves now (in the writer thread)."""
        if everything:
            return list(self._live)
        now = time.monotonic()
        rows, age = self.FOLD_ROWS, self.FOLD_AGE
        return [k for k, e in self._live.items() if e[2] >= rows or now - e[3] >= age]

    def _fold_step(self, c: sqlite3.Connection, due: list[tuple[int, int]]) -> int:
        """Move the plain rows of the points of ``due`` (taken from its end) into chunks,
        at most ``FOLD_STEP`` rows, in this one transaction. Returns the rows moved."""
        budget = self.FOLD_STEP
        live = self._live
        moved = 0
        while due and moved < budget:
            d, pid = key = due[-1]
            limit = budget - moved
            e = live.get(key)
            if e is not None and e[2] < limit:  # at most e[2] rows: all in one statement
                got = c.execute(_LIVE_TAKE_ALL, key).fetchall()
                got.sort()  # by time (the key's only distinct column)
                rows = _live_rows(got)
                gone = True
            else:
                rows = _live_rows(c.execute(_LIVE_FIRST, (d, pid, limit)).fetchall())
                gone = False
            if len(rows) < limit:
                due.pop()
            if not rows:
                live.pop(key, None)
                continue
            ts = [r[0] for r in rows]
            vs = [r[1] for r in rows]
            qs = [r[2] for r in rows]
            ss = [r[3] for r in rows]
            # plain rows are newer than the chunks: they win on equal times
            self._store_run(c, d, pid, ts, vs, qs, ss)
            if not gone:
                c.execute(_LIVE_DROP, (d, pid, ts[0], ts[-1]))
            c.execute(_UPSERT_LATEST, (d, pid, ts[-1], latest_value(vs[-1]), qs[-1], ss[-1]))
            moved += len(rows)
            e = live.get(key)
            if e is not None:
                if len(rows) < limit:
                    del live[key]  # every row of the point moved
                else:
                    e[0] = ts[-1] + 1
                    e[2] = max(e[2] - len(rows), 0)
        return moved

    def _store_run(
        self,
        c: sqlite3.Connection,
        d: int,
        pid: int,
        ts: Sequence[int],
        vs: Sequence[Any],
        qs: Sequence[Any],
        srcs: Sequence[int] | int,
        pending: list[ck.ChunkRow] | None = None,
        encoded: list[ck.ChunkRow] | None = None,
    ) -> None:
        """Store one sorted run of distinct times of (d, pid), merging any overlap
        (``encoded``: its chunk rows made ahead, point -1, for an append).

        An append's chunk rows go to ``pending`` when given (the caller inserts them all
        in one statement); ``pending`` is inserted before anything is read back, so that
        a later run of the same write sees every earlier one."""
        key = (d, pid)
        t0, t1 = ts[0], ts[-1]
        tails = self._tails
        hi = tails.get(key)
        if pending and (hi is None or t0 <= hi):  # about to read chunks: earlier runs first
            c.executemany(_INSERT, pending)
            pending.clear()
        if hi is None:
            hi = c.execute(_LAST, key).fetchone()[0]
        if len(ts) < ck.SMALL and len(self._small) < _TAILS_MAX:
            self._small.add(key)  # for compact() to merge with its neighbours later
        if hi is None or t0 > hi:  # an append: nothing stored can overlap
            if encoded is not None:
                made = [(d, pid, *r[2:]) for r in encoded]
                if pending is None:
                    c.executemany(_INSERT, made)
                else:
                    pending += made
            elif pending is None:
                c.executemany(_INSERT, ck.encode_run(d, pid, ts, vs, qs, srcs))
            elif len(ts) <= ck.CHUNK_MAX:
                pending.append(ck.encode(d, pid, ts, vs, qs, srcs))
            else:
                pending += ck.encode_run(d, pid, ts, vs, qs, srcs)
        else:
            old = []
            for row in c.execute(_OVERLAP, (d, pid, t0)):
                if row[1] > t1:  # starts after the run: so do all later chunks
                    break
                old.append(row)
            if not old:
                c.executemany(_INSERT, ck.encode_run(d, pid, ts, vs, qs, srcs))
            else:
                self._merge(c, d, pid, old, ts, vs, qs, srcs)
        if len(tails) >= _TAILS_MAX:
            if pending:  # forgetting the tails: the next run of a key will read
                c.executemany(_INSERT, pending)
                pending.clear()
            tails.clear()
        tails[key] = t1 if hi is None or t1 > hi else hi

    @staticmethod
    def _merge(
        c: sqlite3.Connection,
        d: int,
        pid: int,
        old: list[tuple[Any, ...]],
        ts: Sequence[int],
        vs: Sequence[Any],
        qs: Sequence[Any],
        srcs: Sequence[int] | int,
    ) -> None:
        merged: dict[int, tuple[Any, Any, int]] = {}
        for row in old:
            ots, ovs, oqs, oss = ck.decode(row)
            merged.update(zip(ots, zip(ovs, oqs, oss, strict=True), strict=True))
        new_srcs = [srcs] * len(ts) if isinstance(srcs, int) else srcs
        new = list(zip(vs, qs, new_srcs, strict=True))
        held = [merged.get(t) for t in ts]
        if None not in held and _pack(held) == _pack(new):
            # a resend of exactly what is stored (msgpack tells int, float, bool, -0.0 and
            # key order apart): the chunks stay as they are
            return
        merged.update(zip(ts, new, strict=True))
        SeriesMixin._settle_key(c, d, pid)
        c.executemany(_DELETE, [(d, pid, row[0]) for row in old])
        order = sorted(merged)
        items = [merged[t] for t in order]
        c.executemany(
            _INSERT,
            ck.encode_run(
                d,
                pid,
                order,
                [i[0] for i in items],
                [i[1] for i in items],
                [i[2] for i in items],
            ),
        )

    @staticmethod
    def _settle_key(c: sqlite3.Connection, d: int, pid: int) -> None:
        """Move the recent chunks of (d, pid) into chunks_sorted (before a write that
        deletes or rewrites stored chunks of the point)."""
        if c.execute(_SETTLE_KEY, (d, pid)).rowcount:
            c.execute(_SETTLED_KEY, (d, pid))

    @staticmethod
    def _recent_rows(c: sqlite3.Connection) -> int:
        return int(c.execute("SELECT count(*) FROM chunks_recent").fetchone()[0])

    def _settle_step(self, c: sqlite3.Connection, start: tuple[int, int]) -> tuple[int, int] | None:
        """Move the recent chunks of the points from ``start`` (device, point) on into
        chunks_sorted, in key order, about ``SETTLE_STEP`` rows (all of a point's: a point
        is never split), in this one transaction. Returns where the next step starts
        (None: past the last)."""
        end = c.execute(
            "SELECT device, point FROM chunks_recent WHERE (device, point) >= (?, ?) "
            "ORDER BY device, point LIMIT 1 OFFSET ?",
            (*start, self.SETTLE_STEP),
        ).fetchone()
        if end is None:
            where, args, after = "(device, point) >= (?, ?)", start, None
        elif tuple(end) == start:  # one point holds the whole step
            where, args, after = "device=? AND point=?", start, (start[0], start[1] + 1)
        else:
            where = "(device, point) >= (?, ?) AND (device, point) < (?, ?)"
            args, after = (*start, *end), (end[0], end[1])
        c.execute(_SETTLE.format(where=where), args)
        c.execute(_SETTLED.format(where=where), args)
        return after

    def _take_small(self, c: sqlite3.Connection) -> list[tuple[int, int]]:
        keys = list(self._small)
        self._small.clear()
        return keys

    def _compact_key(self, c: sqlite3.Connection, d: int, pid: int, max_rows: int) -> int:
        """Merge runs of adjacent small chunks of (d, pid) (fewer than ``SMALL`` samples
        each, as live data writes them) into chunks of up to ``CHUNK_MAX``; the chunks
        before ``_compacted[key]`` were done by an earlier pass. Returns the chunks
        merged away."""
        key = (d, pid)
        self._settle_key(c, d, pid)
        since = self._compacted.get(key, ck.INT64_MIN)
        groups: list[list[tuple[Any, ...]]] = [[]]
        mark = since
        for seen, row in enumerate(c.execute(_OVERLAP, (d, pid, since)), 1):
            if row[2] < ck.SMALL:
                groups[-1].append(row)
            else:
                mark = row[0]  # a full chunk: everything up to it is settled
                if groups[-1]:
                    groups.append([])
            if seen >= max_rows:
                self._small.add(key)  # more to do: the next pass goes on
                break
        merged = 0
        for group in groups:
            if len(group) < 2:
                continue
            ts: list[int] = []
            vs: list[Any] = []
            qs: list[Any] = []
            ss: list[int] = []
            for row in group:
                a, b, q, r = ck.decode(row)
                ts += a
                vs += b
                qs += q
                ss += r
            c.executemany(_DELETE, [(d, pid, row[0]) for row in group])
            c.executemany(_INSERT, ck.encode_run(d, pid, ts, vs, qs, ss))
            merged += len(group) - 1
        # the next pass starts at the last full chunk: what follows it may still grow
        if len(self._compacted) >= _TAILS_MAX:
            self._compacted.clear()
        self._compacted[key] = mark
        return merged

    def _prune_step(
        self, c: sqlite3.Connection, device: int, pid: int, before: int, max_chunks: int
    ) -> tuple[int, bool]:
        """Drop up to ``max_chunks`` whole chunks of (device, pid) older than ``before``,
        then trim the chunk ``before`` falls in. (samples dropped, done)."""
        key = (device, pid)
        self._settle_key(c, device, pid)
        cut = c.execute(
            "SELECT t1 FROM chunks WHERE device=? AND point=? AND t1<? ORDER BY t1 LIMIT 1 OFFSET ?",
            (device, pid, before, max_chunks),
        ).fetchone()
        limit = before if cut is None else cut[0]
        dropped = c.execute(
            "SELECT coalesce(sum(n), 0) FROM chunks WHERE device=? AND point=? AND t1<?",
            (device, pid, limit),
        ).fetchone()[0]
        c.execute(
            "DELETE FROM chunks_sorted WHERE device=? AND point=? AND t1<?", (device, pid, limit)
        )
        if cut is not None:
            return dropped, False
        row = c.execute(_OVERLAP + " LIMIT 1", (device, pid, before)).fetchone()
        if row is not None and row[1] < before:  # the boundary chunk: keep its newer part
            ts, vs, qs, ss = ck.decode(row)
            i = bisect_left(ts, before)
            c.execute(_DELETE, (device, pid, row[0]))
            c.executemany(_INSERT, ck.encode_run(device, pid, ts[i:], vs[i:], qs[i:], ss[i:]))
            dropped += i
        dropped += c.execute(
            "DELETE FROM live WHERE device=? AND point=? AND ts<?", (*key, before)
        ).rowcount
        if c.execute(
            "DELETE FROM latest WHERE device=? AND point=? AND ts<?", (*key, before)
        ).rowcount:
            # a point with plain rows left keeps a latest row: its newest plain row
            top = c.execute(_LIVE_TOP, key).fetchone()
            if top is None:  # none left: the point's next plain row writes a latest row
                self._live.pop(key, None)
            else:
                t, v, q, s = top
                v = latest_value(live_decode(v))
                c.execute(_UPSERT_LATEST, (*key, t, v, live_decode(q), s))
        return dropped, True

    # -- migration of the old samples table (at start) ------------------------------------

    def _migrate_samples(self) -> None:
        """Move the rows of the old one-row-per-sample table into chunks, in steps of
        ``MIGRATE_STEP`` rows, each its own transaction (chunks written and progress
        recorded together), then drop the table. Interrupted, it goes on from the last
        committed step at the next start."""
        exists = self.engine.read_sync(
            lambda c: c.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='samples'"
            ).fetchone()
        )
        if not exists:
            return
        moved = 0
        while True:
            n = self.engine.write_sync(self._migrate_step)
            if n == 0:
                break
            moved += n
            log.info("store migration: samples moved into chunks", extra={"samples": moved})

    def _migrate_step(self, c: sqlite3.Connection) -> int:
        mark = c.execute("SELECT value FROM store_meta WHERE key='samples_moved'").fetchone()
        after = (-1, -(2**63), -1) if mark is None else tuple(_json_decode(mark[0]))
        rows = c.execute(
            "SELECT device, ts, point, value, quality, source FROM samples "
            "WHERE (device, ts, point) > (?,?,?) ORDER BY device, ts, point LIMIT ?",
            (*after, self.MIGRATE_STEP),
        ).fetchall()
        if not rows:
            c.execute("DROP TABLE samples")
            c.execute("DELETE FROM store_meta WHERE key='samples_moved'")
            return 0
        runs: dict[tuple[int, int], tuple[list[int], list[Any], list[Any], list[int]]] = {}
        for d, t, p, v, q, s in rows:
            run = runs.get((d, p))
            if run is None:
                run = runs[(d, p)] = ([], [], [], [])
            run[0].append(t)
            run[1].append(latest_decode(v))  # old encoding: JSON for arrays and structs
            run[2].append(q)
            run[3].append(s)
        for (d, p), (ts, vs, qs, ss) in runs.items():
            self._store_run(c, d, p, ts, vs, qs, ss)  # rows come sorted by time per point
        last = rows[-1]
        c.execute(
            "INSERT OR REPLACE INTO store_meta(key, value) VALUES ('samples_moved', ?)",
            (_json_encode([last[0], last[1], last[2]]),),
        )
        return len(rows)

    # -- reads (reader threads) --------------------------------------------------------

    @staticmethod
    def _point_map(c: sqlite3.Connection, points: list[str]) -> dict[int, str]:
        if not points:
            return {}
        marks = ",".join("?" * len(points))
        return {
            r[0]: r[1]
            for r in c.execute(f"SELECT id, name FROM point_names WHERE name IN ({marks})", points)
        }

    @classmethod
    def _ascending(
        cls, c: sqlite3.Connection, device: int, pid: int, lo: int, hi: int, limit: int
    ) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
        """Blocks (times, values, qualities, sources) of one point with lo <= ts < hi, by
        time: the chunks' with the first ``limit`` plain rows of the range merged in (the
        first ``limit`` samples are right; later ones may lack a plain row's value)."""
        if lo >= hi:
            return
        plain = _live_rows(c.execute(_LIVE_ASC, (device, pid, lo, hi, limit)).fetchall())
        blocks = cls._ascending_chunks(c, device, pid, lo, hi)
        yield from (_with_plain(blocks, plain, False) if plain else blocks)

    @staticmethod
    def _ascending_chunks(
        c: sqlite3.Connection, device: int, pid: int, lo: int, hi: int
    ) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
        for row in c.execute(_OVERLAP, (device, pid, lo)):
            if row[1] >= hi:
                break
            ts, vs, qs, ss = ck.decode(row)
            if row[1] < lo or row[0] >= hi:
                i = bisect_left(ts, lo) if row[1] < lo else 0
                j = bisect_left(ts, hi) if row[0] >= hi else len(ts)
                ts, vs, qs, ss = ts[i:j], vs[i:j], qs[i:j], ss[i:j]
            yield ts, vs, qs, ss

    @classmethod
    def _descending(
        cls, c: sqlite3.Connection, device: int, pid: int, lo: int, hi: int, limit: int
    ) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
        """Blocks of one point with lo <= ts < hi, newest first (each block reversed),
        the newest ``limit`` plain rows merged in."""
        if lo >= hi:
            return
        plain = _live_rows(c.execute(_LIVE_DESC, (device, pid, lo, hi, limit)).fetchall())
        blocks = cls._descending_chunks(c, device, pid, lo, hi)
        yield from (_with_plain(blocks, plain, True) if plain else blocks)

    @staticmethod
    def _descending_chunks(
        c: sqlite3.Connection, device: int, pid: int, lo: int, hi: int
    ) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
        top = c.execute(
            "SELECT t1 FROM chunks WHERE device=? AND point=? AND t1>=? ORDER BY t1 LIMIT 1",
            (device, pid, hi - 1),
        ).fetchone()
        sql = (
            f"SELECT {ck.DATA_COLUMNS} FROM chunks WHERE device=? AND point=? AND t1>=? "
            "AND t1<=? ORDER BY t1 DESC"
        )
        bound = ck.INT64_MAX if top is None else top[0]
        for row in c.execute(sql, (device, pid, lo, bound)):
            if row[1] >= hi:
                continue
            ts, vs, qs, ss = ck.decode(row)
            i = bisect_left(ts, lo) if row[1] < lo else 0
            j = bisect_left(ts, hi) if row[0] >= hi else len(ts)
            yield ts[i:j][::-1], vs[i:j][::-1], qs[i:j][::-1], ss[i:j][::-1]

    def _query_samples(
        self,
        c: sqlite3.Connection,
        device: int,
        points: list[str],
        start: int,
        end: int,
        limit: int,
        desc: bool,
        after: tuple[int, str] | None,
    ) -> list[Sample]:
        pmap = self._point_map(c, points)
        walk = self._descending if desc else self._ascending
        streams = []
        for pid, name in sorted(pmap.items(), key=lambda kv: kv[1]):
            lo, hi = start, end
            if after is not None:  # samples after (ts, point) in the order asked for
                ats, aname = after
                if desc:
                    hi = min(hi, ats + 1 if name < aname else ats)
                else:
                    lo = max(lo, ats if name > aname else ats + 1)
            streams.append((name, walk(c, device, pid, lo, hi, limit)))
        if len(streams) == 1:  # one point: whole blocks, Samples built in C
            name, blocks = streams[0]
            out: list[Sample] = []
            for ts, vs, qs, ss in blocks:
                out += map(Sample, itertools.repeat(name), ts, vs, qs, ss)
                if len(out) >= limit:
                    del out[limit:]
                    break
            return out
        merged = heapq.merge(
            *(_flat(name, blocks) for name, blocks in streams),
            key=lambda s: (s[0], s[1]),
            reverse=desc,
        )
        return [Sample(s[1], s[0], s[2], s[3], s[4]) for s in itertools.islice(merged, limit)]

    def _aggregate(
        self,
        c: sqlite3.Connection,
        device: int,
        points: list[str],
        start: int,
        end: int,
        interval: int,
        fn: str,
    ) -> dict[str, list[tuple[int, Any]]]:
        if fn not in _AGG_FUNCTIONS:
            raise ValueError(f"unknown aggregate {fn!r}")
        pmap = self._point_map(c, points)
        out: dict[str, list[tuple[int, Any]]] = {p: [] for p in points}
        sql = (
            "SELECT t1, t0, n, kind, vmin, vmax, vsum, vfirst, vlast FROM chunks "
            "WHERE device=? AND point=? AND t1>=? ORDER BY t1"
        )
        data_sql = f"SELECT {ck.DATA_COLUMNS} FROM chunks WHERE device=? AND point=? AND t1=?"
        stat = {"min": 4, "max": 5, "sum": 6, "avg": 6, "first": 7, "last": 8}.get(fn)
        for pid, name in pmap.items():
            # per bucket: [a, b]: min/max/first/last -> value; sum -> total; avg -> sum, n;
            # count -> n
            acc: dict[int, list[Any]] = {}
            # the plain rows of the range, taken in time order between the chunks
            plain = _live_rows(c.execute(_LIVE_ASC, (device, pid, start, end, -1)).fetchall())
            pts = [r[0] for r in plain]
            pvs = [r[1] for r in plain]
            k = 0  # the next plain row
            for row in c.execute(sql, (device, pid, start)):
                t1, t0, n = row[0], row[1], row[2]
                if t0 >= end:
                    break
                a = m = k
                if k < len(pts):
                    a = bisect_left(pts, t0, k)  # before the chunk: alone, first
                    m = bisect_right(pts, t1, a)  # within the chunk's span
                    if a > k:
                        _add_slices(acc, fn, pts[k:a], pvs[k:a], start, end, interval)
                    k = m
                b0 = (t0 - start) // interval
                whole = t0 >= start and t1 < end and b0 == (t1 - start) // interval
                if whole and a == m and (stat is None or row[stat] is not None):
                    v = n if stat is None else row[stat]
                    _add(acc, b0, fn, v, n)
                    continue
                ts, vs, _qs, _ss = ck.decode(c.execute(data_sql, (device, pid, t1)).fetchone())
                if a < m:  # plain rows within the chunk: newer, they win on equal times
                    merged = dict(zip(ts, vs, strict=True))
                    merged.update(zip(pts[a:m], pvs[a:m], strict=True))
                    ts = sorted(merged)
                    vs = [merged[t] for t in ts]
                _add_slices(acc, fn, ts, vs, start, end, interval)
            if k < len(pts):
                _add_slices(acc, fn, pts[k:], pvs[k:], start, end, interval)
            series = out[name]
            for b in sorted(acc):
                got = acc[b]
                series.append((start + b * interval, got[0] / got[1] if fn == "avg" else got[0]))
        return out

    def _latest_many(
        self, c: sqlite3.Connection, devices: list[int], points: list[str] | None
    ) -> dict[int, dict[str, Sample]]:
        out: dict[int, dict[str, Sample]] = {}
        if not devices:
            return out
        names = dict(c.execute("SELECT id, name FROM point_names").fetchall())
        wanted = None if points is None else set(points)
        for i in range(0, len(devices), 500):
            part = devices[i : i + 500]
            marks = ",".join("?" * len(part))
            # every point with plain rows has a latest row; the newest plain row (a
            # seek by the key for each) is newer when its time is not lower
            for d, pid, ts, v, q, s, pts, pv, pq, ps in c.execute(
                "SELECT l.device, l.point, l.ts, l.value, l.quality, l.source, "
                "p.ts, p.value, p.quality, p.source FROM latest l LEFT JOIN live p "
                "ON p.device=l.device AND p.point=l.point AND p.ts=(SELECT max(ts) FROM "
                "live WHERE device=l.device AND point=l.point) "
                f"WHERE l.device IN ({marks})",
                part,
            ):
                name = names.get(pid)
                if name is None or (wanted is not None and name not in wanted):
                    continue
                if pts is not None and pts >= ts:
                    sample = Sample(name, pts, live_decode(pv), live_decode(pq), ps)
                else:
                    sample = Sample(name, ts, latest_decode(v), q, s)
                out.setdefault(d, {})[name] = sample
        return out


Run = tuple[int, str, Sequence[int], Sequence[Any], Sequence[Any]]
"""(device, point name, times, values, qualities): many samples of one (device, point)."""
_device_of, _time_of, _names_of, _values_of, _qualities_of = (itemgetter(i) for i in range(5))


Encoded = tuple[Sequence[int], Sequence[Any], Sequence[Any], list[ck.ChunkRow]]
"""A long run sorted (times, values, qualities) and its chunk rows (``_encode_ahead``)."""


def _flat(
    name: str, blocks: Iterator[tuple[list[int], list[Any], list[Any], list[int]]]
) -> Iterator[tuple[int, str, Any, Any, int]]:
    for ts, vs, qs, ss in blocks:
        yield from zip(ts, itertools.repeat(name), vs, qs, ss)


def runs_of(records: list[PointRecord]) -> list[Run]:
    """The measurepoint records of a write as runs per (device, point), in the order they
    came.

    The records are cut where the device changes (a write merged from many requests holds
    one stretch per request), in C; a stretch whose records all carry the same points (the
    usual shape: one names tuple shared by a model's records) is transposed into one run
    per point with ``zip(*values)``, in C too; any other stretch is grouped point by
    point."""
    out: list[Run] = []
    for d, stretch in itertools.groupby(records, _device_of):
        out += _runs_of_device(d, list(stretch))
    return out


def _runs_of_device(d: int, records: list[PointRecord]) -> list[Run]:
    n = len(records)
    names = records[0][2]
    if list(map(_names_of, records)).count(names) == n:  # one names tuple: identity, in C
        k = len(names)
        times = tuple(map(_time_of, records))
        columns = list(zip(*map(_values_of, records), strict=True))
        quals = list(map(_qualities_of, records))
        if quals.count(None) == n:
            nones = (None,) * n
            qcolumns: list[tuple[Any, ...]] = [nones] * k
        else:
            blank = (None,) * k
            qcolumns = list(zip(*(blank if q is None else q for q in quals), strict=True))
        if len(columns) != k:
            raise ValueError(f"records of {k} points carry {len(columns)} values")
        return [(d, names[j], times, columns[j], qcolumns[j]) for j in range(k)]
    runs: dict[str, tuple[int, str, list[int], list[Any], list[Any]]] = {}
    for _d, t, ns, vs, qs in records:
        for j, p in enumerate(ns):
            run = runs.get(p)
            if run is None:
                run = runs[p] = (d, p, [], [], [])
            run[2].append(t)
            run[3].append(vs[j])
            run[4].append(None if qs is None else qs[j])
    return list(runs.values())


def _add_slices(
    acc: dict[int, list[Any]],
    fn: str,
    ts: list[int],
    vs: list[Any],
    start: int,
    end: int,
    interval: int,
) -> None:
    """Add sorted samples to ``acc``: those within [start, end), a slice per interval."""
    i = bisect_left(ts, start)
    j = bisect_left(ts, end)
    if fn in ("sum", "avg") and bool in map(type, vs[i:j]):  # as SQL: 0/1
        vs = [int(v) if type(v) is bool else v for v in vs]
    while i < j:  # one slice per interval the samples cross
        b = (ts[i] - start) // interval
        k = bisect_left(ts, start + (b + 1) * interval, i, j)
        _add(acc, b, fn, _fold(fn, vs[i:k]), k - i)
        i = k


def _with_plain(
    blocks: Iterator[tuple[list[int], list[Any], list[Any], list[int]]],
    plain: list[tuple[int, Any, Any, int]],
    desc: bool,
) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
    """Chunk blocks (in time order, or reversed when ``desc``) with plain rows (the same
    order) merged in, a plain row winning over a chunk's sample of the same time."""
    k = 0
    n = len(plain)
    for ts, vs, qs, ss in blocks:
        if not ts:
            continue
        edge = ts[-1]  # the block's last in the walk's order
        m = k
        while m < n and (plain[m][0] >= edge if desc else plain[m][0] <= edge):
            m += 1
        if m == k:
            yield ts, vs, qs, ss
            continue
        merged = dict(zip(ts, zip(vs, qs, ss, strict=True), strict=True))
        merged.update((t, (v, q, s)) for t, v, q, s in plain[k:m])
        k = m
        order = sorted(merged, reverse=desc)
        items = [merged[t] for t in order]
        yield order, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]
    if k < n:
        rest = plain[k:]
        yield (
            [r[0] for r in rest],
            [r[1] for r in rest],
            [r[2] for r in rest],
            [r[3] for r in rest],
        )


def _fold(fn: str, vs: list[Any]) -> Any:
    """What ``_add`` takes for a slice of values within one interval."""
    if fn == "min":
        return min(vs)
    if fn == "max":
        return max(vs)
    if fn in ("sum", "avg"):
        return sum(vs)
    if fn == "count":
        return len(vs)
    return vs[0] if fn == "first" else vs[-1]


def _add(acc: dict[int, list[Any]], b: int, fn: str, v: Any, n: int) -> None:
    a = acc.get(b)
    if a is None:
        acc[b] = [v, n]
        return
    if fn == "min":
        if v < a[0]:
            a[0] = v
    elif fn == "max":
        if v > a[0]:
            a[0] = v
    elif fn in ("sum", "avg", "count"):
        a[0] += v
        a[1] += n
    elif fn == "last":
        a[0] = v
    # first: the first value seen (chunks and their samples come in time order)
