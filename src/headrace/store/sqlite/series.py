"""The time series part of the SQLite store: samples in chunks (codec in ``chunks``).

Writes (in the writer thread, inside the batch's one transaction): the samples of a
request are grouped per (device, point), sorted, a later value of an equal time replacing
an earlier one, and written as one chunk row per run (split at ``CHUNK_MAX``). The
chunks of one (device, point) never overlap in time: a run that overlaps stored chunks
(a resend, backfilled history) is merged with them, the new value winning on equal times,
and the merged run replaces them. So a resend stores nothing twice, and reads never
merge. An append (the run starts after everything stored of that point, the usual case
of an import) costs no read: the writer keeps an upper bound of each point's last time.

``latest`` keeps, per (device, point), the sample with the highest time ever stored.

Reads seek by the key (device, point, t1) and stop at the first chunk past the range, so a
range costs what it holds, not what the store holds. Aggregates take whole chunks inside
one interval from the row's precomputed n/min/max/sum/first/last and decode only the
chunks that cross an interval's edge.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sqlite3
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgspec

from ..base import PointRecord, Sample
from . import chunks as ck

_pack = msgspec.msgpack.Encoder().encode

if TYPE_CHECKING:
    from .engine import SQLiteEngine

log = logging.getLogger("headrace.store")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

_INSERT = f"INSERT INTO chunks ({ck.COLUMNS}) VALUES ({','.join('?' * 16)})"
_OVERLAP = f"SELECT {ck.DATA_COLUMNS} FROM chunks WHERE device=? AND point=? AND t1>=? ORDER BY t1"
_DELETE = "DELETE FROM chunks WHERE device=? AND point=? AND t1=?"
_UPSERT_LATEST = (
    "INSERT INTO latest(device, point, ts, value, quality, source) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT(device, point) DO UPDATE SET ts=excluded.ts, value=excluded.value, "
    "quality=excluded.quality, source=excluded.source WHERE excluded.ts >= latest.ts"
)
_AGG_FUNCTIONS = ("min", "max", "avg", "sum", "count", "first", "last")

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


class SeriesMixin:
    engine: SQLiteEngine
    _tails: dict[tuple[int, int], int]
    _small: set[tuple[int, int]]
    _compacted: dict[tuple[int, int], int]
    _point_ids: dict[str, int]
    MIGRATE_STEP = 100_000
    """Old sample rows moved into chunks per transaction at start."""

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

    def _write_measurepoints(
        self, c: sqlite3.Connection, records: list[PointRecord], source: int
    ) -> None:
        self._write_runs(c, runs_of(records), source)

    def _write_runs(self, c: sqlite3.Connection, runs: list[Run], source: int) -> None:
        """Store runs (device, point name, times, values, qualities), in their order (a
        later value of an equal time replacing an earlier one), and update ``latest``."""
        latest = []
        rows: list[ck.ChunkRow] = []  # appended chunks: one executemany at the end
        ids = self._intern_points(c, {r[1] for r in runs})
        for d, p, ts, vs, qs in runs:
            if not len(ts) == len(vs) == len(qs):
                raise ValueError(f"a run of {p!r} has {len(ts)} times, {len(vs)} values")
            if not ts:
                continue
            pid = ids[p]
            ts, vs, qs = ck.normalize(ts, vs, qs)
            self._store_run(c, d, pid, ts, vs, qs, source, rows)
            latest.append((d, pid, ts[-1], latest_value(vs[-1]), qs[-1], source))
        if rows:
            c.executemany(_INSERT, rows)
        # the table keeps the highest timestamp ever stored: backfill never replaces it
        c.executemany(_UPSERT_LATEST, latest)

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
    ) -> None:
        """Store one sorted run of distinct times of (d, pid), merging any overlap.

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
            hi = c.execute("SELECT max(t1) FROM chunks WHERE device=? AND point=?", key).fetchone()[
                0
            ]
        if len(ts) < ck.SMALL and len(self._small) < _TAILS_MAX:
            self._small.add(key)  # for compact() to merge with its neighbours later
        if hi is None or t0 > hi:  # an append: nothing stored can overlap
            if pending is None:
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
        cut = c.execute(
            "SELECT t1 FROM chunks WHERE device=? AND point=? AND t1<? ORDER BY t1 LIMIT 1 OFFSET ?",
            (device, pid, before, max_chunks),
        ).fetchone()
        limit = before if cut is None else cut[0]
        dropped = c.execute(
            "SELECT coalesce(sum(n), 0) FROM chunks WHERE device=? AND point=? AND t1<?",
            (device, pid, limit),
        ).fetchone()[0]
        c.execute("DELETE FROM chunks WHERE device=? AND point=? AND t1<?", (device, pid, limit))
        if cut is not None:
            return dropped, False
        row = c.execute(_OVERLAP + " LIMIT 1", (device, pid, before)).fetchone()
        if row is not None and row[1] < before:  # the boundary chunk: keep its newer part
            ts, vs, qs, ss = ck.decode(row)
            i = bisect_left(ts, before)
            c.execute(_DELETE, (device, pid, row[0]))
            c.executemany(_INSERT, ck.encode_run(device, pid, ts[i:], vs[i:], qs[i:], ss[i:]))
            dropped += i
        c.execute("DELETE FROM latest WHERE device=? AND point=? AND ts<?", (*key, before))
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

    @staticmethod
    def _ascending(
        c: sqlite3.Connection, device: int, pid: int, lo: int, hi: int
    ) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
        """Blocks (times, values, qualities, sources) of one point with lo <= ts < hi, by
        time, one per chunk."""
        if lo >= hi:
            return
        for row in c.execute(_OVERLAP, (device, pid, lo)):
            if row[1] >= hi:
                break
            ts, vs, qs, ss = ck.decode(row)
            if row[1] < lo or row[0] >= hi:
                i = bisect_left(ts, lo) if row[1] < lo else 0
                j = bisect_left(ts, hi) if row[0] >= hi else len(ts)
                ts, vs, qs, ss = ts[i:j], vs[i:j], qs[i:j], ss[i:j]
            yield ts, vs, qs, ss

    @staticmethod
    def _descending(
        c: sqlite3.Connection, device: int, pid: int, lo: int, hi: int
    ) -> Iterator[tuple[list[int], list[Any], list[Any], list[int]]]:
        """Blocks of one point with lo <= ts < hi, newest first (each block reversed)."""
        if lo >= hi:
            return
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
            streams.append((name, walk(c, device, pid, lo, hi)))
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
            for row in c.execute(sql, (device, pid, start)):
                t1, t0, n = row[0], row[1], row[2]
                if t0 >= end:
                    break
                b0 = (t0 - start) // interval
                whole = t0 >= start and t1 < end and b0 == (t1 - start) // interval
                if whole and (stat is None or row[stat] is not None):
                    v = n if stat is None else row[stat]
                    _add(acc, b0, fn, v, n)
                    continue
                ts, vs, _qs, _ss = ck.decode(c.execute(data_sql, (device, pid, t1)).fetchone())
                i = bisect_left(ts, start)
                j = bisect_left(ts, end)
                if fn in ("sum", "avg") and bool in map(type, vs[i:j]):  # as SQL: 0/1
                    vs = [int(v) if type(v) is bool else v for v in vs]
                while i < j:  # one slice per interval the chunk crosses
                    b = (ts[i] - start) // interval
                    k = bisect_left(ts, start + (b + 1) * interval, i, j)
                    _add(acc, b, fn, _fold(fn, vs[i:k]), k - i)
                    i = k
            series = out[name]
            for b in sorted(acc):
                a = acc[b]
                series.append((start + b * interval, a[0] / a[1] if fn == "avg" else a[0]))
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
            for d, pid, ts, v, q, s in c.execute(
                "SELECT device, point, ts, value, quality, source FROM latest "
                f"WHERE device IN ({marks})",
                part,
            ):
                name = names.get(pid)
                if name is None or (wanted is not None and name not in wanted):
                    continue
                out.setdefault(d, {})[name] = Sample(name, ts, latest_decode(v), q, s)
        return out


Run = tuple[int, str, Sequence[int], Sequence[Any], Sequence[Any]]
"""(device, point name, times, values, qualities): many samples of one (device, point)."""
_device_of, _time_of, _names_of, _values_of, _qualities_of = (itemgetter(i) for i in range(5))


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
