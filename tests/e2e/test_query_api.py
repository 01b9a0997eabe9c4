"""Query API over data ingested through MQTT: raw paging, aggregates, latest, attributes, events."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client, Provisioned, mp_request, provision

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def env(shared_hub: HubProcess, shared_api: httpx.Client) -> Provisioned:
    env = provision(shared_api)
    c = Client(shared_hub, env.username, env.password)
    c.subscribe(f"/sys/{env.pk}/integration/#")
    items = [
        {
            "deviceKey": "dev0",
            "time": T0 + i * 1000,
            "measurepoints": {"temp": float(i), "Power": {"value": i * 2.0, "quality": i % 3}},
        }
        for i in range(100)
    ]
    assert (
        c.request(f"/sys/{env.pk}/integration/measurepoint/post", mp_request("q", items))["code"]
        == 200
    )
    assert (
        c.request(
            f"/sys/{env.pk}/integration/attribute/post",
            mp_request(
                "a",
                [{"deviceKey": "dev0", "attributes": {"mac": "aa:bb"}}],
                "integration.attribute.post",
            ),
        )["code"]
        == 200
    )
    events = [
        {"deviceKey": "dev0", "time": T0 + i, "events": {"overheat": {"level": i}}}
        for i in range(3)
    ]
    assert (
        c.request(
            f"/sys/{env.pk}/integration/event/post",
            mp_request("e", events, "integration.event.post"),
        )["code"]
        == 200
    )
    c.close()
    return env


def base(env: Provisioned) -> str:
    return f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev0"


def test_raw_paging_covers_everything_once(shared_api: httpx.Client, env: Provisioned) -> None:
    seen = []
    cursor = ""
    while True:
        r = shared_api.get(
            base(env) + "/measurepoints",
            params={"points": "temp,Power", "start": T0, "limit": 30, "cursor": cursor},
        )
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [(i["time"], i["point"]) for i in page["items"]]
        if not page["nextCursor"]:
            break
        cursor = page["nextCursor"]
    assert len(seen) == 200 and len(set(seen)) == 200 and seen == sorted(seen)
    desc = shared_api.get(
        base(env) + "/measurepoints", params={"points": "temp", "order": "desc", "limit": 3}
    ).json()
    assert [i["value"] for i in desc["items"]] == [99.0, 98.0, 97.0]
    q = shared_api.get(
        base(env) + "/measurepoints",
        params={"points": "Power", "start": T0 + 5000, "end": T0 + 6000},
    )
    assert q.json()["items"] == [{"point": "Power", "time": T0 + 5000, "value": 10.0, "quality": 2}]


def test_aggregates(shared_api: httpx.Client, env: Provisioned) -> None:
    def agg(fn: str) -> list:
        r = shared_api.get(
            base(env) + "/measurepoints/aggregate",
            params={
                "points": "temp",
                "start": T0,
                "end": T0 + 100_000,
                "interval": 10_000,
                "fn": fn,
            },
        )
        assert r.status_code == 200, r.text
        return list(r.json()["points"]["temp"])

    avg = agg("avg")
    assert len(avg) == 10 and avg[0] == {"time": T0, "value": 4.5} and avg[9]["value"] == 94.5
    assert [b["value"] for b in agg("count")] == [10] * 10
    assert agg("min")[1]["value"] == 10.0 and agg("max")[1]["value"] == 19.0
    assert agg("first")[2]["value"] == 20.0 and agg("last")[2]["value"] == 29.0
    r = shared_api.get(
        base(env) + "/measurepoints/aggregate",
        params={
            "points": "branchCurr",
            "start": T0,
            "end": T0 + 1000,
            "interval": 100,
            "fn": "avg",
        },
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "points"
    r = shared_api.get(base(env) + "/measurepoints/aggregate", params={"interval": 0})
    assert r.status_code in (400, 422)


def test_latest_attributes_events_and_asset_path(
    shared_api: httpx.Client, env: Provisioned
) -> None:
    latest = shared_api.get(base(env) + "/measurepoints/latest").json()
    assert latest["points"]["temp"] == {"time": T0 + 99_000, "value": 99.0}
    asset = latest["assetId"]
    by_asset = shared_api.get(f"/api/v1/orgs/{env.org}/devices/{asset}/measurepoints/latest").json()
    assert by_asset == latest
    attrs = shared_api.get(base(env) + "/attributes").json()["attributes"]
    assert attrs["mac"]["value"] == "aa:bb" and attrs["mac"]["updateTime"] > 0
    events = shared_api.get(base(env) + "/events", params={"start": T0 + 1, "end": T0 + 3}).json()[
        "items"
    ]
    assert events == [
        {"event": "overheat", "time": T0 + 1, "outputs": {"level": 1}},
        {"event": "overheat", "time": T0 + 2, "outputs": {"level": 2}},
    ]


def test_query_errors(shared_api: httpx.Client, env: Provisioned) -> None:
    r = shared_api.get(base(env) + "/measurepoints", params={"points": "nope"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "points"
    r = shared_api.get(base(env) + "/measurepoints", params={"start": 10, "end": 5})
    assert r.status_code == 422 and r.json()["error"]["field"] == "end"
    r = shared_api.get(base(env) + "/measurepoints", params={"cursor": "garbage"})
    assert r.status_code == 422
    r = shared_api.get(f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/ghost/measurepoints")
    assert r.status_code == 404
    r = shared_api.get(f"/api/v1/orgs/{env.org}/devices/noSuchAsset/attributes")
    assert r.status_code == 404
