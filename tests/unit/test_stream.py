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


async def rows(store: SQLiteStore) -> list[Any]:
    return await store.engine.read(lambda c: c.execute("SELECT seq FROM stream").fetchall())


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
