"""Pure parts of the data subscription: which stream records a job selects, the EnOS
message value of a record, partitions by device."""

from __future__ import annotations

import json
from typing import Any

from headrace.proto.subscription import (
    SUB_ADVANCED_ALERT,
    SUB_ALERT,
    SUB_EVENT,
    SUB_OFFLINE,
    SUB_REALTIME,
)
from headrace.push.subscriptions import job_filter, message_value, partition_of
from headrace.state.subscriptions import JobFilter, SubscriptionJob
from headrace.stream import Record


def job(**kw: Any) -> SubscriptionJob:
    base: dict[str, Any] = {"orgId": "o1", "subId": "sub-1", "name": "j", "partitions": 8}
    return SubscriptionJob(**{**base, **kw})


def record(kind: str = "measurepoint", **kw: Any) -> Record:
    base: dict[str, Any] = {
        "seq": 7,
        "at": 1000,
        "org": "o1",
        "product": "p1",
        "model": "meter",
        "assetId": "A1",
        "deviceKey": "d1",
        "source": "realtime",
        "kind": kind,
        "time": 123,
        "content": {"measurepoints": {"temp": 21.5, "Power": 3}},
    }
    return Record(**{**base, **kw})


def test_time_series_value_is_the_enos_shape() -> None:
    v = json.loads(message_value(job(), record()) or "")
    assert v == {
        "orgId": "o1",
        "modelId": "meter",
        "payload": [{"assetId": "A1", "time": 123, "points": '{"temp":21.5,"Power":3}'}],
    }
    assert isinstance(v["payload"][0]["points"], str)


def test_point_filter_trims_and_drops() -> None:
    j = job(filter=JobFilter(measurepoints=["temp"]))
    v = json.loads(message_value(j, record()) or "")
    assert json.loads(v["payload"][0]["points"]) == {"temp": 21.5}
    other = record(content={"measurepoints": {"Power": 1}})
    assert message_value(j, other) is None


def test_event_and_alert_values() -> None:
    ev = record("event", content={"events": {"overheat": {"level": 3}}})
    v = json.loads(message_value(job(type="event"), ev) or "")
    item = v["payload"][0]
    assert item["eventType"] == "event" and json.loads(item["data"]) == {"overheat": {"level": 3}}
    off = json.loads(message_value(job(type="event"), record("offline", content={})) or "")
    assert off["payload"][0]["eventType"] == "offline"
    al = record("fault", content={"point": "fan", "name": "Fan", "value": True, "eventId": "e"})
    item = json.loads(message_value(job(type="alert"), al) or "")["payload"][0]
    assert item["alertType"] == "fault" and json.loads(item["data"])["point"] == "fan"


def test_job_filters() -> None:
    f = job_filter(job(filter=JobFilter(models=["meter"], devices=["A1"], measurepoints=["temp"])))
    assert f.orgs == ["o1"] and f.kinds == ["measurepoint"] and f.sources == ["realtime"]
    assert f.match(record())
    assert not f.match(record(org="o2"))
    assert not f.match(record(assetId="A2", deviceKey="d2"))
    assert not f.match(record(source="offline"))
    assert not f.match(record(content={"measurepoints": {"Power": 1}}))
    offline = job_filter(job(channel="offline"))
    assert offline.match(record(source="offline")) and not offline.match(record())
    events = job_filter(job(type="event"))
    assert events.match(record("online", content={})) and not events.match(record())


def test_categories() -> None:
    assert job().categories() == (SUB_REALTIME,)
    assert job(channel="offline").categories() == (SUB_OFFLINE,)
    assert job(type="event").categories() == (SUB_EVENT,)
    assert job(type="alert").categories() == (SUB_ALERT, SUB_ADVANCED_ALERT)


def test_partitions_are_stable_and_spread() -> None:
    assert partition_of("A1", 8) == partition_of("A1", 8)
    spread = {partition_of(f"asset{i}", 8) for i in range(200)}
    assert spread == set(range(8))
    assert all(partition_of(f"a{i}", 1) == 0 for i in range(10))
