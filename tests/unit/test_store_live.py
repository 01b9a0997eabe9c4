"""Short runs kept as plain rows (table ``live``) until the fold moves them into chunks:
overlaps with chunks in both orders, resends, latest after backfill, paging and
aggregates across both tables, exact values, the fold after a restart, retention and
the delete of a device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore
from tests.unit.store_model import model_aggregate
from tests.unit.test_store_series import EXACT, check_rows, flat, page_all, same


def count(store: SQLiteStore, table: str) -> int:
    n = store.engine.read_sync(lambda c: c.execute(f"SELECT count(*) FROM {table}").fetchone())
    return int(n[0])


def chunked(store: SQLiteStore) -> int:
    n = store.engine.read_sync(lambda c: c.execute("SELECT sum(n) FROM chunks").fetchone())
    return int(n[0] or 0)


def fields(s: Any) -> tuple[Any, ...]:
    return (s.ts, s.value, s.quality, s.source)


def one(d: int, p: str, t: int, v: Any, q: int | None = None, source: int = 0) -> WriteBatch:
    return WriteBatch(source=source, measurepoints=point_records([(d, p, t, v, q)]))


async def read(store: SQLiteStore, p: str = "v", d: int = 1) -> list[tuple[int, Any]]:
    return [
        (r.ts, r.value) for r in await store.query_samples(d, [p], 0, 10**9, 10**5, False, None)
    ]


async def test_a_chunk_write_over_plain_rows_replaces_them(store: SQLiteStore) -> None:
    for t in range(20):  # live data: one sample per request, kept as plain rows
        await store.write_batch(one(1, "v", t, "a"))
    assert count(store, "live") == 20 and chunked(store) == 0
    # history over the end of them: a chunk, newer, so it wins on equal times
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "v", t, "b", None) for t in range(10, 110)]))
    )
    assert await read(store) == [(t, "a") for t in range(10)] + [(t, "b") for t in range(10, 110)]
    assert count(store, "live") == 10  # those under the chunk were taken into it
    assert (await store.latest(1, ["v"]))["v"].ts == 109
    await store.fold(everything=True)
    assert count(store, "live") == 0 and chunked(store) == 110
    assert await read(store) == [(t, "a") for t in range(10)] + [(t, "b") for t in range(10, 110)]


async def test_plain_rows_over_a_chunk_win_until_and_after_the_fold(store: SQLiteStore) -> None:
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "v", t, float(t), None) for t in range(100)]))
    )
    for t in (50, 51, 52, 200):  # newer values inside the chunk's span, and after it
        await store.write_batch(one(1, "v", t, -1.0, 3, source=1))
    want = [(t, -1.0 if t in (50, 51, 52) else float(t)) for t in range(100)] + [(200, -1.0)]
    assert await read(store) == want
    rows = await store.query_samples(1, ["v"], 50, 53, 10, False, None)
    assert {(r.quality, r.source) for r in rows} == {(3, 1)}
    assert count(store, "live") == 4
    before = await store.aggregate(1, ["v"], 0, 300, 40, "sum")
    assert before == {
        "v": [
            (0, sum(range(40))),
            (40, sum(range(40, 80)) - 153 - 3),
            (80, sum(range(80, 100))),
            (200, -1.0),
        ]
    }
    await store.fold(everything=True)
    assert count(store, "live") == 0 and chunked(store) == 101
    assert await read(store) == want
    assert await store.aggregate(1, ["v"], 0, 300, 40, "sum") == before


async def test_a_merged_write_of_short_then_long_runs_of_one_point(store: SQLiteStore) -> None:
    # two requests merged into one write: a plain row, then a chunk over it (newer)
    samples = [(1, "v", 5, "old", None)] + [(1, "v", t, "new", None) for t in range(20)]
    samples += [(1, "v", 7, "newest", None)]  # and a plain row over the chunk again
    await store.write_batch(WriteBatch(measurepoints=point_records(samples)))
    got = await read(store)
    assert got == [(t, "newest" if t == 7 else "new") for t in range(20)]


async def test_an_exact_resend_of_plain_rows_writes_nothing(store: SQLiteStore) -> None:
    def changes() -> int:
        return int(store.engine.write_sync(lambda c: c.total_changes))

    batch = WriteBatch(
        measurepoints=point_records([(1, f"p{i}", 1000, v, None) for i, v in enumerate(EXACT)])
    )
    await store.write_batch(batch)
    n = count(store, "live")
    before = changes()
    await store.write_batch(batch)
    assert changes() - before == 0  # no plain row rewritten (nor latest: see below)
    assert count(store, "live") == n == len(EXACT)
    # a near resend (type, sign of zero, key order, quality, source) is a later value
    near: list[Any] = [1.0, 1, -0.0, 0.0, {"b": 2, "a": 1}]
    for i, v in enumerate(near):
        await store.write_batch(one(1, "near", i, v))
    before = changes()
    again: list[Any] = [1, 1.0, 0.0, -0.0, {"a": 1, "b": 2}]
    for i, v in enumerate(again):
        await store.write_batch(one(1, "near", i, v))
    await store.write_batch(one(1, "near", 0, 1, q=4, source=1))
    # each plain row replaced (5, and the quality and source change); the latest row is
    # written by a point's first plain row since its last fold only (latest reads the
    # newest plain row beside it)
    assert changes() - before == 5 + 1
    rows = await store.query_samples(1, ["near"], 0, 10, 10, False, None)
    assert all(same(r.value, v) for r, v in zip(rows, again, strict=True))
    assert (rows[0].quality, rows[0].source) == (4, 1)


async def test_latest_with_plain_rows_folds_and_retention(store: SQLiteStore) -> None:
    for t in (10, 30, 20):  # the first plain row writes the latest row; the others do not
        await store.write_batch(one(1, "v", t, float(t), q=t))
    await store.write_batch(one(2, "v", 5, "x"))
    got = await store.latest_many([1, 2], None)
    assert {d: (s["v"].ts, s["v"].value, s["v"].quality) for d, s in got.items()} == {
        1: (30, 30.0, 30),
        2: (5, "x", None),
    }
    await store.write_batch(one(1, "v", 30, [1, True], q=None, source=1))  # replaced at 30
    assert fields((await store.latest(1, ["v"]))["v"]) == (30, [1, True], None, 1)
    await store.fold(everything=True)  # rows gone from live: the fold wrote latest
    assert fields((await store.latest(1, ["v"]))["v"]) == (30, [1, True], None, 1)
    for t in (40, 50):  # a new cycle of plain rows; then retention cuts below them
        await store.write_batch(one(1, "v", t, t))
    assert await store.prune_before(1, None, 45) == 4
    assert fields((await store.latest(1, ["v"]))["v"]) == (50, 50, None, 0)
    assert await store.prune_before(1, None, 51) == 1
    assert await store.latest(1, ["v"]) == {}
    await store.write_batch(one(1, "v", 60, 6))  # stale state must not hide the new row
    assert (await store.latest(1, ["v"]))["v"].ts == 60
    await store.delete_device(2)
    await store.write_batch(one(2, "v", 1, 1))  # the id again, after a delete
    assert (await store.latest(2, ["v"]))["v"].ts == 1


async def test_latest_is_the_highest_time_after_backfill(store: SQLiteStore) -> None:
    await store.write_batch(one(1, "v", 1000, 1.0))
    await store.write_batch(one(1, "v", 10, 2.0))  # backfill, a plain row too
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "v", t, 3.0, None) for t in range(20)]))
    )
    latest = (await store.latest(1, ["v"]))["v"]
    assert (latest.ts, latest.value) == (1000, 1.0)
    await store.fold(everything=True)
    assert (await store.latest(1, ["v"]))["v"].ts == 1000
    assert (await read(store))[-1] == (1000, 1.0) and (10, 3.0) in await read(store)


async def test_paging_across_chunks_and_plain_rows(store: SQLiteStore) -> None:
    model: dict[tuple[int, str], tuple[Any, Any, int]] = {}
    for p in ("a", "b"):  # chunks at even times, plain rows at odd ones and over some evens
        await store.write_batch(
            WriteBatch(measurepoints=point_records([(1, p, t, t, None) for t in range(0, 60, 2)]))
        )
        model.update({(t, p): (t, None, 0) for t in range(0, 60, 2)})
        for t in [*range(1, 60, 3), 10, 20, 30]:
            await store.write_batch(one(1, p, t, -t, q=1, source=1))
            model[(t, p)] = (-t, 1, 1)
    want = [(t, p, *model[(t, p)]) for t, p in sorted(model)]
    for limit in (1, 4, 7, 100):
        check_rows(await page_all(store, 1, ["a", "b"], False, limit), want)
        check_rows(await page_all(store, 1, ["a", "b"], True, limit), want[::-1])
    one_point = [r for r in want if r[1] == "b"]
    check_rows(await page_all(store, 1, ["b"], True, 3), one_point[::-1])
    got = flat(await store.query_samples(1, ["a"], 9, 31, 5, True, None))
    check_rows(got, [r for r in want if r[1] == "a" and 9 <= r[0] < 31][::-1][:5])


@pytest.mark.parametrize("fn", ["min", "max", "avg", "sum", "count", "first", "last"])
async def test_aggregates_across_chunks_and_plain_rows(store: SQLiteStore, fn: str) -> None:
    series: dict[int, Any] = {}
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "x", t, t, None) for t in range(100, 200)]))
    )
    series.update({t: t for t in range(100, 200)})
    for t, v in [(5, 7), (150, -50), (151, 1000), (199, 0.5), (250, 3), (120, True)]:
        await store.write_batch(one(1, "x", t, v))
        series[t] = v
    for interval, start in ((10, 0), (30, 95), (1000, 0), (7, 149)):
        end = start + 300
        want = model_aggregate(series, start, end, interval, fn)
        got = (await store.aggregate(1, ["x"], start, end, interval, fn))["x"]
        assert [t for t, _ in got] == [t for t, _ in want], (interval, start)
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g == pytest.approx(w), (interval, start, got, want)


async def test_every_point_type_round_trips_through_plain_rows(store: SQLiteStore) -> None:
    for i, v in enumerate(EXACT):
        await store.write_batch(one(1, f"p{i}", 1000, v, q=i, source=1))
        await store.write_batch(one(1, f"p{i}", 1001, v))
    assert count(store, "live") == 2 * len(EXACT) and chunked(store) == 0
    for phase in ("plain", "folded"):
        for i, v in enumerate(EXACT):
            rows = await store.query_samples(1, [f"p{i}"], 0, 5000, 100, False, None)
            assert len(rows) == 2 and all(same(r.value, v) for r in rows), (phase, v, rows)
            assert [(r.quality, r.source) for r in rows] == [(i, 1), (None, 0)]
            assert same((await store.latest(1, [f"p{i}"]))[f"p{i}"].value, v)
        await store.fold(everything=True)
        assert count(store, "live") == 0


def test_plain_rows_are_folded_after_a_restart(tmp_path: Path) -> None:
    import asyncio

    async def write() -> None:
        s = SQLiteStore(tmp_path / "r.db")
        s.start()
        try:
            for t in range(30):
                await s.write_batch(one(1, "v", t, t * 0.5))
            assert count(s, "live") == 30
            assert await s.fold() == 0  # not due yet: few rows, just written
        finally:
            s.close()

    async def again() -> None:
        s = SQLiteStore(tmp_path / "r.db")
        s.start()
        try:
            assert await read(s) == [(t, t * 0.5) for t in range(30)]
            assert await s.fold() == 30  # rows from before the restart are due at once
            assert count(s, "live") == 0 and chunked(s) == 30
            assert await read(s) == [(t, t * 0.5) for t in range(30)]
        finally:
            s.close()

    asyncio.run(write())
    asyncio.run(again())


async def test_fold_in_bounded_steps_by_rows_and_age(store: SQLiteStore) -> None:
    store.FOLD_STEP = 7
    store.FOLD_ROWS = 10
    for t in range(25):
        await store.write_batch(
            WriteBatch(
                measurepoints=point_records(
                    [(1, "busy", t, t, None), (2, "slow", t, t, None)]
                    if t < 3
                    else [(1, "busy", t, t, None)]
                )
            )
        )
    steps = store.engine.commits
    assert await store.fold() == 25  # "busy" has 25 rows: due; "slow" 3, too young
    assert store.engine.commits - steps == 1 + 4  # the pick, then 25 rows in steps of 7
    assert count(store, "live") == 3
    store.FOLD_AGE = 0.0
    assert await store.fold() == 3
    assert await read(store, "busy") == [(t, t) for t in range(25)]
    assert await read(store, "slow", 2) == [(t, t) for t in range(3)]


async def test_retention_and_device_delete_drop_plain_rows(store: SQLiteStore) -> None:
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "c", t, t, None) for t in range(50)]))
    )
    for t in range(40, 60):
        await store.write_batch(
            WriteBatch(measurepoints=point_records([(1, "c", t, -t, None), (1, "p", t, t, None)]))
        )
    # chunk samples and plain rows (those of "c" at 40-44 shadowed a chunk's: counted twice)
    assert await store.prune_before(1, None, 45) == 45 + 5 + 5
    assert [t for t, _ in await read(store, "c")] == list(range(45, 60))
    assert [t for t, _ in await read(store, "p")] == list(range(45, 60))
    await store.write_batch(one(2, "p", 1, 1))
    await store.delete_device(1)
    assert await read(store, "p") == [] and count(store, "live") == 1
    await store.fold(everything=True)
    assert await read(store, "p", 2) == [(1, 1)]
