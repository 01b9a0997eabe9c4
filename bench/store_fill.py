"""The fill loop the store benchmarks share (``mqtt_import.py``'s bare store,
``store_reads.py``'s fill): requests of consecutive records of one device x POINTS float
points, the shape of a history import, written through the SQLite store's own code, a
group of requests per commit (one write function per request, as the hub's group commit
runs them).

A request is given as its runs (device id, point name, times, values, qualities): written
either as the hub's sample rows (``SQLiteStore.batch_writer``, what an ingest request
costs the store) or through the bulk write API (``SQLiteStore.runs_writer``, the columns
as they are: the fast fill).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from headrace.store.base import WriteBatch
from headrace.store.sqlite.series import Run
from headrace.store.sqlite.store import SQLiteStore

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


def samples_of(runs: list[Run]) -> list[tuple[int, str, int, Any, int | None]]:
    """The hub's sample rows of a request, record by record as the pipeline makes them."""
    cols = [
        zip(itertools.repeat(d, len(ts)), itertools.repeat(p, len(ts)), ts, vs, qs, strict=True)
        for d, p, ts, vs, qs in runs
    ]
    return [s for record in zip(*cols, strict=True) for s in record]


def write_requests(
    store: SQLiteStore,
    requests: Iterable[list[Run]],
    group: int,
    *,
    as_samples: bool,
    seconds: float | None = None,
) -> tuple[int, float]:
    """Write ``requests``, ``group`` per commit, until they run out or ``seconds`` of
    writing have passed. Returns (points written, seconds spent writing: the writer's
    time, making the rows of the requests excluded)."""
    it = iter(requests)
    points = 0
    busy = 0.0
    while seconds is None or busy < seconds:
        part = list(itertools.islice(it, group))
        if not part:
            break
        if as_samples:
            writers = [store.batch_writer(WriteBatch(samples=samples_of(r))) for r in part]
        else:
            writers = [store.runs_writer(r) for r in part]
        t0 = time.perf_counter()
        store.engine.write_sync(lambda c, ws=writers: [w(c) for w in ws])
        busy += time.perf_counter() - t0
        points += sum(len(run[2]) for r in part for run in r)
    return points, busy
