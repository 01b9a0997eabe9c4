"""The fill loop the store benchmarks share (``mqtt_import.py``'s bare store,
``store_reads.py``'s fill): requests of consecutive records of one device x POINTS float
points, the shape of a history import, written through the SQLite store's own code, a
group of requests per commit (one write function per request, as the hub's group commit
runs them).

A request is given as its runs (device id, point name, times, values, qualities): written
either as the hub's measurepoint records (``SQLiteStore.batch_writer``, what an ingest request
costs the store) or through the bulk write API (``SQLiteStore.runs_writer``, the columns
as they are: the fast fill).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from headrace.store.base import PointRecord, WriteBatch
from headrace.store.sqlite.series import Run
from headrace.store.sqlite.store import SQLiteStore

FOLD_EVERY = 1.0
"""Seconds of writing between two folds, as the hub runs them (``fold_interval`` in
``store/retention.py``)."""

Columns = Callable[[int, int, int], list[Any]]
"""(point index, first record index, records) -> the values of that point."""


def request_runs(
    device: int, first_ts: int, k0: int, records: int, points: int, columns: Columns, step: int
) -> list[Run]:
    """One request: ``records`` records of ``device`` from ``first_ts``, ``step`` ms
    apart (record ``k0`` of the device's timeline first), values from ``columns``."""
    ts = list(range(first_ts, first_ts + records * step, step))
    none = [None] * records
    return [(device, f"p{i}", ts, columns(i, k0, records), none) for i in range(points)]


def records_of(runs: list[Run]) -> list[PointRecord]:
    """The hub's measurepoint records of a request, one per time as the pipeline makes
    them (one names tuple shared by all)."""
    d = runs[0][0]
    names = tuple(r[1] for r in runs)
    values = zip(*(r[3] for r in runs), strict=True)
    return [(d, t, names, vs, None) for t, vs in zip(runs[0][2], values, strict=True)]


def write_requests(
    store: SQLiteStore,
    requests: Iterable[list[Run]],
    group: int,
    *,
    as_records: bool,
    seconds: float | None = None,
) -> tuple[int, float]:
    """Write ``requests``, ``group`` per commit, until they run out or ``seconds`` of
    writing have passed, and run the store's fold every ``FOLD_EVERY`` seconds of it as
    the hub does. Returns (points written, seconds spent writing: the writer's
    time, making the rows of the requests excluded)."""
    it = iter(requests)
    points = 0
    busy = 0.0
    fold_at = FOLD_EVERY
    while seconds is None or busy < seconds:
        if busy >= fold_at:  # the hub's background fold (store/retention.py), timed too
            t0 = time.perf_counter()
            asyncio.run(store.fold())
            busy += time.perf_counter() - t0
            fold_at = busy + FOLD_EVERY
        part = list(itertools.islice(it, group))
        if not part:
            break
        # the records are the pipeline's (untimed); the write functions are the store's
        # (timed: batch_writer encodes the chunks of appends before the write is queued)
        batches = [WriteBatch(measurepoints=records_of(r)) for r in part] if as_records else None
        t0 = time.perf_counter()
        if batches is not None:
            writers = [store.batch_writer(b) for b in batches]
        else:
            writers = [store.runs_writer(r) for r in part]
        store.engine.write_sync(lambda c, ws=writers: [w(c) for w in ws])
        busy += time.perf_counter() - t0
        points += sum(len(run[2]) for r in part for run in r)
    return points, busy
