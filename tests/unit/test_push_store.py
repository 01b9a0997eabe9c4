"""The SQLite push queue tables: writes, ranged deletes, paged reads, expiry."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.push.queue import to_ranges
from headrace.store.sqlite.store import SQLiteStore

# store: the SQLite store fixture of tests/unit/conftest.py


def rows(
    eid: str, seqs: range, ts: int = 1000, size: int = 10
) -> list[tuple[str, int, int, bytes]]:
    return [(eid, s, ts + s, b"{" + b"x" * size + b"}") for s in seqs]


async def seqs_of(store: SQLiteStore, eid: str) -> list[int]:
    return [r[0] for r in await store.push_read(eid, 0, 10**6, 10**9)]


async def test_write_read_delete(store: SQLiteStore) -> None:
    faults = [("A1", "fan", 1, "id-1", 5)]
    assert (
        await store.push_write(rows("e", range(1, 11)) + rows("f", range(1, 4)), faults, []) == []
    )
    assert await seqs_of(store, "e") == list(range(1, 11))
    deleted = await store.push_write(
        rows("e", range(11, 13)), [], [("e", [(1, 3), (5, 5), (12, 12)]), ("f", [(1, 9)])]
    )
    assert deleted == [5, 3]
    assert await seqs_of(store, "e") == [4, 6, 7, 8, 9, 10, 11]
    assert await seqs_of(store, "f") == []
    assert await store.push_delete("e", [(4, 4), (20, 30)]) == 1
    infos, loaded = store.push_load()
    assert infos["e"].count == 6 and infos["e"].first_seq == 6 and infos["e"].last_seq == 11
    assert "f" not in infos and loaded == faults
    assert await store.push_clear("e") == 6


async def test_read_pages_by_count_and_bytes(store: SQLiteStore) -> None:
    await store.push_write(rows("e", range(1, 101), size=98), [], [])  # 100-byte docs
    page = await store.push_read("e", 10, 5, 10**6)
    assert [r[0] for r in page] == [11, 12, 13, 14, 15] and page[0][1] == 1011
    assert len(await store.push_read("e", 0, 100, 250)) == 3  # stops once past the budget
    assert len(await store.push_read("e", 0, 100, 1)) == 1  # never empty while rows exist


async def test_expire_by_time_and_count(store: SQLiteStore) -> None:
    # enqueue times grow with seq, with gaps in the seqs
    data = [("e", s, 1000 + 10 * s, b"{}") for s in range(1, 200) if s % 7]
    await store.push_write(data, [], [])
    # rows at or before seq 20 are in memory: never touched
    n = await store.push_expire("e", 20, 1000 + 10 * 100, 0)
    left = await seqs_of(store, "e")
    assert n == len([s for s in range(21, 100) if s % 7])
    assert next(s for s in left if s > 20) == 100 and [s for s in left if s <= 20] == [
        s for s in range(1, 21) if s % 7
    ]
    n = await store.push_expire("e", 20, None, 5)
    assert n == 5 and next(s for s in await seqs_of(store, "e") if s > 20) == 106
    assert await store.push_expire("e", 20, 0, 0) == 0  # nothing that old
    assert await store.push_expire("e", 20, None, 10**6) == len(
        [s for s in range(106, 200) if s % 7]
    )
    assert await store.push_expire("nobody", 0, 10**9, 3) == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 300), max_size=60), st.integers(0, 2500))
def test_expire_matches_a_scan(
    tmp_path_factory: pytest.TempPathFactory, seq_list: list[int], cutoff: int
) -> None:
    import asyncio

    async def run() -> None:
        s = SQLiteStore(tmp_path_factory.mktemp("x") / "h.db")
        s.start()
        try:
            seqs = sorted(set(seq_list))
            await s.push_write([("e", q, 10 * q, b"{}") for q in seqs], [], [])
            n = await s.push_expire("e", 0, cutoff, 0)
            expected = [q for q in seqs if 10 * q >= cutoff]
            assert n == len(seqs) - len(expected)
            assert await seqs_of(s, "e") == expected
        finally:
            s.close()

    asyncio.run(run())


@given(st.sets(st.integers(0, 200)))
def test_to_ranges(values: set[int]) -> None:
    seqs = sorted(values)
    ranges = to_ranges(seqs)
    expanded = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    assert expanded == seqs
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert lo > hi + 1  # maximal ranges


async def test_attribute_values(store: SQLiteStore) -> None:
    from headrace.store.base import WriteBatch

    await store.write_batch(
        WriteBatch(attributes=[(1, "mac", "AA", 1), (2, "mac", "BB", 1), (1, "site", "x", 1)])
    )
    assert sorted(store.attribute_values("mac")) == [(1, "AA"), (2, "BB")]
