"""The outbound stream on a real SQLite store: records in the data's transaction, filters,
cursors, waking on commit, retention and pruning."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from headrace.errors import Conflict
from headrace.ingest.pipeline import Origin, Result
from headrace.model.types import Device, Product
from headrace.state.registry import DeviceEntry, Registry
from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore
from headrace.stream import Filter, Retention, Stream

ORIGIN = Origin(org_id="o1", channel_id="c", products=("p1", "p2"))


class Hub:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SQLiteStore(path / "h.db")
        self.store.start()
        self.registry = Registry(self.store)
        for org, pk, model in (("o1", "p1", "m1"), ("o1", "p2", "m2"), ("o2", "q1", "m1")):
            self.registry.products[pk] = Product(
                orgId=org, productKey=pk, productSecret="s", name=pk, modelId=model
            )
        self.stream = Stream(self.store, self.registry, prune_interval=3600)
        self.stream.load()

    async def start(self) -> None:
        await self.stream.start()

    async def close(self) -> None:
        await self.stream.stop()
        self.store.close()


def dev(i: int, org: str = "o1", pk: str = "p1") -> DeviceEntry:
    return DeviceEntry(
        i,
        Device(orgId=org, productKey=pk, deviceKey=f"d{i}", assetId=f"A{i}", deviceSecret="x"),
    )


async def write(hub: Hub, batch: WriteBatch, devices: list[DeviceEntry]) -> None:
    result = Result(id="1", code=0, message="", batch=batch, devices=devices)
    hub.stream.on_batch(result, ORIGIN)
    await hub.store.write_batch(batch)


async def rows(store: SQLiteStore) -> list[int]:
    """The seqs of the records the stream table holds (its rows are blocks of records)."""
    blocks = await store.engine.read(lambda c: c.execute("SELECT seq, n FROM stream").fetchall())
    return [seq + i for seq, n in blocks for i in range(n)]


@pytest.fixture
async def hub(tmp_path: Path) -> Any:
    h = Hub(tmp_path)
    await h.start()
    yield h
    await h.close()


async def test_nothing_written_without_consumers(hub: Hub) -> None:
    batch = WriteBatch(source=1, measurepoints=point_records([(1, "t", 1000, 1.0, None)]))
    await write(hub, batch, [dev(1)])
    assert batch.stream == []
    assert await rows(hub.store) == []


async def test_records_per_item_with_their_fields(hub: Hub) -> None:
    c = hub.stream.open("all", Filter(), Retention())
    batch = WriteBatch(
        source=0,
        measurepoints=point_records(
            [
                (1, "t", 1000, 1.5, None),
                (1, "h", 1000, 2, 9),
                (2, "t", 1000, 3.0, None),
                (1, "t", 2000, 4.0, None),
            ]
        ),
        attributes=[(1, "mac", "aa", 5000), (1, "site", "x", 5000)],
        events=[(2, "alarm", 3000, b'{"level":3}')],
    )
    await write(hub, batch, [dev(1), dev(2, pk="p2")])
    got = await c.read()
    assert [(r.seq, r.kind, r.assetId, r.time) for r in got] == [
        (1, "measurepoint", "A1", 1000),
        (2, "measurepoint", "A2", 1000),
        (3, "measurepoint", "A1", 2000),
        (4, "attribute", "A1", 5000),
        (5, "event", "A2", 3000),
    ]
    first = msgspec.structs.asdict(got[0])
    assert first["at"] > 0
    del first["at"]
    assert first == {
        "seq": 1,
        "org": "o1",
        "product": "p1",
        "model": "m1",
        "assetId": "A1",
        "deviceKey": "d1",
        "source": "offline",
        "kind": "measurepoint",
        "time": 1000,
        "content": {"measurepoints": {"t": 1.5, "h": 2}, "quality": {"h": 9}},
    }
    assert got[1].model == "m2"
    assert got[3].content == {"attributes": {"mac": "aa", "site": "x"}}
    assert got[4].content == {"events": {"alarm": {"level": 3}}}
    assert c.read_position == 5


async def test_filters_decide_what_is_written_and_read(hub: Hub) -> None:
    rt = hub.stream.open("rt", Filter(sources=["realtime"], products=["p1"]), Retention())
    dv = hub.stream.open("dv", Filter(sources=["realtime"], devices=["A3"]), Retention())
    await write(
        hub, WriteBatch(source=0, measurepoints=point_records([(1, "t", 1, 1.0, None)])), [dev(1)]
    )
    assert await rows(hub.store) == []  # history: nobody wants it
    batch = WriteBatch(
        source=1,
        measurepoints=point_records(
            [(1, "t", 1, 1.0, None), (3, "t", 1, 2.0, None), (4, "t", 1, 3.0, None)]
        ),
    )
    await write(hub, batch, [dev(1), dev(3), dev(4, pk="p2")])
    assert len(await rows(hub.store)) == 3  # the device filter applies on reading
    assert [r.assetId for r in await rt.read()] == ["A1", "A3"]
    assert [r.assetId for r in await dv.read()] == ["A3"]
    assert dv.read_position == rt.read_position == hub.stream.head
    pts = hub.stream.open("pts", Filter(points=["h"]), Retention(), position=0)
    assert await pts.read() == []
    assert pts.read_position == hub.stream.head


async def test_wait_is_woken_by_the_commit(hub: Hub) -> None:
    c = hub.stream.open("w", Filter(), Retention())
    assert await c.wait(0.05) is False
    waiter = asyncio.create_task(c.wait(30))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    started = time.monotonic()
    await write(
        hub, WriteBatch(source=1, measurepoints=point_records([(1, "t", 1, 1.0, None)])), [dev(1)]
    )
    assert await waiter is True
    assert time.monotonic() - started < 1.0
    assert [r.seq for r in await c.read()] == [1]


async def test_cursor_survives_a_restart_and_seqs_never_restart(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    await hub.start()
    c = hub.stream.open("r", Filter(), Retention())
    for i in range(3):
        await write(
            hub,
            WriteBatch(source=1, measurepoints=point_records([(1, "t", i, 1.0, None)])),
            [dev(1)],
        )
    assert len(await c.read(limit=2)) == 2
    await c.commit()
    assert await hub.stream.prune() == 2
    await hub.close()

    hub = Hub(tmp_path)
    await hub.start()
    c = hub.stream.open("r", Filter(), Retention())
    assert c.position == 2
    assert [r.seq for r in await c.read()] == [3]
    await c.commit()
    assert await hub.stream.prune() == 1
    await hub.close()

    hub = Hub(tmp_path)  # the stream is empty now: the next seq still follows 3
    await hub.start()
    c = hub.stream.open("r", Filter(), Retention())
    await write(
        hub, WriteBatch(source=1, measurepoints=point_records([(1, "t", 9, 1.0, None)])), [dev(1)]
    )
    assert [r.seq for r in await c.read()] == [4]
    await hub.close()


async def test_prune_waits_for_the_slowest_and_retention_drops_counted(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    fast = hub.stream.open("fast", Filter(), Retention())
    slow = hub.stream.open("slow", Filter(), Retention(bytes=5000))
    for i in range(10):
        await write(
            hub,
            WriteBatch(source=1, measurepoints=point_records([(1, "t", i, 1.0, None)])),
            [dev(1)],
        )
    await fast.read()
    await fast.commit()
    await slow.commit(0)
    assert hub.stream.bytes < 5000
    assert await hub.stream.prune() == 0  # within slow's retention: kept for it
    assert slow.dropped == 0
    for i in range(20):
        await write(
            hub,
            WriteBatch(source=1, measurepoints=point_records([(1, "t", 100 + i, 1.0, None)])),
            [dev(1)],
        )
    await fast.read()
    await fast.commit()
    await asyncio.sleep(0.11)  # a new 100 ms bucket of the time index
    await write(
        hub, WriteBatch(source=1, measurepoints=point_records([(1, "t", 999, 1.0, None)])), [dev(1)]
    )
    removed = await hub.stream.prune()
    assert removed > 0
    assert slow.dropped == removed  # what fell out was counted for the consumer
    assert slow.position == hub.stream.pruned
    assert "fell out of a consumer's retention" in caplog.text
    left = [r.seq for r in await slow.read(limit=100)]
    assert left[0] == hub.stream.pruned + 1
    assert left[-1] == hub.stream.head


async def test_rolled_back_write_leaves_no_record(hub: Hub) -> None:
    c = hub.stream.open("all", Filter(), Retention())
    rows1 = hub.stream.online_rows(dev(1), True, 1000, "1.2.3.4")
    await hub.store.insert_objects([("k", "x", "s", b"{}")], stream=rows1)
    rows2 = hub.stream.online_rows(dev(1), False, 2000, "")
    with pytest.raises(Conflict):
        await hub.store.insert_objects([("k", "x", "s", b"{}")], stream=rows2)
    await hub.store.insert_objects([("k", "y", "s", b"{}")], stream=rows2)
    got = await c.read()
    assert [(r.seq, r.kind, r.content) for r in got] == [
        (1, "online", {"ip": "1.2.3.4"}),
        (2, "offline", {}),
    ]


async def test_position_at_and_seek(hub: Hub) -> None:
    c = hub.stream.open("r", Filter(), Retention())
    await write(
        hub, WriteBatch(source=1, measurepoints=point_records([(1, "t", 1, 1.0, None)])), [dev(1)]
    )
    await asyncio.sleep(0.15)
    mark = int(time.time() * 1000)
    await write(
        hub, WriteBatch(source=1, measurepoints=point_records([(1, "t", 2, 1.0, None)])), [dev(1)]
    )
    await c.read()
    assert c.seek(hub.stream.position_at(mark)) == 1
    assert [r.time for r in await c.read()] == [2]
    assert c.seek(0) == 0
    assert len(await c.read()) == 2


def test_the_high_water_mark_survives_the_move_into_store_meta(tmp_path: Path) -> None:
    """Migration 6 moves the stream's high-water mark from stream_meta into store_meta: an
    emptied stream of a version-5 database still continues its seqs after it."""
    from headrace.store.sqlite.engine import SQLiteEngine
    from headrace.store.sqlite.schema import MIGRATIONS

    old = SQLiteEngine(tmp_path / "h.db", migrations=MIGRATIONS[:5])
    old.start()
    old.write_sync(lambda c: c.execute("INSERT INTO stream_meta VALUES ('pruned', 41)"))
    old.close()

    async def run() -> None:
        hub = Hub(tmp_path)
        await hub.start()
        tables = hub.store.engine.read_sync(
            lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
        )
        assert "stream_meta" not in tables and "store_meta" in tables
        c = hub.stream.open("r", Filter(), Retention())
        await write(
            hub,
            WriteBatch(source=1, measurepoints=point_records([(1, "t", 9, 1.0, None)])),
            [dev(1)],
        )
        assert [r.seq for r in await c.read()] == [42]
        await hub.close()

    asyncio.run(run())


async def test_recent_commits_are_read_from_memory_as_the_store_has_them(
    tmp_path: Path,
) -> None:
    h = Hub(tmp_path)
    h.stream.memory_bytes = 2000  # a few commits' worth: the older ones only in the store
    await h.start()
    try:
        c = h.stream.open("all", Filter(), Retention())
        for i in range(40):
            rows = h.stream.online_rows(dev(i % 3), i % 2 == 0, 1000 + i, "10.0.0.1")
            rows += h.stream.online_rows(dev(i % 3 + 5), True, 1000 + i, "")
            await h.store.stream_append(rows)
        assert h.stream.head == 80
        assert 1 < len(h.stream._recent) < 40
        first_kept = h.stream._recent[0][0][0]
        for after in (0, first_kept - 2, first_kept - 1, first_kept, 50, 79, h.stream.head - 1):
            for limit in (1, 7, 1000):
                stored = await h.store.stream_read(after, limit)
                memory = h.stream._from_memory(after, limit)
                if after + 1 >= first_kept:
                    assert memory == stored, (after, limit)
                else:
                    assert memory is None  # older than memory: the store answers
        assert h.stream._from_memory(h.stream.head, 10) == []
        before = h.stream.store_reads, h.stream.memory_reads
        got = await c.read(limit=10_000)  # from the start: the store
        assert [r.seq for r in got] == [s for s, _a, _d in await h.store.stream_read(0, 10_000)]
        rows = h.stream.online_rows(dev(1), False, 5000, "")
        await h.store.stream_append(rows)
        assert [(r.seq, r.kind) for r in await c.read()] == [(h.stream.head, "offline")]
        assert (h.stream.store_reads, h.stream.memory_reads) == (before[0] + 1, before[1] + 1)
    finally:
        await h.close()
    # after a restart memory holds nothing: every read goes to the store
    h = Hub(tmp_path)
    await h.start()
    try:
        assert h.stream._from_memory(0, 10) is None
    finally:
        await h.close()


def test_blocks_read_count_and_prune_record_by_record(tmp_path: Path) -> None:
    """A write's records of one organization and kind are one row (a block); reads after
    any seq (inside a block too), counts and prunes are record by record; rows written
    before blocks existed (migration 7: blocks of one) read as they did."""
    from headrace.store.sqlite import stream as st
    from headrace.store.sqlite.engine import SQLiteEngine
    from headrace.store.sqlite.schema import MIGRATIONS

    old = SQLiteEngine(tmp_path / "h.db", migrations=MIGRATIONS[:6])
    old.start()
    old.write_sync(
        lambda c: c.executemany(
            "INSERT INTO stream(seq, at, org, kind, doc) VALUES (?,?,?,?,?)",
            [(s, 7, "o1", "online", b'{"old":%d}' % s) for s in (1, 2, 3)],
        )
    )
    old.close()

    async def run() -> None:
        hub = Hub(tmp_path)
        await hub.start()
        store = hub.store
        assert store.stream_head() == 3
        # one write: 5 of o1/measurepoint, 1 of o2, 3 of o1 again, then 2 events of o1
        rows = [("o1", "measurepoint", b'{"i":%d}' % i) for i in range(5)]
        rows += [("o2", "measurepoint", b'{"i":5}')]
        rows += [("o1", "measurepoint", b'{"i":%d}' % i) for i in (6, 7, 8)]
        rows += [("o1", "event", b'{"i":9}'), ("o1", "event", b'{"i":10}')]
        await store.stream_append(rows)
        blocks = await store.engine.read(
            lambda c: c.execute("SELECT seq, n FROM stream ORDER BY seq").fetchall()
        )
        assert blocks == [(1, 1), (2, 1), (3, 1), (4, 5), (9, 1), (10, 3), (13, 2)]
        everything = await store.stream_read(0, 1000)
        docs = [d for _s, _a, d in everything]
        assert [s for s, _a, _d in everything] == list(range(1, 15))
        assert docs[:3] == [b'{"old":1}', b'{"old":2}', b'{"old":3}']
        assert docs[3:] == [r[2] for r in rows]
        for after in range(15):
            for limit in (1, 2, 4, 100):
                got = await store.stream_read(after, limit)
                assert got == everything[after : after + limit], (after, limit)
        o2 = await store.stream_read(5, 100, orgs=["o2"])
        assert [s for s, _a, _d in o2] == [9]
        for after, through in ((0, 14), (5, 11), (6, 6), (6, 7), (12, 14), (14, 20)):
            assert await store.stream_count(after, through) == max(0, min(through, 14) - after)
        # a prune through the middle of a block keeps the block; reads after it go on
        assert await store.stream_prune(6) == 3  # the three old rows; 4..8 is one block
        assert await store.stream_read(6, 3) == everything[6:9]
        assert await store.stream_prune(8) == 5
        assert [s for s, _a, _d in await store.stream_read(0, 100)] == list(range(9, 15))
        assert st.BLOCK_MAX >= 1000
        # a block of 1 KiB and more is stored deflated, and reads the same
        big = [("o1", "measurepoint", b'{"i":%d,"pad":"%s"}' % (i, b"ab" * 20)) for i in range(100)]
        await store.stream_append(big)
        (doc,) = await store.engine.read(
            lambda c: c.execute("SELECT doc FROM stream WHERE seq = 15").fetchone()
        )
        assert doc[:1] == b"x" and len(doc) < sum(len(r[2]) for r in big) // 5
        for after in (14, 15, 60, 113):
            got = await store.stream_read(after, 30)
            assert got == [
                (15 + i, got[0][1], big[i][2]) for i in range(after - 14, min(100, after - 14 + 30))
            ]
        await hub.close()
        hub = Hub(tmp_path)  # the head and the time index after a restart
        await hub.start()
        assert hub.store.stream_head() == 114 and hub.stream.head == 114
        assert hub.stream._index[-1].last == 114
        await hub.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("ts", "content"),
    [
        (0, {"measurepoints": {"a": 1.5, "b": -0.0, "c": [1, 2], "d": {"x": 'y"z'}}}),
        (-1, {"attributes": {"name": "é\u2028", "n": 2**63 - 1}}),
        (1_700_000_000_123, {"events": {"e": msgspec.Raw(b'{"k":null}')}}),
        (5, {"raw": "AAE="}),
    ],
)
def test_spliced_records_are_the_bytes_of_the_whole_record(ts: int, content: Any) -> None:
    from headrace.stream.records import _Body, _encode, _head, _splice

    fields = dict(
        org="o1",
        product="p1",
        model="m\\1",
        assetId="A0",
        deviceKey="d\u00e90",
        source="offline",
        kind="measurepoint",
    )
    whole = _encode(_Body(**fields, time=ts, content=content))
    assert _splice(_head(*fields.values()), ts, _encode(content)) == whole


@pytest.mark.parametrize(
    ("names", "values", "quals"),
    [
        (("a", "b", "c"), (1.5, 'x"y', [1, {"k": None}]), None),
        (("a", "b"), (-0.0, 2**64), (None, None)),
        (("a", "b"), (1, 2), (None, 7)),
        (("a", "a", "b"), (1, 2, 3), None),  # a repeated name: the last value wins
        ((), (), None),
    ],
)
def test_measurepoint_records_are_the_bytes_of_their_dict(
    tmp_path: Path, names: tuple[str, ...], values: tuple[Any, ...], quals: Any
) -> None:
    """The builder's measurepoint records (spliced, their points encoded from a struct)
    are exactly the JSON of the record with its content as a dict."""
    from headrace.stream.records import Builder, _Body, _encode

    h = Hub(tmp_path)
    reg, entry = h.registry, dev(1)
    d = entry.device
    batch = WriteBatch(source=0, measurepoints=[(1, 1_700_000_000_000, names, values, quals)])
    try:
        rows = Builder(reg).batch_rows(batch, [entry], None, 0, lambda *_: True)
    finally:
        h.store.close()
    content: dict[str, Any] = {"measurepoints": dict(zip(names, values, strict=True))}
    quality = {p: q for p, q in zip(names, quals or (), strict=False) if q is not None}
    if quality:
        content["quality"] = quality
    body = _Body(
        org=d.orgId,
        product=d.productKey,
        model=reg.products[d.productKey].modelId,
        assetId=d.assetId,
        deviceKey=d.deviceKey,
        source="offline",
        kind="measurepoint",
        time=1_700_000_000_000,
        content=content,
    )
    assert rows == [(d.orgId, "measurepoint", _encode(body))]
