"""Measurepoint requests become one record per item (``WriteBatch.measurepoints``): the
compiled path (one device's items made into records in C, or item by item) and the
general path make the same records, replies and errors, and the store keeps every value
exactly, a later value of the same (device, point, time) replacing an earlier one."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from headrace.ingest.pipeline import Origin, Pipeline, Result
from headrace.ingest.ratelimit import RateLimiter
from headrace.model.types import ThingModel, TypeSpec
from headrace.proto.enos import METHOD_MEASUREPOINT
from headrace.state.registry import DeviceCreate, OrgCreate, ProductCreate, Registry
from headrace.store.sqlite.store import SQLiteStore
from tests.unit.test_unstorable import NoScripts

MP = "integration.measurepoint.post"


class Hub:
    def __init__(self, store: SQLiteStore, reg: Registry, org: str, typed: str, quality: str):
        self.store, self.reg, self.org = store, reg, org
        self.typed, self.quality = typed, quality  # product keys
        self.pipeline = Pipeline(
            reg, store, codec=NoScripts(), limiter=RateLimiter(0.0), max_message_size=1 << 20
        )
        self.origin = Origin(org_id=org, channel_id="ch", products=[typed, quality])


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.start()
    reg = Registry(store)
    reg.load()
    org = (await reg.create_org(OrgCreate(name="A"))).orgId
    typed = [TypeSpec(id="a", type="int"), TypeSpec(id="b", type="double")]
    await reg.create_model(org, ThingModel(id="m1", measurepoints=typed))
    mixed = [*typed, TypeSpec(id="q", type="double", withQuality=True)]
    await reg.create_model(org, ThingModel(id="m2", measurepoints=mixed))
    pks = []
    for m in ("m1", "m2"):
        p = await reg.create_product(org, ProductCreate(name=m, modelId=m, inactivityTimeout=10))
        await reg.create_devices(
            org, p.productKey, [DeviceCreate(deviceKey=f"d{i}") for i in range(2)]
        )
        pks.append(p.productKey)
    yield Hub(store, reg, org, pks[0], pks[1])
    store.close()


def payload(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"id": "r", "version": "1.0", "method": MP, "params": items}).encode()


def samples(result: Result) -> dict[tuple[int, str], list[tuple[int, str, Any, Any]]]:
    """Each (device, point)'s samples in the order the batch carries them (value typed)."""
    out: dict[tuple[int, str], list[tuple[int, str, Any, Any]]] = {}
    assert result.batch is not None
    for d, t, names, values, quals in result.batch.measurepoints:
        assert len(names) == len(values) == len(set(names))
        assert quals is None or (len(quals) == len(names) and set(quals) != {None})
        for j, p in enumerate(names):
            q = None if quals is None else quals[j]
            out.setdefault((d, p), []).append((t, type(values[j]).__name__, values[j], q))
    return out


def both(hub: Hub, pk: str, items: list[dict[str, Any]]) -> tuple[Result, Result]:
    """The compiled path's result and the general path's for the same request."""
    body = payload(items)
    now = int(time.time() * 1000)
    p = hub.pipeline
    fast = p._prepare(body, METHOD_MEASUREPOINT, pk, hub.origin, now, None)
    general = p._prepare(body, METHOD_MEASUREPOINT, pk, hub.origin, now, json.loads(body))
    assert (fast.code, fast.message, fast.errors, fast.items, fast.points) == (
        general.code,
        general.message,
        general.errors,
        general.items,
        general.points,
    )
    assert (fast.batch is None) == (general.batch is None)
    if fast.batch is not None:
        assert samples(fast) == samples(general)
        assert [e.id for e in fast.devices] == [e.id for e in general.devices]
    return fast, general


def item(dev: str, t: int | None, **mp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"deviceKey": dev, "measurepoints": mp}
    if t is not None:
        out["time"] = t
    return out


async def test_history_shape_is_one_shared_names_tuple_and_stored_exactly(hub: Hub) -> None:
    items = [item("d0", 1000 + k, b=k * 0.5, a=k) for k in range(50)]
    items.append(item("d0", 1010, a=-7, b=-0.0))  # a later value of time 1010 replaces it
    fast, _ = both(hub, hub.typed, items)
    assert fast.batch is not None and fast.points == 102 and len(fast.devices) == 1
    recs = fast.batch.measurepoints
    assert all(r[2] is recs[0][2] for r in recs)  # one names tuple: transposed in C
    result = await hub.pipeline.handle(
        payload(items), kind="measurepoint", product_key=hub.typed, origin=hub.origin
    )
    assert result.code == 200
    dev = hub.reg.devices[(hub.typed, "d0")].id
    got = await hub.store.query_samples(dev, ["a", "b"], 0, 10**6, 1000, False, None)
    want = {(1000 + k, "a"): k for k in range(50)} | {(1000 + k, "b"): k * 0.5 for k in range(50)}
    want[(1010, "a")], want[(1010, "b")] = -7, -0.0
    assert {(s.ts, s.point): s.value for s in got} == want
    assert all(type(s.value) is (int if s.point == "a" else float) for s in got)
    b1010 = next(s.value for s in got if s.ts == 1010 and s.point == "b")
    assert str(b1010) == "-0.0"


@pytest.mark.parametrize(
    "items",
    [
        [item("d0", 5, a=1, b=2.0), item("d1", 5, a=2, b=3.0)],  # two devices
        [item("d0", 5, a=1, b=2.0), item("d0", 6, b=3.0), item("d0", 7, a=4)],  # subsets
        [item("d0", None, a=1, b=2.0), item("d0", 6, a=2, b=1.0)],  # no time: now
        [item("d0", 5, a=1, b=2.0), item("nope", 6, a=2, b=1.0)],  # unknown device
        [item("d0", 5, a=1, b=2.0), item("d0", -1, a=2, b=1.0)],  # time out of range
        [item("d0", 5, a=1, b=2.0), item("d0", 2**63, a=2, b=1.0)],  # beyond int64
        [item("d0", 5, a=1, b=2.0), item("d0", 6)],  # no measurepoints
        [item("d0", 5, a=1, b=2.5), item("d0", 5, a=3, b=2.5)],  # same time twice
    ],
)
async def test_compiled_and_general_paths_agree(hub: Hub, items: list[dict[str, Any]]) -> None:
    both(hub, hub.typed, items)


async def test_quality_and_python_checked_points(hub: Hub) -> None:
    items = [
        item("d0", 5, a=1, q={"value": 1.5, "quality": 3}),
        item("d0", 6, a=2, b=0.5, q=2.5),
        item("d0", 7, b=1.5),
    ]
    fast, _ = both(hub, hub.quality, items)
    assert fast.batch is not None
    recs = fast.batch.measurepoints
    assert [r[4] for r in recs] == [(None, 3), None, None]
    result = await hub.pipeline.handle(
        payload(items), kind="measurepoint", product_key=hub.quality, origin=hub.origin
    )
    assert result.code == 200
    dev = hub.reg.devices[(hub.quality, "d0")].id
    got = await hub.store.query_samples(dev, ["a", "b", "q"], 0, 100, 100, False, None)
    assert [(s.ts, s.point, s.value, s.quality) for s in got] == [
        (5, "a", 1, None),
        (5, "q", 1.5, 3),
        (6, "a", 2, None),
        (6, "b", 0.5, None),
        (6, "q", 2.5, None),
        (7, "b", 1.5, None),
    ]
