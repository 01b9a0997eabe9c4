"""The SQLite engine: group commit, a failing write undone alone, caches told of rollbacks."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from headrace.errors import Conflict
from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.engine import SQLiteEngine
from headrace.store.sqlite.store import SQLiteStore

SCHEMA = ("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",)


@pytest.fixture
def engine(tmp_path: Path) -> SQLiteEngine:
    e = SQLiteEngine(tmp_path / "e.db", migrations=SCHEMA)
    e.start()
    yield e
    e.close()


def rows(engine: SQLiteEngine) -> list[tuple[int, str]]:
    return engine.read_sync(lambda c: c.execute("SELECT k, v FROM t ORDER BY k").fetchall())


async def test_group_commit_with_one_failing_write(engine: SQLiteEngine) -> None:
    def insert(k: int, v: str | None):  # type: ignore[no-untyped-def]
        return lambda c: c.execute("INSERT INTO t VALUES (?, ?)", (k, v)).rowcount

    writes = [insert(1, "a"), insert(2, None), insert(3, "c"), insert(1, "dup")]
    results = await asyncio.gather(*(engine.write(w) for w in writes), return_exceptions=True)
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], sqlite3.IntegrityError) and isinstance(
        results[3], sqlite3.IntegrityError
    )
    assert rows(engine) == [(1, "a"), (3, "c")]  # the failures left nothing, the rest is committed
    assert engine.commits >= 1 and engine.writes == 4


async def test_many_writes_share_commits(engine: SQLiteEngine) -> None:
    before = engine.commits
    await asyncio.gather(
        *(
            engine.write(lambda c, k=k: c.execute("INSERT INTO t VALUES (?, 'x')", (k,)))
            for k in range(200)
        )
    )
    assert len(rows(engine)) == 200
    assert engine.commits - before < 200  # grouped


def test_write_sync_and_reopen(tmp_path: Path) -> None:
    e = SQLiteEngine(tmp_path / "e.db", migrations=SCHEMA)
    e.start()
    e.write_sync(lambda c: c.execute("INSERT INTO t VALUES (7, 'seven')"))
    with pytest.raises(sqlite3.IntegrityError):
        e.write_sync(lambda c: c.execute("INSERT INTO t VALUES (7, 'again')"))
    e.close()
    again = SQLiteEngine(tmp_path / "e.db", migrations=SCHEMA)
    again.start()
    assert rows(again) == [(7, "seven")]
    again.close()
    newer = SQLiteEngine(tmp_path / "e.db", migrations=())
    with pytest.raises(RuntimeError, match="newer"):
        newer.start()


async def test_point_cache_survives_a_rolled_back_group(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.start()
    try:
        ok = WriteBatch(measurepoints=point_records([(1, "p_new", 1000, 1.5, None)]))

        def failing(c: sqlite3.Connection) -> None:
            raise Conflict("boom")

        # both queued together: the group is rolled back once and replayed
        results = await asyncio.gather(
            store.engine.write(store.batch_writer(ok)),
            store.engine.write(failing),
            return_exceptions=True,
        )
        assert not isinstance(results[0], BaseException) and isinstance(results[1], Conflict)
        got = await store.query_samples(1, ["p_new"], 0, 2000, 10, False, None)
        assert [(s.point, s.ts, s.value) for s in got] == [("p_new", 1000, 1.5)]
        # a point interned by a write that is rolled back must not stay cached
        bad = WriteBatch(measurepoints=point_records([(1, "p_lost", 1000, 1.0, None)]))
        writer = store.batch_writer(bad)

        def bad_then_fail(c: sqlite3.Connection) -> None:
            writer(c)
            raise Conflict("after interning")

        with pytest.raises(Conflict):
            await store.engine.write(bad_then_fail)
        await store.write_batch(
            WriteBatch(measurepoints=point_records([(1, "p_lost", 2000, 2.0, None)]))
        )
        got = await store.query_samples(1, ["p_lost"], 0, 3000, 10, False, None)
        assert [(s.ts, s.value) for s in got] == [(2000, 2.0)]
    finally:
        store.close()
