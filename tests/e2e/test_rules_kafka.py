"""Rules with Kafka sinks against a real Kafka-protocol broker (tansu), read back by an
independent client (aiokafka): two organizations, MQTT history and HTTP real-time data,
different selections and formats."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import HubProcess
from tests.e2e.client_support import wait_for
from tests.e2e.kafka_support import Tansu
from tests.e2e.rules_support import (
    history,
    kafka_rule,
    make_org,
    mqtt_client,
    realtime,
)

T0 = 1_700_000_000_000


def rule_stats(api: httpx.Client, org: str, rule: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/orgs/{org}/rules/{rule}/stats")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_two_orgs_selections_and_the_enos_envelope(
    hub: HubProcess, api: httpx.Client, tansu: Tansu
) -> None:
    a, b = make_org(hub, api), make_org(hub, api)
    topics = [
        f"MEASURE_POINT_ORIGIN_{a.id}",
        f"MEASURE_POINT_ORIGIN_OFFLINE_{a.id}",
        f"MEASURE_POINT_ORIGIN_{b.id}",
        f"MEASURE_POINT_ORIGIN_OFFLINE_{b.id}",
        f"hr-{b.id}",
        f"points-{b.id}",
    ]
    tansu.create_topics(topics)
    # org a: the EnOS default (format enos, EnOS topics); org b: the same, plus real-time
    # "temp" only in headrace's format, plus one device's points as EnOS point records
    ra = kafka_rule(api, a.id, tansu.bootstrap)
    kafka_rule(api, b.id, tansu.bootstrap)
    rh = kafka_rule(
        api,
        b.id,
        tansu.bootstrap,
        select={"sources": ["realtime"], "points": ["temp"]},
        sink={"format": "headrace", "topic": "hr-{orgId}"},
    )
    kafka_rule(
        api,
        b.id,
        tansu.bootstrap,
        select={"devices": [b.assets["dev1"]]},
        sink={"format": "enos-point", "topic": "points-{orgId}", "key": "{assetId}/{pointId}"},
    )
    assert ra["sink"]["format"] == "enos" and ra["sink"]["acks"] == "all"

    sent: dict[tuple[str, str], list[tuple[str, int, dict[str, Any]]]] = defaultdict(list)
    http = httpx.Client(base_url=hub.url, timeout=30)
    clients = {a.id: mqtt_client(hub, a), b.id: mqtt_client(hub, b)}
    try:
        for i in range(20):
            for org in (a, b):
                items = [
                    {"deviceKey": d, "time": T0 + i * 1000, "measurepoints": {"temp": i + k / 10}}
                    for k, d in enumerate(org.env.devices)
                ]
                assert history(clients[org.id], org, items)["code"] == 200
                for it in items:
                    sent[(org.id, "offline")].append(
                        (org.assets[it["deviceKey"]], it["time"], it["measurepoints"])
                    )
                live = [
                    {
                        "deviceKey": d,
                        "time": T0 + 10**7 + i * 1000,
                        "measurepoints": {"temp": -i, "mode": i % 2},
                    }
                    for d in org.env.devices[:2]
                ]
                realtime(http, org, live)
                for it in live:
                    sent[(org.id, "realtime")].append(
                        (org.assets[it["deviceKey"]], it["time"], it["measurepoints"])
                    )
    finally:
        for c in clients.values():
            c.close()
        http.close()

    for org in (a, b):
        for source, name in (
            ("offline", "MEASURE_POINT_ORIGIN_OFFLINE_"),
            ("realtime", "MEASURE_POINT_ORIGIN_"),
        ):
            want = sent[(org.id, source)]
            got = tansu.read(name + org.id, count=len(want))
            assert len(got) == len(want), (name, len(got), len(want))
            # the EnOS envelope, exactly
            for m in got:
                v = m["value"]
                assert set(v) == {"orgId", "modelId", "modelIdPath", "payload"}
                assert v["orgId"] == org.id  # nothing of the other organization
                assert v["modelId"] == "inverter" and v["modelIdPath"] == "/inverter"
                assert len(v["payload"]) == 1
                assert set(v["payload"][0]) == {"assetId", "time", "measurepoints"}
                assert m["key"] == v["payload"][0]["assetId"]  # keyed by device
            seen = sorted(
                (p["assetId"], p["time"], tuple(sorted(p["measurepoints"].items())))
                for p in (m["value"]["payload"][0] for m in got)
            )
            assert seen == sorted((x, t, tuple(sorted(mp.items()))) for x, t, mp in want)
            # per device, the order it was stored in (one partition per device)
            by_device: dict[str, list[int]] = defaultdict(list)
            partitions: dict[str, set[int]] = defaultdict(set)
            for m in sorted(got, key=lambda m: (m["partition"], m["offset"])):
                p = m["value"]["payload"][0]
                by_device[p["assetId"]].append(p["time"])
                partitions[p["assetId"]].add(m["partition"])
            for asset, times in by_device.items():
                assert times == sorted(times), asset
                assert len(partitions[asset]) == 1

    # the headrace format: b's real-time records, trimmed to "temp", and the online
    # records of the two devices that sent real-time data (every kind is selected)
    n_live = len(sent[(b.id, "realtime")])
    hr = tansu.read(f"hr-{b.id}", count=n_live + 2)
    assert len(hr) == n_live + 2
    online = [m["value"] for m in hr if m["value"]["kind"] == "online"]
    assert sorted(v["assetId"] for v in online) == sorted(b.assets[d] for d in b.env.devices[:2])
    assert all(v["content"] == {"ip": "127.0.0.1"} for v in online)
    for m in hr:
        if m["value"]["kind"] == "online":
            continue
        v = m["value"]
        assert v["org"] == b.id and v["source"] == "realtime" and v["kind"] == "measurepoint"
        assert set(v["content"]["measurepoints"]) == {"temp"}
        assert v["seq"] > 0 and v["at"] > 0 and v["product"] == b.env.pk
        assert {"model", "assetId", "deviceKey", "time"} <= set(v)
    # EnOS point records of dev1 only: one per point
    dev1 = b.assets["dev1"]
    n_points = sum(
        len(mp) for x, _t, mp in sent[(b.id, "offline")] + sent[(b.id, "realtime")] if x == dev1
    )
    pts = tansu.read(f"points-{b.id}", count=n_points)
    assert len(pts) == n_points
    for m in pts:
        v = m["value"]
        assert set(v) == {
            "orgId",
            "modelId",
            "modelIdPath",
            "assetId",
            "pointId",
            "time",
            "value",
            "quality",
            "attr",
        }
        assert v["assetId"] == dev1 and m["key"] == f"{dev1}/{v['pointId']}" and v["attr"] == {}

    st = wait_for(
        lambda: (s := rule_stats(api, b.id, rh["ruleId"]))["lagRecords"] == 0 and s,
        what="rule caught up",
    )
    assert st["matched"] == len(hr) and st["delivered"] == len(hr)
    assert st["deadLettered"] == 0 and st["lastError"] is None
    text = api.get("/metrics").text
    assert (
        f'headrace_rule_delivered_total{{org="{b.id}",rule="{rh["ruleId"]}"}} {len(hr)}.0' in text
    )
    assert "headrace_stream_head" in text


def test_a_rule_reads_from_now_and_replays(tmp_path: Path, tansu: Tansu) -> None:
    # the stream keeps an hour of what every consumer is done with, for replays
    hub = HubProcess(tmp_path / "data", extra=["--set", "stream.replay_seconds=3600"])
    hub.start()
    try:
        replays(hub, tansu)
    finally:
        hub.stop()


def replays(hub: HubProcess, tansu: Tansu) -> None:
    api = hub.client()
    a = make_org(hub, api)
    tansu.create_topics([f"MEASURE_POINT_ORIGIN_{a.id}", "replay"])
    http = httpx.Client(base_url=hub.url, timeout=30)
    keep = kafka_rule(api, a.id, tansu.bootstrap)  # keeps the stream's records for itself
    realtime(http, a, [{"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1.0}}])
    wait_for(lambda: rule_stats(api, a.id, keep["ruleId"])["delivered"] == 1)
    time.sleep(0.25)  # the stream's time index has 100 ms steps
    mark = int(time.time() * 1000)
    r = kafka_rule(api, a.id, tansu.bootstrap, sink={"format": "headrace", "topic": "replay"})
    realtime(http, a, [{"deviceKey": "dev0", "time": T0 + 1, "measurepoints": {"temp": 2.0}}])
    got = tansu.read("replay", count=1)
    assert [m["value"]["time"] for m in got] == [T0 + 1]  # a new rule starts at the head

    rid = r["ruleId"]
    assert api.post(f"/api/v1/orgs/{a.id}/rules/{rid}/pause").json()["enabled"] is False
    realtime(http, a, [{"deviceKey": "dev0", "time": T0 + 2, "measurepoints": {"temp": 3.0}}])
    time.sleep(1)
    assert len(tansu.read("replay", quiet=1)) == 1  # paused: nothing sent
    assert rule_stats(api, a.id, rid)["lagRecords"] >= 1
    assert api.post(f"/api/v1/orgs/{a.id}/rules/{rid}/resume").json()["enabled"] is True
    got = tansu.read("replay", count=2)
    assert [m["value"]["time"] for m in got] == [T0 + 1, T0 + 2]  # resumed where it stopped

    # replay from a position: the first record again, then the rest
    first = got[0]["value"]["seq"]
    r2 = api.post(f"/api/v1/orgs/{a.id}/rules/{rid}/replay", json={"position": first - 2})
    assert r2.status_code == 200, r2.text
    got = tansu.read("replay", count=5)
    assert [m["value"]["time"] for m in got][2:] == [T0, T0 + 1, T0 + 2]
    # and from a time
    r3 = api.post(f"/api/v1/orgs/{a.id}/rules/{rid}/replay", json={"time": mark})
    assert r3.status_code == 200, r3.text
    got = tansu.read("replay", count=7)
    assert [m["value"]["time"] for m in got][5:] == [T0 + 1, T0 + 2]
    http.close()
    api.close()
