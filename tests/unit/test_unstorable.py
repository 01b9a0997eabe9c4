"""A write the store cannot hold for a reason that would repeat is refused with an answer
(1005), never left to fail again on every resend; a transient store failure still
propagates (not answered, so the client resends)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from headrace.errors import Unstorable
from headrace.ingest.pipeline import Origin, Pipeline
from headrace.ingest.ratelimit import RateLimiter
from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore
from tests.unit.test_http_services import World, world  # noqa: F401  (fixture)


class NoScripts:
    async def decode(self, product_key: str, payload: bytes) -> dict[str, Any]:
        raise RuntimeError("no scripts here")

    async def encode(self, product_key: str, reply: bytes) -> bytes | None:
        return None


async def test_the_store_tells_unstorable_from_transient(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.start()
    try:
        batch = WriteBatch(
            measurepoints=point_records([(1, "p", 2**64, 1.0, None)])
        )  # ts beyond int64
        with pytest.raises(Unstorable) as e:
            await store.write_batch(batch)
        assert "OverflowError" in e.value.message and e.value.status == 500
        await store.write_batch(
            WriteBatch(measurepoints=point_records([(1, "p", 5, 1.0, None)]))
        )  # goes on
    finally:
        store.close()


class PoisoningStore(SQLiteStore):
    """A real store, handed a batch made unstorable after validation (as a value the
    validator let through would be): what the pipeline does with the store's refusal."""

    transient = False

    async def write_batch(self, batch: WriteBatch) -> None:
        if self.transient:
            raise sqlite3.OperationalError("disk I/O error")
        batch.measurepoints.append((batch.measurepoints[0][0], 2**64, ("x",), (1.0,), None))
        await super().write_batch(batch)


async def test_pipeline_answers_an_unstorable_request(world: World) -> None:  # noqa: F811
    store = PoisoningStore(world.path)
    world.store.close()
    store.start()
    try:
        world.registry.store = store
        pipeline = Pipeline(
            world.registry,
            store,
            codec=NoScripts(),
            limiter=RateLimiter(0.0),
            max_message_size=1 << 20,
        )
        origin = Origin(org_id=world.org, channel_id="ch", products=[world.product])
        payload = (
            b'{"id":"r1","version":"1.0","method":"integration.measurepoint.post","params":'
            b'[{"deviceKey":"d0","time":7,"measurepoints":{"t":1.5}}]}'
        )
        result = await pipeline.handle(
            payload, kind="measurepoint", product_key=world.product, origin=origin
        )
        assert result.code == 1005 and result.id == "r1" and "OverflowError" in result.message
        assert result.batch is None and pipeline.requests == 0
        log = await store.query_log("ch", ["error"], 0, 2**62, 10, None)
        assert log and b"OverflowError" in log[0][3]
        store.transient = True
        with pytest.raises(sqlite3.OperationalError):
            await pipeline.handle(
                payload, kind="measurepoint", product_key=world.product, origin=origin
            )
    finally:
        store.close()


class PoisonOneStore(SQLiteStore):
    """A real store that cannot hold any batch carrying a sample at time 13."""

    writes = 0

    async def write_batch(self, batch: WriteBatch) -> None:
        self.writes += 1
        if any(r[1] == 13 for r in batch.measurepoints):
            batch = WriteBatch(
                batch.source, [*batch.measurepoints, (1, 2**64, ("x",), (1.0,), None)]
            )
        await super().write_batch(batch)


async def test_requests_ready_together_share_one_write_and_stay_atomic(
    world: World,  # noqa: F811
) -> None:
    """Requests made ready in one loop turn are written as one merged batch; when the
    merged batch cannot be stored, each is written alone, so only the bad one fails."""
    store = PoisonOneStore(world.path)
    world.store.close()
    store.start()
    try:
        world.registry.store = store
        pipeline = Pipeline(
            world.registry,
            store,
            codec=NoScripts(),
            limiter=RateLimiter(0.0),
            max_message_size=1 << 20,
        )
        origin = Origin(org_id=world.org, channel_id="ch", products=[world.product])

        def request(n: int, t: int) -> bytes:
            return (
                b'{"id":"r%d","version":"1.0","method":"integration.measurepoint.post",'
                b'"params":[{"deviceKey":"d0","time":%d,"measurepoints":{"t":%d.5}}]}' % (n, t, n)
            )

        async def send(times: list[int]) -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        pipeline.handle(
                            request(n, t),
                            kind="measurepoint",
                            product_key=world.product,
                            origin=origin,
                        )
                        for n, t in enumerate(times)
                    )
                )
            )

        good = await send([1, 2, 3, 4])
        assert [r.code for r in good] == [200] * 4
        assert store.writes == 1 and pipeline.merged_writes == 1  # one write for four
        results = await send([10, 11, 13, 14])
        assert [(r.id, r.code) for r in results] == [
            ("r0", 200),
            ("r1", 200),
            ("r2", 1005),
            ("r3", 200),
        ]
        assert store.writes == 1 + 1 + 4  # the merged write, then each alone
        device = world.devices[0].id
        stored = await store.query_samples(device, ["t"], 0, 100, 100, False, None)
        assert [(s.ts, s.value) for s in stored] == [
            (1, 0.5),
            (2, 1.5),
            (3, 2.5),
            (4, 3.5),
            (10, 0.5),
            (11, 1.5),
            (14, 3.5),
        ]
        # every request's payload record, and the refused one's error record
        log = await store.query_log("ch", ["payload", "error"], 0, 2**62, 100, None)
        kinds = sorted(row[2] for row in log)
        assert kinds == ["error"] + ["payload"] * 8
        # what an MQTT connection does with the requests of one socket read: the same
        many = await pipeline.handle_many(
            [
                (request(n, t), "measurepoint", world.product, "t")
                for n, t in enumerate([20, 13, 21])
            ]
            + [(b"{oops", "measurepoint", world.product, "t")],
            origin,
        )
        assert [(r.id, r.code) for r in many] == [
            ("r0", 200),
            ("r1", 1005),
            ("r2", 200),
            (None, 1220),
        ]
        stored = await store.query_samples(device, ["t"], 15, 100, 100, False, None)
        assert [(s.ts, s.value) for s in stored] == [(20, 0.5), (21, 2.5)]
        log = await store.query_log("ch", ["payload", "error"], 0, 2**62, 100, None)
        kinds = sorted(row[2] for row in log)
        assert kinds == ["error"] * 3 + ["payload"] * 12
    finally:
        store.close()
