"""The message log's live feed: the store announces each committed write's records with
the ids SQLite gave them (concurrent writers, group commits, pruning), and a reader's
queue is bounded, counting what it drops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.state.logfeed import LogFeed
from headrace.store.base import LogRow, WriteBatch
from headrace.store.sqlite.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "h.db", max_batch=64)
    s.start()
    yield s
    s.close()


def rec(channel: str, i: int, kind: str = "payload") -> tuple[str, int, str, bytes]:
    return (channel, 1000 + i, kind, b'{"n":%d}' % i)


async def test_announced_ids_are_the_stored_ids(store: SQLiteStore) -> None:
    seen: list[LogRow] = []
    store.log_listeners.append(seen.extend)
    # many writers at once: their writes share group commits
    writes = []
    for i in range(200):
        if i % 3 == 0:
            writes.append(store.write_batch(WriteBatch(log=[rec("a", i), rec("b", i, "error")])))
        else:
            writes.append(store.append_log([rec("a" if i % 2 else "b", i)]))
    await asyncio.gather(*writes)
    await store.prune_log(1000 + 150)  # the oldest go
    await store.append_log([rec("a", 500), rec("a", 501)])
    # the newest rows deleted: SQLite reuses their ids, and the feed must say so
    await store.engine.write(lambda c: c.execute("DELETE FROM channel_log WHERE ts >= 1500"))
    await store.append_log([rec("b", 600)])
    stored = {}
    for channel in ("a", "b"):
        for r in await store.query_log(channel, [], 0, 10**6, 1000, None):
            stored[r[0]] = (channel, *r[1:])
    announced = {r[0]: r[1:] for r in seen}
    for rid, row in stored.items():
        assert announced[rid] == row, rid
    assert len(seen) == 200 + 67 + 2 + 1  # every record announced once (ids may repeat
    # after the delete above, which the store never does itself: prune drops the oldest)


async def test_reader_queue_is_bounded() -> None:
    feed = LogFeed(capacity=3)
    everything = feed.subscribe("a", lambda row: True)
    errors = feed.subscribe("a", lambda row: row[3] == "error")
    other = feed.subscribe("b", lambda row: True)
    rows: list[LogRow] = [(i, "a", i, "error" if i % 2 else "payload", b"{}") for i in range(1, 11)]
    feed.publish(rows)
    got, dropped = await everything.take(1)
    assert [r[0] for r in got] == [1, 2, 3] and dropped == 7
    got, dropped = await errors.take(1)
    assert [r[0] for r in got] == [1, 3, 5] and dropped == 2
    assert await other.take(0.05) == ([], 0)
    # after a take, room again; the drop count starts over
    feed.publish([(11, "a", 11, "payload", b"{}")])
    assert await everything.take(1) == ([(11, "a", 11, "payload", b"{}")], 0)
    feed.unsubscribe(everything)
    feed.unsubscribe(errors)
    feed.unsubscribe(other)
    assert feed.tails == {}


async def test_stop_wakes_readers() -> None:
    feed = LogFeed()
    tail = feed.subscribe("a", lambda row: True)
    waiting = asyncio.create_task(tail.take(30))
    await asyncio.sleep(0.01)
    await feed.stop()
    assert await asyncio.wait_for(waiting, 1) == ([], 0)
    assert tail.closed
