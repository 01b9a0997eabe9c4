"""The chunked time series of the SQLite store against a plain model of what was written:
resends, overlapping and out-of-order history, paging, aggregates, latest, retention,
exact values of every point type, and the migration of an old database."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.store.base import Sample, WriteBatch, point_records
from headrace.store.sqlite import chunks
from headrace.store.sqlite.engine import SQLiteEngine
from headrace.store.sqlite.schema import MIGRATIONS
from headrace.store.sqlite.store import SQLiteStore
from tests.unit.store_model import model_aggregate

Model = dict[tuple[int, str], dict[int, tuple[Any, int | None, int]]]


def apply(model: Model, batch: WriteBatch) -> None:
    for d, t, ps, vs, qs in batch.measurepoints:
        for j, p in enumerate(ps):
            model.setdefault((d, p), {})[t] = (vs[j], None if qs is None else qs[j], batch.source)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (so 1 != 1.0 != True, 0.0 != -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def expected(model: Model, device: int, points: list[str], start: int, end: int) -> list[Any]:
    out = [
        (t, p, v, q, s)
        for p in points
        for t, (v, q, s) in model.get((device, p), {}).items()
        if start <= t < end
    ]
    return sorted(out, key=lambda r: (r[0], r[1]))


def flat(rows: list[Sample]) -> list[Any]:
    return [(s.ts, s.point, s.value, s.quality, s.source) for s in rows]


def check_rows(got: list[Any], want: list[Any]) -> None:
    assert [r[:2] for r in got] == [r[:2] for r in want]
    for g, w in zip(got, want, strict=True):
        assert same(g[2], w[2]), (g, w)
        assert g[3:] == w[3:], (g, w)


async def page_all(store: SQLiteStore, device: int, points: list[str], desc: bool, limit: int):  # type: ignore[no-untyped-def]
    out: list[Any] = []
    after = None
    while True:
        rows = await store.query_samples(device, points, -(2**62), 2**62, limit, desc, after)
        out += flat(rows)
        if len(rows) < limit:
            return out
        after = (rows[-1].ts, rows[-1].point)


values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "ü"]), st.floats(-9, 9), max_size=2),
)
numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1000, 1000))
batches = st.lists(
    st.tuples(
        st.integers(0, 1),  # source
        st.lists(
            st.tuples(
                st.integers(1, 2),  # device
                st.sampled_from(["a", "b"]),
                st.integers(0, 60),  # time: small, so resends and overlaps are common
                values,
                st.one_of(st.none(), st.integers(0, 9)),
            ),
            min_size=1,
            max_size=40,
        ),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=batches,
    chunk_max=st.sampled_from([3, 1024]),
    limit=st.integers(1, 7),
    compact=st.booleans(),
    live_run=st.sampled_from([0, 8]),
)
def test_store_matches_a_plain_model(
    batches: Any, chunk_max: int, limit: int, compact: bool, live_run: int
) -> None:
    old = chunks.CHUNK_MAX
    chunks.CHUNK_MAX = chunk_max  # small chunks: runs split, merges span many chunks
    try:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(_model_run(Path(d), batches, limit, compact, live_run))
    finally:
        chunks.CHUNK_MAX = old


async def _model_run(path: Path, batches: Any, limit: int, compact: bool, live_run: int) -> None:
    store = SQLiteStore(path / "m.db")
    store.COMPACT_ROWS = 5  # passes that stop part way and go on in the next
    # short runs as plain rows (8) or every run in chunks (0); folds of a few rows at a
    # time: plain rows and chunks overlap in every way
    store.LIVE_RUN = live_run
    store.FOLD_STEP = 3
    store.SETTLE_STEP = 2  # recent chunks settled a few points at a time
    store.start()
    model: Model = {}
    try:
        for source, samples in batches:
            batch = WriteBatch(source=source, measurepoints=point_records(samples))
            await store.write_batch(batch)
            apply(model, batch)
            if compact:  # plain rows folded, small chunks merged between writes
                await store.fold(everything=True)
                await store.compact()
        for device in (1, 2):
            want = expected(model, device, ["a", "b"], -(2**62), 2**62)
            check_rows(await page_all(store, device, ["a", "b"], False, limit), want)
            check_rows(await page_all(store, device, ["a", "b"], True, limit), want[::-1])
            check_rows(
                await page_all(store, device, ["b"], False, limit),
                expected(model, device, ["b"], -(2**62), 2**62),
            )
            got = flat(await store.query_samples(device, ["a", "b"], 10, 30, 1000, False, None))
            check_rows(got, expected(model, device, ["a", "b"], 10, 30))
            # latest: the highest time, whatever the order of arrival
            latest = await store.latest(device, ["a", "b"])
            for p in ("a", "b"):
                series = model.get((device, p))
                if not series:
                    assert p not in latest
                    continue
                t = max(series)
                assert latest[p].ts == t and same(latest[p].value, series[t][0])
                assert (latest[p].quality, latest[p].source) == series[t][1:]
        # folded: every sample in chunks, the same read
        await store.fold(everything=True)
        assert (
            store.engine.read_sync(lambda c: c.execute("SELECT count(*) FROM live").fetchone())[0]
            == 0
        )
        for device in (1, 2):
            want = expected(model, device, ["a", "b"], -(2**62), 2**62)
            check_rows(await page_all(store, device, ["a", "b"], False, 1000), want)
            # one row per (device, point, time): the chunks never overlap
            spans = store.engine.read_sync(
                lambda c, device=device: c.execute(
                    "SELECT point, t0, t1, n FROM chunks WHERE device=? ORDER BY point, t1",
                    (device,),
                ).fetchall()
            )
            for a, b in itertools.pairwise(spans):
                assert a[0] != b[0] or a[2] < b[1]
            assert sum(s[3] for s in spans) == sum(
                len(model.get((device, p), {})) for p in ("a", "b")
            )
    finally:
        store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writes=st.lists(
        st.lists(st.tuples(st.integers(0, 200), numbers), min_size=1, max_size=50),
        min_size=1,
        max_size=5,
    ),
    interval=st.integers(1, 70),
    start=st.integers(-10, 100),
    fn=st.sampled_from(["min", "max", "avg", "sum", "count", "first", "last"]),
)
def test_aggregates_match_a_plain_model(writes: Any, interval: int, start: int, fn: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(_agg_run(Path(d), writes, interval, start, fn))


async def _agg_run(path: Path, writes: Any, interval: int, start: int, fn: str) -> None:
    store = SQLiteStore(path / "a.db")
    store.start()
    try:
        series: dict[int, Any] = {}
        for w in writes:
            await store.write_batch(
                WriteBatch(measurepoints=point_records([(1, "x", t, v, None) for t, v in w]))
            )
            series.update(dict(w))
        end = start + 150
        want = model_aggregate(series, start, end, interval, fn)
        got = (await store.aggregate(1, ["x"], start, end, interval, fn))["x"]
        assert [t for t, _ in got] == [t for t, _ in want]
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g == pytest.approx(w), (fn, got, want)
    finally:
        store.close()


EXACT: list[Any] = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    1.0,
    1e308,
    5e-324,
    0.1,
    True,
    False,
    "",
    "héllo wörld ✓ 漢字 🎉",
    [1, 2.5, "x", None, [True]],
    {"z": 1, "a": [1.0, -0.0], "ü": {"k": "v"}},
    [],
    {},
]


async def test_every_point_type_round_trips_exactly(store: SQLiteStore) -> None:
    # each value alone (a chunk of one kind) and all together (a mixed chunk), with
    # qualities and a real-time source
    for i, v in enumerate(EXACT):
        await store.write_batch(
            WriteBatch(source=1, measurepoints=point_records([(1, f"p{i}", 1000, v, i)]))
        )
        await store.write_batch(
            WriteBatch(
                source=1,
                measurepoints=point_records(
                    [(1, f"p{i}", 1000 + k, v, None) for k in range(1, 20)]
                ),
            )
        )
    await store.write_batch(
        WriteBatch(
            measurepoints=point_records([(2, "mix", 10 + i, v, None) for i, v in enumerate(EXACT)])
        )
    )
    for i, v in enumerate(EXACT):
        rows = await store.query_samples(1, [f"p{i}"], 0, 5000, 100, False, None)
        assert len(rows) == 20
        assert all(same(r.value, v) for r in rows), (v, rows[:2])
        assert (rows[0].quality, rows[0].source, rows[1].quality) == (i, 1, None)
        latest = (await store.latest(1, [f"p{i}"]))[f"p{i}"]
        assert latest.ts == 1019 and same(latest.value, v)
    rows = await store.query_samples(2, ["mix"], 0, 5000, 100, False, None)
    assert len(rows) == len(EXACT)
    assert all(same(r.value, v) for r, v in zip(rows, EXACT, strict=True))


async def test_history_backfilled_before_and_between(store: SQLiteStore) -> None:
    live = [(1, "t", 10_000 + k * 1000, float(k), None) for k in range(100)]
    await store.write_batch(WriteBatch(source=1, measurepoints=point_records(live)))
    # backfill older history, then a resend of the middle with new values, out of order
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "t", k * 100, -1.0, None) for k in range(50)]))
    )
    mid = [(1, "t", 10_000 + k * 1000, 99.0, 7) for k in range(60, 40, -1)]
    await store.write_batch(WriteBatch(measurepoints=point_records(mid)))
    rows = await store.query_samples(1, ["t"], 0, 10**9, 1000, False, None)
    assert len(rows) == 150
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)
    by_ts = {r.ts: r for r in rows}
    assert by_ts[10_000 + 50 * 1000].value == 99.0 and by_ts[10_000 + 50 * 1000].quality == 7
    assert by_ts[10_000 + 61 * 1000].value == 61.0 and by_ts[10_000 + 61 * 1000].source == 1
    latest = (await store.latest(1, ["t"]))["t"]
    assert (latest.ts, latest.value) == (10_000 + 99 * 1000, 99.0)  # not the last received
    many = await store.latest_many([1, 2, 3], None)
    assert list(many) == [1] and many[1]["t"].ts == latest.ts
    # a resend of an entire request stores nothing twice
    before = store.engine.read_sync(
        lambda c: c.execute("SELECT sum(n), count(*) FROM chunks").fetchone()
    )
    await store.write_batch(WriteBatch(source=1, measurepoints=point_records(live)))
    after = store.engine.read_sync(
        lambda c: c.execute("SELECT sum(n), count(*) FROM chunks").fetchone()
    )
    assert after[0] == before[0] == 150


async def test_aggregate_reads_whole_chunks_from_their_row(store: SQLiteStore) -> None:
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "v", k, float(k), None) for k in range(1000)]))
    )
    # vandalize the stored values of the chunk: a read that decoded it would see garbage;
    # one interval over the whole chunk must come from the row's precomputed figures
    store.engine.write_sync(lambda c: c.execute("UPDATE chunks_recent SET vb = x'00ff'").rowcount)
    got = await store.aggregate(1, ["v"], 0, 10_000, 10_000, "avg")
    assert got == {"v": [(0, 499.5)]}
    assert (await store.aggregate(1, ["v"], 0, 10_000, 10_000, "count")) == {"v": [(0, 1000)]}
    assert (await store.aggregate(1, ["v"], 0, 10_000, 10_000, "last")) == {"v": [(0, 999.0)]}


async def test_compact_merges_the_small_chunks_of_live_data(store: SQLiteStore) -> None:
    store.LIVE_RUN = 0  # one-sample chunks, as plain rows folded early make them
    for t in range(300):  # one sample per request, as live data comes
        await store.write_batch(
            WriteBatch(source=1, measurepoints=point_records([(1, "v", t, t, t % 2 or None)]))
        )
        if t == 150:
            await store.write_batch(  # a full chunk in the middle stays as it is
                WriteBatch(
                    measurepoints=point_records([(1, "v", 1000 + k, 0.5, None) for k in range(100)])
                )
            )
    count = "SELECT count(*) FROM chunks WHERE point = (SELECT id FROM point_names WHERE name='v')"
    assert store.engine.read_sync(lambda c: c.execute(count).fetchone()) == (301,)
    merged = await store.compact()
    assert merged == 300 - 1  # 300 one-sample chunks into one (the full one is after them)
    rows = await store.query_samples(1, ["v"], 0, 10**6, 10_000, False, None)
    assert [(r.ts, r.value, r.quality, r.source) for r in rows[:300]] == [
        (t, t, t % 2 or None, 1) for t in range(300)
    ]
    assert len(rows) == 400
    for t in range(300, 310):  # more live data after the full chunk
        await store.write_batch(
            WriteBatch(source=1, measurepoints=point_records([(1, "v", 2000 + t, t, None)]))
        )
    assert await store.compact() == 9
    assert await store.compact() == 0  # nothing new
    assert store.engine.read_sync(lambda c: c.execute(count).fetchone()) == (3,)


async def test_the_fold_settles_recent_chunks_in_key_order_in_steps(store: SQLiteStore) -> None:
    """New chunks are written in arrival order (chunks_recent); once there are
    SETTLE_ROWS of them the fold moves them into the keyed table (chunks_sorted) in
    steps, each its own write; reads, latest and resends answer the same on both sides."""
    store.SETTLE_ROWS = 40
    store.SETTLE_STEP = 7  # steps that end inside a device and hold one point whole

    def count(table: str) -> int:
        return int(
            store.engine.read_sync(lambda c: c.execute(f"SELECT count(*) FROM {table}").fetchone())[
                0
            ]
        )

    def batch(r: int, device: int) -> WriteBatch:
        return WriteBatch(
            measurepoints=point_records(
                [
                    (device, p, r * 100 + k, float(r * 100 + k), None)
                    for k in range(20)
                    for p in "abc"
                ]
            )
        )

    for r in range(3):
        for device in range(1, 6):
            await store.write_batch(batch(r, device))
    assert (count("chunks_recent"), count("chunks_sorted")) == (45, 0)

    async def reads() -> list[Any]:
        return [
            (
                await store.query_samples(d, ["a", "b", "c"], 0, 10_000, 1000, False, None),
                await store.query_samples(d, ["b"], 0, 10_000, 1000, True, None),
                await store.aggregate(d, ["a"], 0, 10_000, 100, "avg"),
                await store.latest(d, ["a", "c"]),
            )
            for d in range(1, 6)
        ]

    before = await reads()
    commits = store.engine.commits
    await store.fold()
    assert (count("chunks_recent"), count("chunks_sorted")) == (0, 45)
    assert store.engine.commits - commits >= 45 // 7  # in steps, each its own commit
    assert await reads() == before
    await store.fold()  # below SETTLE_ROWS: nothing moves
    await store.write_batch(batch(3, 1))
    await store.fold()
    assert (count("chunks_recent"), count("chunks_sorted")) == (3, 45)
    # a write (a run long enough for chunks) over a sorted chunk and a recent one
    over = [*range(210, 215), *range(305, 310)]
    await store.write_batch(
        WriteBatch(measurepoints=point_records([(1, "a", t, -1.0, None) for t in over]))
    )
    got = await store.query_samples(1, ["a"], 200, 320, 1000, False, None)
    assert [s.ts for s in got] == [*range(200, 220), *range(300, 320)]
    assert {s.ts: s.value for s in got}[210] == -1.0 and {s.ts: s.value for s in got}[305] == -1.0
    # the merge took point a's two chunks (one sorted, one recent) and wrote one new
    # recent chunk over both; b's and c's recent ones stay
    assert (count("chunks_recent"), count("chunks_sorted")) == (3, 44)
    assert (await store.latest(1, ["a"]))["a"].ts == 319


async def test_prune_before_drops_whole_chunks_and_trims_the_edge(store: SQLiteStore) -> None:
    store.PRUNE_CHUNKS = 3  # several writes, ingest can go between them
    for r in range(10):
        await store.write_batch(
            WriteBatch(
                measurepoints=point_records(
                    [(1, p, r * 100 + k, k, None) for k in range(100) for p in "ab"]
                )
            )
        )
    await store.write_batch(WriteBatch(measurepoints=point_records([(2, "a", 5, 1, None)])))
    assert await store.prune_before(1, ["b"], 450) == 450
    assert await store.prune_before(1, None, 450) == 450  # "a" alone is left to drop
    rows = await store.query_samples(1, ["a", "b"], 0, 10**6, 10_000, False, None)
    assert len(rows) == 2 * 550 and rows[0].ts == 450
    assert await store.prune_before(1, None, 10**6) == 2 * 550
    assert (await store.latest(1, ["a", "b"])) == {}
    assert (await store.latest(2, ["a"]))["a"].ts == 5  # other devices untouched
    assert await store.prune_before(1, None, 10**6) == 0


def old_database(path: Path) -> None:
    """A database of the schema before chunks, filled as that version wrote it."""
    engine = SQLiteEngine(path, migrations=MIGRATIONS[:2])
    engine.start()

    def fill(c: sqlite3.Connection) -> None:
        c.executemany("INSERT INTO point_names(id, name) VALUES (?, ?)", [(1, "t"), (2, "s")])
        rows = []
        for d in (1, 2, 3):
            for k in range(250):
                rows.append((d, 1, 1000 * k, k * 0.5, None, 0))
                rows.append((d, 2, 1000 * k, msgspec.json.encode({"k": k, "ü": [k]}), k % 3, 1))
        c.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?)", rows)
        c.executemany(
            "INSERT INTO latest VALUES (?,?,?,?,?,?)",
            [(d, 1, 249_000, 124.5, None, 0) for d in (1, 2, 3)],
        )

    engine.write_sync(fill)
    engine.close()


def check_migrated(store: SQLiteStore) -> None:
    async def read() -> None:
        for d in (1, 2, 3):
            rows = await store.query_samples(d, ["t", "s"], 0, 10**9, 10_000, False, None)
            assert len(rows) == 500
            t = [r for r in rows if r.point == "t"]
            s = [r for r in rows if r.point == "s"]
            assert [(r.ts, r.value, r.source) for r in t] == [
                (1000 * k, k * 0.5, 0) for k in range(250)
            ]
            assert [(r.value, r.quality, r.source) for r in s] == [
                ({"k": k, "ü": [k]}, k % 3, 1) for k in range(250)
            ]
            assert (await store.latest(d, ["t"]))["t"].value == 124.5

    asyncio.run(read())
    tables = store.engine.read_sync(
        lambda c: [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    )
    assert "samples" not in tables


def test_an_old_database_is_migrated_on_start(tmp_path: Path) -> None:
    old_database(tmp_path / "old.db")
    store = SQLiteStore(tmp_path / "old.db")
    store.MIGRATE_STEP = 97  # many steps, boundaries inside a device's run
    store.start()
    try:
        check_migrated(store)
    finally:
        store.close()


async def test_a_schema_8_database_keeps_its_chunks_through_migration_9(tmp_path: Path) -> None:
    """Schema 9 renames the keyed table and adds chunks_recent beside it: the chunks a
    schema-8 database holds read back, merge with new writes and settle."""
    engine = SQLiteEngine(tmp_path / "s8.db", migrations=MIGRATIONS[:8])
    engine.start()
    rows = [
        chunks.encode(1, 1, list(range(r * 100, r * 100 + 100)), [float(r)] * 100, [None] * 100, 0)
        for r in range(5)
    ]
    engine.write_sync(
        lambda c: (
            c.execute("INSERT INTO point_names(id, name) VALUES (1, 'v')"),
            c.executemany(
                f"INSERT INTO chunks ({chunks.COLUMNS}) VALUES ({','.join('?' * 16)})", rows
            ),
        )
    )
    engine.close()
    store = SQLiteStore(tmp_path / "s8.db")
    store.start()
    try:
        got = await store.query_samples(1, ["v"], 0, 1000, 1000, False, None)
        assert [(s.ts, s.value) for s in got] == [(t, float(t // 100)) for t in range(500)]
        await store.write_batch(  # over the old chunks 2 and 3, and new ones after them
            WriteBatch(
                measurepoints=point_records([(1, "v", t, -1.0, None) for t in range(250, 650)])
            )
        )
        await store.fold(everything=True)
        got = await store.query_samples(1, ["v"], 0, 1000, 1000, False, None)
        want = [(t, float(t // 100) if t < 250 else -1.0) for t in range(650)]
        assert [(s.ts, s.value) for s in got] == want
        n = store.engine.read_sync(
            lambda c: c.execute(
                "SELECT (SELECT count(*) FROM chunks_recent), (SELECT sum(n) FROM chunks_sorted)"
            ).fetchone()
        )
        assert n == (0, 650)
    finally:
        store.close()


class Interrupted(Exception):
    pass


def test_an_interrupted_migration_goes_on_at_the_next_start(tmp_path: Path) -> None:
    old_database(tmp_path / "old.db")

    class Crashing(SQLiteStore):
        steps = 0

        def _migrate_step(self, c: sqlite3.Connection) -> int:
            n = super()._migrate_step(c)
            Crashing.steps += 1
            if Crashing.steps >= 4:  # inside the 4th step's transaction (and its replay)
                raise Interrupted
            return n

    first = Crashing(tmp_path / "old.db")
    first.MIGRATE_STEP = 101
    with pytest.raises(Interrupted):
        first.start()
    first.close()
    left = sqlite3.connect(tmp_path / "old.db").execute("SELECT count(*) FROM samples").fetchone()
    assert left == (1500,)  # moved rows stay until the table is dropped; the mark says where
    again = SQLiteStore(tmp_path / "old.db")
    again.start()
    try:
        check_migrated(again)
    finally:
        again.close()


async def test_retention_prunes_each_device_by_its_own_retention(store: SQLiteStore) -> None:
    from headrace.store.retention import Retention

    for d in (1, 2, 3):
        await store.write_batch(
            WriteBatch(
                measurepoints=point_records(
                    [(d, "x", t * 1000, float(t), None) for t in range(100)]
                )
            )
        )
    # 2: forever (no cut); 3: a keep of 0 means forever too
    keep: dict[int, list[tuple[list[str] | None, int]]] = {
        1: [(None, 30_000)],
        2: [],
        3: [(None, 0)],
    }
    retention = Retention(store, lambda: [1, 2, 3], keep.__getitem__, clock=lambda: 100.0)
    assert await retention.run_once() == 70  # device 1: times before 70 s
    assert retention.pruned == 70 and retention.passes == 1
    rows = await store.query_samples(1, ["x"], 0, 10**9, 1000, False, None)
    assert [r.ts for r in rows] == [t * 1000 for t in range(70, 100)]
    for d in (2, 3):
        assert len(await store.query_samples(d, ["x"], 0, 10**9, 1000, False, None)) == 100
    assert await retention.run_once() == 0  # nothing more to drop
    # the background task runs passes until stopped
    retention.interval = 0.01
    keep[2] = [(["x"], 1000)]  # a cut of named points
    await retention.start()
    for _ in range(200):
        if retention.pruned == 70 + 99:
            break
        await asyncio.sleep(0.01)
    await retention.stop()
    assert retention.pruned == 70 + 99


async def test_a_merged_write_sees_its_own_earlier_requests(store: SQLiteStore) -> None:
    # requests merged into one write (as the pipeline does): device 1, then 2, then a
    # resend of part of device 1's request with new values; chunk rows of a write are
    # inserted together, so the third must find the first's before it is stored
    first = [(1, p, 1000 + k, float(k), None) for k in range(100) for p in ("a", "b")]
    other = [(2, p, 1000 + k, 1.0, None) for k in range(100) for p in ("a", "b")]
    again = [(1, p, 1000 + k, -1.0, 3) for k in range(50, 150) for p in ("a", "b")]
    await store.write_batch(WriteBatch(measurepoints=point_records(first + other + again)))
    rows = await store.query_samples(1, ["a"], 0, 10**6, 1000, False, None)
    assert [r.ts for r in rows] == list(range(1000, 1150))
    assert [r.value for r in rows[:50]] == [float(k) for k in range(50)]
    assert {(r.value, r.quality) for r in rows[50:]} == {(-1.0, 3)}
    n = store.engine.read_sync(lambda c: c.execute("SELECT sum(n) FROM chunks").fetchone()[0])
    assert n == 2 * 150 + 2 * 100
    latest = await store.latest(1, ["a", "b"])
    assert {(s.ts, s.value) for s in latest.values()} == {(1149, -1.0)}


async def test_runs_writer_stores_columns_as_write_batch_stores_samples(tmp_path: Path) -> None:
    ts = [5000 - k * 10 for k in range(300)] + [4000]  # out of order, 4000 twice
    vs: list[Any] = [k * 0.25 for k in range(300)] + [7.5]
    qs: list[Any] = [k % 3 or None for k in range(301)]
    results = []
    for how in ("runs", "samples"):
        s = SQLiteStore(tmp_path / f"{how}.db")
        s.start()
        try:
            if how == "runs":
                s.engine.write_sync(s.runs_writer([(1, "x", ts, vs, qs), (1, "e", [], [], [])]))
            else:
                await s.write_batch(
                    WriteBatch(
                        measurepoints=point_records(
                            list(zip([1] * 301, ["x"] * 301, ts, vs, qs, strict=True))
                        )
                    )
                )
            rows = flat(await s.query_samples(1, ["x"], 0, 10**6, 1000, False, None))
            results.append((rows, await s.latest(1, ["x", "e"])))
            # a run whose columns differ in length is refused, and its write stores nothing
            with pytest.raises(ValueError, match="has 2 times, 1 values"):
                s.engine.write_sync(
                    s.runs_writer([(1, "y", [1], [1.0], [None]), (1, "x", [1, 2], [1.0], [None])])
                )
            assert await s.query_samples(1, ["y"], 0, 10**6, 10, False, None) == []
        finally:
            s.close()
    assert results[0] == results[1]
    rows = results[0][0]
    assert len(rows) == 300 and rows[0][0] == 2010
    assert [r for r in rows if r[0] == 4000] == [(4000, "x", 7.5, None, 0)]  # the later one


def test_chunks_compressed_in_turn_each_read_alone() -> None:
    # one compressor per thread compresses every column, reset by a full flush between
    # them: each column must still inflate alone, in any order, with a fresh inflater
    runs = [[float((k * (j + 3)) % 17) for k in range(500)] for j in range(5)]
    rows = [chunks.encode(1, j, list(range(500)), vs, [None] * 500, 0) for j, vs in enumerate(runs)]
    for j in (4, 0, 2, 3, 1):
        row = rows[j]
        assert row[13][:1] == b"\x01"  # deflated
        ts, vs, _qs, _ss = chunks.decode((row[2], row[3], row[4], row[5], row[6], *row[12:]))
        assert ts == list(range(500)) and vs == runs[j]
    # a column written by the earlier codec (a fresh compressor per column, finished)
    # reads as before
    import array
    import zlib

    raw = array.array("d", runs[1]).tobytes()
    shuffled = b"".join(raw[i::8] for i in range(8))
    c = zlib.compressobj(1, zlib.DEFLATED, -10, 4)
    old = b"\x01" + c.compress(shuffled) + c.flush()
    assert chunks.decode_values(chunks.KIND_FLOAT, old) == runs[1]


async def test_an_exact_resend_writes_no_chunk_and_a_near_one_replaces(
    store: SQLiteStore,
) -> None:
    """A resend of exactly what is stored leaves the chunks as they are (no decode-merge-
    encode rewrite); one that differs only in type, sign of zero, key order, quality or
    source is a later value and replaces the stored one."""
    base: list[Any] = [1, True, 0.0, {"a": 1, "b": 2}, "x", 2.5]
    for r in range(3):  # chunks of 100 that the resends overlap
        await store.write_batch(
            WriteBatch(
                measurepoints=point_records(
                    [
                        (1, f"p{i}", r * 100 + k, v, None)
                        for k in range(100)
                        for i, v in enumerate(base)
                    ]
                )
            )
        )

    def changes() -> int:
        return int(store.engine.write_sync(lambda c: c.total_changes))

    def resend(values: list[Any], quality: int | None = None, source: int = 0) -> WriteBatch:
        return WriteBatch(
            source=source,
            measurepoints=point_records(
                [(1, f"p{i}", 150 + k, v, quality) for k in range(10) for i, v in enumerate(values)]
            ),
        )

    before = changes()
    await store.write_batch(resend(base))
    exact = changes() - before
    near: list[Any] = [1.0, 1, -0.0, {"b": 2, "a": 1}, "x", 2.5]
    before = changes()
    await store.write_batch(resend(near))
    replaced = changes() - before
    assert exact < replaced  # the exact resend rewrote no chunk (latest rows may update)
    for i, v in enumerate(near):
        rows = await store.query_samples(1, [f"p{i}"], 150, 160, 100, False, None)
        assert len(rows) == 10 and all(same(r.value, v) for r in rows), (i, rows[:1])
    await store.write_batch(resend(near, quality=7, source=1))
    rows = await store.query_samples(1, ["p4"], 150, 160, 100, False, None)
    assert {(r.quality, r.source) for r in rows} == {(7, 1)}
    rows = await store.query_samples(1, ["p0"], 0, 10**6, 1000, False, None)
    assert len(rows) == 300 and same(rows[0].value, 1) and same(rows[150].value, 1.0)
