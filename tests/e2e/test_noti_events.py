"""Event derivation against a real hub (protocols.md C.3): status kv from measurepoints and
attributes, raw data through a parsing script, fault/alert events with stable ids,
online/offline from real-time HTTP data."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client as MqttClient
from tests.e2e.noti_support import (
    HttpProducer,
    Noti,
    Producer,
    Tenant,
    enterprise,
    tenant,
)

COMMON = {"cmd", "delivery_id", "event_type", "product_key", "did", "mac", "group_id", "created_at"}


@pytest.fixture(scope="module")
def t(shared_api: httpx.Client) -> Tenant:
    return tenant(shared_api, inactivity=1)


@pytest.fixture(scope="module")
def producer(shared_hub: HubProcess, t: Tenant) -> Iterator[Producer]:
    p = Producer(shared_hub, t)
    yield p
    p.close()


@pytest.fixture
def noti(shared_hub: HubProcess) -> Iterator[Noti]:
    n = Noti(shared_hub)
    yield n
    n.close()


def take(n: Noti, count: int) -> list[dict[str, Any]]:
    got = n.pushes(count)
    for p in got:
        n.ack(p["delivery_id"])
    return got


def test_status_kv_from_measurepoints_and_attributes(
    shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti
) -> None:
    eid, secret = enterprise(shared_api, t, types=["device_status_kv"])
    noti.login(eid, secret, 10)
    ts = int(time.time() * 1000) - 5000
    producer.measurepoints([("d0", {"temp": 21.5, "seq": 1}), ("d0", {"temp": 22.0})], ts=ts)
    a, b = take(noti, 2)
    assert set(a) == COMMON | {"data"}
    assert a["event_type"] == "device_status_kv" and a["product_key"] == t.pk
    assert a["did"] == t.assets["d0"] and a["group_id"] == "g1" and a["mac"] == ""
    assert a["data"] == {"temp": 21.5, "seq": 1} and b["data"] == {"temp": 22.0}
    assert a["created_at"] == ts / 1000 and b["created_at"] == (ts + 1) / 1000  # record times
    # attributes: a kv event too, and a stored "mac" attribute fills "mac" from then on
    producer.attributes("d0", {"mac": "00:1A:2B:3C:4D:5E", "site": "north"})
    (c,) = take(noti, 1)
    assert c["data"] == {"mac": "00:1A:2B:3C:4D:5E", "site": "north"}
    assert c["mac"] == "00:1A:2B:3C:4D:5E" and abs(c["created_at"] - time.time()) < 10
    producer.measurepoints([("d0", {"temp": 1.0}), ("d1", {"temp": 2.0})])
    d0, d1 = take(noti, 2)
    assert d0["mac"] == "00:1A:2B:3C:4D:5E" and d1["mac"] == "" and d1["group_id"] == ""


def test_big_status_is_split_under_8_kib(
    shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti
) -> None:
    eid, secret = enterprise(shared_api, t, types=["device_status_kv"])
    noti.login(eid, secret, 10)
    big = {"note": "x" * 5000, "remark": "y" * 5000, "temp": 1.5, "seq": 7}
    producer.measurepoints([("d1", big)])
    producer.measurepoints([("d1", {"seq": 8})])
    first = noti.recv()
    parts = [first]
    while parts[-1]["data"].get("seq") != 8:
        parts.append(noti.recv())
    *split, _last = parts
    assert len(split) >= 2  # one line would be over 10 KiB
    merged: dict[str, Any] = {}
    for p in split:
        merged.update(p["data"])
        assert len(json.dumps(p, separators=(",", ":"))) < 8 * 1024
        assert p["created_at"] == split[0]["created_at"]
    assert merged == big


def test_fault_and_alert_events_share_an_id_per_occurrence(
    shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti
) -> None:
    eid, secret = enterprise(shared_api, t, types=["attr_fault", "attr_alert"])
    noti.login(eid, secret, 10)
    now = int(time.time() * 1000)
    producer.measurepoints([("d2", {"burner_fault": False, "pressure_alert": 0})], ts=now)
    noti.nothing(0.4)  # 0 from the start is no event
    producer.measurepoints([("d2", {"burner_fault": True, "pressure_alert": 2})], ts=now + 10)
    fault, alert = take(noti, 2)
    assert set(fault) == COMMON | {"event_id", "data"}
    assert fault["event_type"] == "attr_fault" and alert["event_type"] == "attr_alert"
    assert fault["data"] == {
        "attr_name": "burner_fault",
        "attr_displayname": "Burner fault",
        "value": 1,
    }
    assert alert["data"] == {
        "attr_name": "pressure_alert",
        "attr_displayname": "Pressure alert",
        "value": 1,
    }
    assert str(uuid.UUID(fault["event_id"])) == fault["event_id"]
    assert fault["event_id"] != alert["event_id"]
    assert fault["created_at"] == (now + 10) / 1000
    # still faulty: nothing new; history older than the state changes nothing either
    producer.measurepoints([("d2", {"burner_fault": True})], ts=now + 20)
    producer.measurepoints([("d2", {"burner_fault": False})], ts=now - 1000)
    noti.nothing(0.4)
    producer.measurepoints([("d2", {"burner_fault": False, "pressure_alert": 0})], ts=now + 30)
    cleared, alert_cleared = take(noti, 2)
    assert cleared["data"]["value"] == 0 and cleared["event_id"] == fault["event_id"]
    assert alert_cleared["data"]["value"] == 0 and alert_cleared["event_id"] == alert["event_id"]
    # the next occurrence is a new fault with a new id
    producer.measurepoints([("d2", {"burner_fault": True})], ts=now + 40)
    (again,) = take(noti, 1)
    assert again["data"]["value"] == 1 and again["event_id"] != fault["event_id"]


def all_offline(api: httpx.Client, t: Tenant) -> None:
    """Wait until real-time data of earlier tests no longer keeps a device of ``t`` online
    (the product's inactivity timeout is 1 s) and those changes are written: their
    device_offline events go to the enterprises of then, not to a test's new one."""

    def settled() -> bool:
        for st in api.get(f"/api/v1/orgs/{t.org}/online").json()["items"]:
            changes = api.get(
                f"/api/v1/orgs/{t.org}/devices/{st['assetId']}/online/changes",
                params={"limit": 1000},
            ).json()["items"]
            if st["online"] or (changes and changes[-1]["online"]):
                return False
        return True

    deadline = time.monotonic() + 10
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert settled()
    time.sleep(0.2)  # a change's listeners run right after its write


def test_online_offline_from_real_time_http(
    shared_hub: HubProcess, shared_api: httpx.Client, t: Tenant, noti: Noti
) -> None:
    all_offline(shared_api, t)
    eid, secret = enterprise(
        shared_api, t, types=["device_online", "device_offline", "device_status_kv"]
    )
    noti.login(eid, secret, 10)
    http = HttpProducer(shared_hub, t)
    try:
        http.measurepoints("d1", {"temp": 5.0})
        online, kv = take(noti, 2)
        # online comes ahead of the device's data
        assert online["event_type"] == "device_online" and kv["event_type"] == "device_status_kv"
        assert set(online) == COMMON | {"ip", "country", "region", "city"}
        assert online["ip"] == "127.0.0.1" and online["country"] == online["city"] == ""
        assert online["did"] == t.assets["d1"]
        http.measurepoints("d1", {"temp": 6.0})
        (kv2,) = take(noti, 1)  # still online: no second online event
        assert kv2["event_type"] == "device_status_kv"
        # the product's inactivity timeout is 1 s
        (offline,) = take(noti, 1)
        assert offline["event_type"] == "device_offline" and set(offline) == COMMON
        assert offline["created_at"] >= kv2["created_at"] + 0.9
        http.measurepoints("d1", {"temp": 7.0})
        assert [p["event_type"] for p in take(noti, 2)] == ["device_online", "device_status_kv"]
    finally:
        http.close()


def test_online_offline_from_real_time_mqtt(
    shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti
) -> None:
    """isRealtimeIntegration over MQTT is real-time data too: online ahead of the data,
    offline after the inactivity timeout."""
    all_offline(shared_api, t)
    eid, secret = enterprise(
        shared_api, t, types=["device_online", "device_offline", "device_status_kv"]
    )
    noti.login(eid, secret, 10)
    producer.measurepoints([("d2", {"temp": 5.0})])
    online, kv = take(noti, 2)
    assert online["event_type"] == "device_online" and kv["event_type"] == "device_status_kv"
    assert online["did"] == t.assets["d2"] and online["ip"] == "127.0.0.1"
    producer.measurepoints([("d2", {"temp": 6.0})])
    (kv2,) = take(noti, 1)
    assert kv2["event_type"] == "device_status_kv"
    (offline,) = take(noti, 1)
    assert offline["event_type"] == "device_offline" and offline["did"] == t.assets["d2"]
    st = shared_api.get(f"/api/v1/orgs/{t.org}/devices/{t.assets['d2']}/online").json()
    assert st["online"] is False and st["ip"] == "127.0.0.1"


def test_history_never_changes_online_state(
    shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti
) -> None:
    eid, secret = enterprise(
        shared_api, t, types=["device_online", "device_status_kv"], historyEvents=True
    )
    noti.login(eid, secret, 10)
    producer.measurepoints([("d2", {"temp": 1.0})], realtime=False)
    (kv,) = take(noti, 1)
    assert kv["event_type"] == "device_status_kv"
    noti.nothing(0.4)


DECODER = """
function rawDataToJsonStr(rawData) {
  var b = rawData.map(function (x) { return x & 0xff; });
  return JSON.stringify({id: "r", version: "1.0", method: "integration.measurepoint.post",
    params: [{deviceKey: "d" + b[0], measurepoints: {temp: b[1] / 2, burner_fault: b[2] == 1}}]});
}
"""


def test_raw_data_events(shared_hub: HubProcess, shared_api: httpx.Client, noti: Noti) -> None:
    t = tenant(shared_api)
    r = shared_api.post(
        f"/api/v1/orgs/{t.org}/products",
        json={"name": "raw", "modelId": "boiler", "dataFormat": "custom"},
    )
    raw_pk = r.json()["productKey"]
    shared_api.post(
        f"/api/v1/orgs/{t.org}/products/{raw_pk}/devices", json=[{"deviceKey": "d3"}]
    ).raise_for_status()
    r = shared_api.put(f"/api/v1/orgs/{t.org}/products/{raw_pk}/script", content=DECODER)
    assert r.status_code == 200, r.text
    ch = shared_api.post(
        f"/api/v1/orgs/{t.org}/channels", json={"name": "raw", "products": [raw_pk]}
    ).json()
    body = {
        "name": "raw app",
        "products": [raw_pk],
        "eventTypes": ["device_status_raw", "device_status_kv", "attr_fault"],
        "historyEvents": True,
    }
    e = shared_api.post(f"/api/v1/orgs/{t.org}/enterprises", json=body).json()
    noti.login(e["enterpriseId"], e["enterpriseSecret"], 10)
    mqtt = MqttClient(shared_hub, ch["username"], ch["password"])
    try:
        topic = f"/sys/{raw_pk}/integration/model/up_raw"
        mqtt.subscribe(topic + "_reply")
        payload = bytes([3, 41, 1, 0xFF])
        mqtt.publish(topic, payload)
        mqtt.reply()
        raw, kv, fault = take(noti, 3)
    finally:
        mqtt.close()
    assert raw["event_type"] == "device_status_raw" and set(raw) == COMMON | {"data"}
    assert base64.b64decode(raw["data"]) == payload and raw["product_key"] == raw_pk
    assert kv["data"] == {"temp": 20.5, "burner_fault": True}
    assert fault["event_type"] == "attr_fault" and fault["data"]["value"] == 1
    assert raw["did"] == kv["did"] == fault["did"]
