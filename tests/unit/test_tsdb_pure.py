"""Pure parts of the TSDB API and the storage policies: local times, interpolation,
retention strings, the normalized aggregation."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from headrace.api.tsdb import LocalTime, TsdbError, _aggregate_minutes, _time, _value_at
from headrace.errors import ValidationFailed
from headrace.model.types import ThingModel, TypeSpec
from headrace.state.policies import Policies, PolicyCreate, PolicyModel, retention_ms
from headrace.state.registry import DeviceCreate, OrgCreate, ProductCreate, Registry
from headrace.store.base import Sample
from headrace.store.sqlite.store import SQLiteStore

NY = ZoneInfo("America/New_York")


def test_local_time_formats_and_dst() -> None:
    ts = 1_710_054_000_123  # 2024-03-10T07:00:00.123Z: 03:00 EDT, just after the DST jump
    assert LocalTime(0, False)(ts, NY) == "2024-03-10 03:00:00"
    assert LocalTime(0, True)(ts, NY) == "2024-03-10 03:00:00.123"
    assert LocalTime(1, False)(ts, NY) == "2024-03-10T03:00:00-04:00"
    assert LocalTime(1, True)(ts - 3_600_000, NY) == "2024-03-10T01:00:00.123-05:00"
    assert LocalTime(1, False)(0, ZoneInfo("Asia/Kolkata")) == "1970-01-01T05:30:00+05:30"


def test_time_parsing() -> None:
    assert _time("2024-03-01 08:00:00", "startTime")[0] is True
    local, dt = _time("2024-03-01T08:00:00+08:00", "startTime")
    assert local is False and int(dt.timestamp()) == 1_709_251_200
    assert _time("2024-03-01T00:00:00Z", "startTime")[1].timestamp() == 1_709_251_200
    for bad in ("2024-03-01", "2024-03-01T08:00:00", "2024-02-30 00:00:00", "x"):
        with pytest.raises(TsdbError) as e:
            _time(bad, "startTime")
        assert e.value.code == 80400


def test_value_at() -> None:
    b, a = Sample("p", 0, 10.0, None, 0), Sample("p", 100, 20.0, None, 0)
    assert _value_at(25, b, a, "linear") == 12.5
    assert _value_at(25, b, a, "previous") == 10.0
    assert _value_at(100, b, a, "linear") == 20.0
    assert _value_at(25, None, a, "linear") is None
    assert _value_at(25, b, None, "linear") is None
    assert _value_at(25, b, None, "previous") == 10.0
    s1, s2 = Sample("p", 0, "on", None, 0), Sample("p", 100, "off", None, 0)
    assert _value_at(50, s1, s2, "linear") == "on"


def test_retention_strings() -> None:
    assert retention_ms("30D") == 30 * 86_400_000
    assert retention_ms("6m") == 180 * 86_400_000
    assert retention_ms("1Y") == 365 * 86_400_000
    assert retention_ms("2W") == 14 * 86_400_000
    assert retention_ms("never") is None
    for bad in ("", "0D", "6", "6 months", "-1D", "1H"):
        with pytest.raises(ValueError):
            retention_ms(bad)


def test_aggregate_minutes() -> None:
    minutes = {"t": [(0, 1.0), (60_000, 3.0), (120_000, 5.0), (180_000, 7.0)]}
    logic = [("avg(t)", "avg", "t"), ("count(t)", "count", "t"), ("last(t)", "last", "t")]
    rows = _aggregate_minutes(minutes, logic, 0, 120_000, 2)
    got = {(k, ts): v for k, ts, v, _fn, _p in rows}
    assert got == {
        ("avg(t)", 0): 2.0,
        ("avg(t)", 120_000): 6.0,
        ("count(t)", 0): 2,
        ("count(t)", 120_000): 2,
        ("last(t)", 0): 3.0,
        ("last(t)", 120_000): 7.0,
    }
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


async def test_policies_persist_and_plan_retention(tmp_path: Path) -> None:
    """Policies against a real SQLite store: the retention plan by device id, reloaded."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.start()
    try:
        reg = Registry(store)
        reg.load()
        org = (await reg.create_org(OrgCreate(name="A"))).orgId
        model = ThingModel(
            id="m", measurepoints=[TypeSpec(id="a", type="double"), TypeSpec(id="b", type="int")]
        )
        await reg.create_model(org, model)
        pk = (await reg.create_product(org, ProductCreate(name="P", modelId="m"))).productKey
        await reg.create_devices(org, pk, [DeviceCreate(deviceKey="d0")])
        dev = reg.devices[(pk, "d0")]
        pol = Policies(store, reg)
        pol.load()
        assert pol.retention_plan() == {} and pol.retention_of(dev) == []
        assert pol.retention_of(dev, 5) == [(None, 5)]  # no policy: every point
        p1 = await pol.create(
            org,
            PolicyCreate(
                policyName="a",
                policyType="AI_RAW",
                retention="30D",
                models=[PolicyModel(modelId="m", points=["a"])],
            ),
        )
        assert pol.retention_plan() == {dev.id: [(["a"], 30 * 86_400_000)]}
        # the product's (or the store's) retention covers the points no policy lists
        day = 86_400_000
        assert pol.retention_of(dev, 7 * day) == [(["b"], 7 * day), (["a"], 30 * day)]
        await pol.create(
            org,
            PolicyCreate(
                policyName="all",
                policyType="DI",
                retention="NEVER",
                models=[PolicyModel(modelId="m")],
            ),
        )
        assert pol.retention_of(dev) == []  # NEVER wins for every point
        assert pol.retention_of(dev, 5) == []  # over the product's retention too
        assert pol.serves(org, "m", "b", "DI") and not pol.serves(org, "m", "b", "AI_NORM")
        again = Policies(store, reg)
        again.load()
        assert again.policy(org, p1.policyId).retention == "30D"
        assert again.retention_of(dev) == []
        with pytest.raises(ValidationFailed):
            await pol.create(
                org, PolicyCreate(policyName="x", policyType="DI", retention="6 months")
            )
        with pytest.raises(ValidationFailed):
            await pol.create(
                org,
                PolicyCreate(policyName="x", policyType="DI", models=[PolicyModel(modelId="nope")]),
            )
    finally:
        store.close()
