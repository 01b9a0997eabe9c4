"""EnOS TSDB data API v2.1 (data-out.md F) and storage policies (G) against a running hub.

Data goes in over MQTT (paho) and the HTTP integration API (httpx); it comes out through
``/tsdb-service/v2.1/...`` with a service account's access token, and is compared with what
the admin query API answers for the same devices.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.http_support import get_token
from tests.e2e.mqtt_support import Client, mp_request

TSDB = "/tsdb-service/v2.1"
# 2024-03-01T00:00:00Z: a whole day of data, one sample a minute per point
DAY0 = 1_709_251_200_000
SHANGHAI = ZoneInfo("Asia/Shanghai")

MODEL = {
    "id": "meter",
    "attributes": [{"id": "timezone", "type": "string"}],
    "measurepoints": [
        {"id": "temp", "type": "double"},
        {"id": "Power", "type": "float", "withQuality": True},
        {"id": "mode", "type": "enum", "enum": {"0": "off", "1": "on", "2": "auto"}},
        {"id": "running", "type": "bool"},
        {"id": "label", "type": "string"},
    ],
}


class Env:
    def __init__(self, hub: HubProcess, api: httpx.Client):
        self.hub = hub
        self.api = api
        org = api.post("/api/v1/orgs", json={"name": "tsdb " + uuid.uuid4().hex[:6]}).json()
        self.org = org["orgId"]
        api.post(f"/api/v1/orgs/{self.org}/models", json=MODEL).raise_for_status()
        r = api.post(
            f"/api/v1/orgs/{self.org}/products",
            json={"name": "meters", "modelId": "meter", "timezone": "Asia/Shanghai"},
        )
        assert r.status_code == 201, r.text
        self.pk = r.json()["productKey"]
        r = api.post(
            f"/api/v1/orgs/{self.org}/products/{self.pk}/devices",
            json=[{"deviceKey": f"m{i}", "assetId": f"{self.org}-m{i}"} for i in range(4)],
        )
        assert r.status_code == 201, r.text
        self.assets = [f"{self.org}-m{i}" for i in range(4)]
        ch = api.post(
            f"/api/v1/orgs/{self.org}/channels", json={"name": "ch", "products": [self.pk]}
        ).json()
        self.channel = ch
        sa = api.post(f"/api/v1/orgs/{self.org}/service-accounts", json={"name": "app"}).json()
        self.app_key, self.secret = sa["appKey"], sa["appSecret"]
        self.token = get_token(hub.url, self.app_key, self.secret)
        self.http = httpx.Client(base_url=hub.url, timeout=120)

    def call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        org: str | None = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        return self.http.post(
            TSDB + path,
            params={"orgId": org or self.org, **(params or {})},
            json=body,
            headers={"apim-accesstoken": self.token if token is None else token},
        )

    def ok(self, path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        r = self.call(path, body, **kw)
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["code"] == 0 and b["msg"] == "OK" and "submsg" in b, b
        return dict(b["data"]) if b["data"] is not None else {}

    def error(self, path: str, body: dict[str, Any], code: int, **kw: Any) -> str:
        r = self.call(path, body, **kw)
        b = r.json()
        assert b["code"] == code, b
        assert b["data"] is None and b["msg"], b
        return str(b["msg"])

    def pages(self, path: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Every item of a query, following ``pointer`` to the end; and the page count."""
        items: list[dict[str, Any]] = []
        pointer = None
        n = 0
        while True:
            data = self.ok(path, {**body, **({"pointer": pointer} if pointer else {})})
            n += 1
            items += data["items"]
            pointer = data["pointer"]
            if pointer is None:
                return items, n
            assert n < 1000


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.fixture(scope="module")
def env(shared_hub: HubProcess, shared_api: httpx.Client) -> Iterator[Env]:
    e = Env(shared_hub, shared_api)
    fill(e)
    yield e
    e.http.close()


def fill(e: Env) -> None:
    shared_hub = e.hub
    c = Client(shared_hub, e.channel["username"], e.channel["password"])
    c.subscribe(f"/sys/{e.pk}/integration/#")
    # m0, m1 over MQTT: a day of minutes; temp, Power (with quality), mode, running
    for dk in ("m0", "m1"):
        for chunk in range(0, 1440, 240):
            items = [
                {
                    "deviceKey": dk,
                    "time": DAY0 + i * 60_000,
                    "measurepoints": {
                        "temp": float(i),
                        "Power": {"value": i * 0.5, "quality": i % 3},
                        "mode": (i // 100) % 3,
                        "running": (i // 300) % 2 == 1,
                    },
                }
                for i in range(chunk, chunk + 240)
            ]
            reply = c.request(f"/sys/{e.pk}/integration/measurepoint/post", mp_request("d", items))
            assert reply["code"] == 200, reply
    c.close()
    # m2 over HTTP integration: a few samples, a string point, its own time zone
    r = e.http.post(
        "/connect-service/v2.1/integration",
        params={"action": "postAttribute", "orgId": e.org},
        json={
            "id": "a1",
            "version": "1.0",
            "method": "integration.attribute.post",
            "params": [
                {
                    "productKey": e.pk,
                    "deviceKey": "m2",
                    "attributes": {"timezone": "America/New_York"},
                }
            ],
        },
        headers={"apim-accesstoken": e.token},
    )
    assert r.json()["code"] == 0, r.text
    r = e.http.post(
        "/connect-service/v2.1/integration",
        params={"action": "postMeasurepoint", "orgId": e.org},
        json={
            "id": "m1",
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": [
                {
                    "productKey": e.pk,
                    "deviceKey": "m2",
                    "time": DAY0 + i * 3_600_000,
                    "measurepoints": {"temp": 20.0 + i, "label": f"L{i}"},
                }
                for i in range(24)
            ],
        },
        headers={"apim-accesstoken": e.token},
    )
    assert r.json()["code"] == 0, r.text


def day(hours: int = 24) -> dict[str, str]:
    return {"startTime": utc(DAY0), "endTime": utc(DAY0 + hours * 3_600_000)}


# -- ai, raw, generic, item formats, equality with the admin query API ---------------------


def test_ai_every_item_format_matches_the_query_api(env: Env) -> None:
    a = env.assets[0]
    q = env.api.get(
        f"/api/v1/orgs/{env.org}/devices/{a}/measurepoints",
        params={"points": "temp,Power", "start": DAY0, "end": DAY0 + 7_200_000, "limit": 10000},
    ).json()["items"]
    admin = {(i["time"], i["point"]): (i["value"], i.get("quality")) for i in q}
    assert len(admin) == 240
    body = {"assetIds": a, "pointIds": "temp,Power", "withQuality": True, **day(2)}
    f0 = env.ok("/ai", {**body, "itemFormat": 0})
    got0 = {}
    for it in f0["items"]:
        point = "temp" if "temp" in it else "Power"
        assert set(it) == {"assetId", "timestamp", "localtime", point, "quality"}
        got0[(it["timestamp"], point)] = (it[point], it["quality"])
    assert got0 == admin and f0["pointer"] is None
    f1 = env.ok("/ai", {**body, "itemFormat": 1})["items"]
    assert len(f1) == 120
    for it in f1:
        assert (it["temp"], None) == admin[(it["timestamp"], "temp")]
        assert (it["Power"], it["quality"]["Power"]) == admin[(it["timestamp"], "Power")]
    f2 = env.ok("/ai", {**body, "itemFormat": 2})["items"]
    assert {c["pointId"] for c in f2} == {"temp", "Power"}
    for c in f2:
        assert set(c) == {"assetId", "pointId", "localTime", "timestamp", "value", "dataQuality"}
        assert len(c["timestamp"]) == len(c["value"]) == len(c["localTime"]) == 120
        for ts, v, qq in zip(c["timestamp"], c["value"], c["dataQuality"], strict=True):
            assert admin[(ts, c["pointId"])] == (v, qq)
    # without withQuality no quality field
    assert "quality" not in env.ok("/ai", {**body, "withQuality": "false"})["items"][0]


def test_ai_refuses_non_numeric_points_and_raw_serves_them(env: Env) -> None:
    msg = env.error("/ai", {"assetIds": env.assets[2], "pointIds": "label", **day()}, 80400)
    assert "label" in msg
    items = env.ok("/raw", {"assetIds": env.assets[2], "pointIds": "label,temp", **day()})["items"]
    labels = [i["label"] for i in items if "label" in i]
    assert labels == [f"L{i}" for i in range(24)]
    gen = env.ok("/generic", {"assetIds": env.assets[2], "pointIds": "label", **day()})["items"]
    assert [i["label"] for i in gen] == labels


def test_raw_order_by_desc(env: Env) -> None:
    body = {"assetIds": env.assets[0], "pointIds": "temp", "pageSize": 5, **day()}
    desc = env.ok("/raw", {**body, "orderBy": "timestamp desc"})
    assert [i["temp"] for i in desc["items"]] == [1439.0, 1438.0, 1437.0, 1436.0, 1435.0]
    asc = env.ok("/raw", {**body, "orderBy": "timestamp asc"})
    assert [i["temp"] for i in asc["items"]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert env.error("/raw", {**body, "orderBy": "value"}, 80400)


# -- time formats and zones ------------------------------------------------------------------


def test_local_time_format_is_each_devices_zone(env: Env) -> None:
    # the product's zone (Asia/Shanghai) for m0, the device attribute (New York) for m2
    local = {"startTime": "2024-03-01 08:00:00", "endTime": "2024-03-01 09:00:00"}
    items = env.ok("/ai", {"assetIds": env.assets[0], "pointIds": "temp", **local})["items"]
    # 08:00 in Shanghai is 00:00 UTC: DAY0
    assert items[0]["timestamp"] == DAY0 and items[0]["localtime"] == "2024-03-01 08:00:00"
    assert len(items) == 60
    ny = {"startTime": "2024-02-29 19:00:00", "endTime": "2024-02-29 21:00:00"}
    it = env.ok(
        "/ai",
        {"assetIds": env.assets[2], "pointIds": "temp", "localTimeFormat": 1, **ny},
    )["items"]
    # 19:00 in New York (UTC-5 in winter) is 00:00 UTC
    assert [i["timestamp"] for i in it] == [DAY0, DAY0 + 3_600_000]
    assert it[0]["localtime"] == "2024-02-29T19:00:00-05:00"
    # UTC format: the same instant for every device, localtime in each zone, with ms
    both = env.ok(
        "/ai",
        {
            "assetIds": ",".join([env.assets[0], env.assets[2]]),
            "pointIds": "temp",
            "startTime": "2024-03-01T08:00:00+08:00",
            "endTime": "2024-03-01T08:01:00+08:00",
            "localTimeFormat": 1,
            "localTimeAccuracy": True,
        },
    )["items"]
    assert [(i["assetId"], i["localtime"]) for i in both] == [
        (env.assets[0], "2024-03-01T08:00:00.000+08:00"),
        (env.assets[2], "2024-02-29T19:00:00.000-05:00"),
    ]
    assert env.error(
        "/ai",
        {
            "assetIds": env.assets[0],
            "pointIds": "temp",
            "startTime": "2024-03-01 08:00:00",
            "endTime": "2024-03-01T09:00:00+08:00",
        },
        80400,
    )
    assert "YYYY-MM-DD HH:MM:SS" in env.error(
        "/ai",
        {
            "assetIds": env.assets[0],
            "pointIds": "temp",
            "startTime": "yesterday",
            "endTime": "today",
        },
        80400,
    )


# -- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [0, 1, 2])
def test_paging_to_the_end_of_a_large_range(env: Env, fmt: int) -> None:
    body = {
        "assetIds": ",".join(env.assets[:2]),
        "pointIds": "temp,Power",
        "pageSize": 100,
        "itemFormat": fmt,
        **day(),
    }
    items, pages = env.pages("/ai", body)
    assert pages == 15  # 1440 samples a point, 100 a page
    seen: list[tuple[str, int, str]] = []
    for it in items:
        if fmt == 2:
            seen += [(it["assetId"], ts, it["pointId"]) for ts in it["timestamp"]]
        else:
            seen += [(it["assetId"], it["timestamp"], p) for p in ("temp", "Power") if p in it]
    assert len(seen) == 2 * 2 * 1440 and len(set(seen)) == len(seen)
    # a pointer from another query is refused
    first = env.ok("/ai", body)
    other = {**body, "pointIds": "temp"}
    assert "pointer" in env.error("/ai", {**other, "pointer": first["pointer"]}, 80400)
    assert env.error("/ai", {**body, "pointer": "not-a-pointer"}, 80400)
    # a pointer of the right query whose cursors were tampered with
    raw = json.loads(
        base64.urlsafe_b64decode(first["pointer"] + "=" * (-len(first["pointer"]) % 4))
    )
    raw["c"] = {a: ["x", 1] for a in raw["c"]}
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    assert env.error("/ai", {**body, "pointer": forged}, 80400)


def test_page_size_bounds_each_point(env: Env) -> None:
    data = env.ok(
        "/ai", {"assetIds": env.assets[0], "pointIds": "temp,Power", "pageSize": 7, **day()}
    )
    counts: dict[str, int] = {}
    for it in data["items"]:
        for p in ("temp", "Power"):
            counts[p] = counts.get(p, 0) + (p in it)
    assert counts == {"temp": 7, "Power": 7} and data["pointer"]


# -- di and ai-normalized -------------------------------------------------------------------


def test_di_returns_state_changes_across_pages(env: Env) -> None:
    body = {"assetIds": env.assets[0], "pointIds": "mode,running", **day()}
    items = env.ok("/di", body)["items"]
    modes = [(i["timestamp"], i["mode"]) for i in items if "mode" in i]
    assert modes == [(DAY0 + m * 60_000, (m // 100) % 3) for m in range(0, 1440, 100)]
    runs = [(i["timestamp"], i["running"]) for i in items if "running" in i]
    assert runs == [(DAY0 + m * 60_000, (m // 300) % 2 == 1) for m in range(0, 1440, 300)]
    paged, pages = env.pages("/di", {**body, "pageSize": 2})
    assert pages > 1 and sorted(json.dumps(i, sort_keys=True) for i in paged) == sorted(
        json.dumps(i, sort_keys=True) for i in items
    )
    assert env.error("/di", {**body, "pointIds": "temp"}, 80400)


def test_ai_normalized_with_logic_and_interval(env: Env) -> None:
    body = {"assetIds": env.assets[0], "startTime": utc(DAY0), "endTime": utc(DAY0 + 3_600_000)}
    data = env.ok(
        "/ai-normalized",
        {**body, "pointIdsWithLogic": "avg(temp),max(Power),count(temp)", "interval": 10},
    )
    by = {}
    for it in data["items"]:
        for k in ("avg(temp)", "max(Power)", "count(temp)"):
            if k in it:
                by[(it["timestamp"], k)] = it[k]
    assert by[(DAY0, "avg(temp)")] == pytest.approx(4.5)
    assert by[(DAY0 + 600_000, "max(Power)")] == pytest.approx(19 * 0.5)
    assert by[(DAY0, "count(temp)")] == 10
    assert len(by) == 18
    # interval 0: the normalized minutes themselves
    minutes = env.ok("/ai-normalized", {**body, "pointIdsWithLogic": "temp", "interval": 0})[
        "items"
    ]
    assert [i["temp"] for i in minutes] == [float(i) for i in range(60)]
    # the same minutes as the admin query API's aggregate (last value per 60 s bucket)
    agg = env.api.get(
        f"/api/v1/orgs/{env.org}/devices/{env.assets[0]}/measurepoints/aggregate",
        params={
            "points": "temp",
            "start": DAY0,
            "end": DAY0 + 3_600_000,
            "interval": 60_000,
            "fn": "last",
        },
    ).json()["points"]["temp"]
    assert [(i["timestamp"], i["temp"]) for i in minutes] == [(a["time"], a["value"]) for a in agg]
    assert env.error(
        "/ai-normalized", {**body, "pointIdsWithLogic": "avg(temp)", "interval": 0}, 80400
    )
    assert env.error(
        "/ai-normalized", {**body, "pointIdsWithLogic": "median(temp)", "interval": 5}, 80400
    )
    assert env.error(
        "/ai-normalized", {**body, "pointIdsWithLogic": "avg(temp)", "interval": 1441}, 80400
    )
    # paging over buckets
    paged, pages = env.pages(
        "/ai-normalized",
        {**body, **day(), "pointIdsWithLogic": "last(temp)", "interval": 60, "pageSize": 5},
    )
    assert pages == 5 and [i["last(temp)"] for i in paged] == [
        float(h * 60 + 59) for h in range(24)
    ]


def test_boundary_types(env: Env) -> None:
    a = env.assets[2]  # hourly samples 20, 21, ... at DAY0 + h hours
    half = {"startTime": utc(DAY0 + 1_800_000), "endTime": utc(DAY0 + 3 * 3_600_000 + 1_800_000)}
    base = {"assetIds": a, "pointIds": "temp", **half}
    inside = [i["temp"] for i in env.ok("/ai", base)["items"]]
    assert inside == [21.0, 22.0, 23.0]
    outside = [i["temp"] for i in env.ok("/ai", {**base, "boundaryType": "outside"})["items"]]
    assert outside == [20.0, 21.0, 22.0, 23.0, 24.0]
    interp = env.ok("/ai", {**base, "boundaryType": "interpolated"})["items"]
    assert [i["temp"] for i in interp] == [20.5, 21.0, 22.0, 23.0, 23.5]
    prev = env.ok("/ai", {**base, "boundaryType": "interpolated", "interpolation": "previous"})[
        "items"
    ]
    assert [i["temp"] for i in prev] == [20.0, 21.0, 22.0, 23.0, 23.0]
    sample = env.ok("/ai", {**base, "boundaryType": "sample", "interval": 1800})["items"]
    assert [(i["timestamp"] - DAY0) // 1_800_000 for i in sample] == [1, 2, 3, 4, 5, 6]
    assert [i["temp"] for i in sample] == [20.5, 21.0, 21.5, 22.0, 22.5, 23.0]


# -- latest, filter, delete -------------------------------------------------------------------


def test_latest_and_filter_and_delete(env: Env) -> None:
    a0, a1 = env.assets[0], env.assets[1]
    admin = env.api.get(f"/api/v1/orgs/{env.org}/devices/{a0}/measurepoints/latest").json()[
        "points"
    ]
    data = env.ok(
        "/latest", {"assetIds": f"{a0},{a1}", "pointIds": "temp,mode", "ifWithLocalTime": True}
    )
    got = {
        (i["assetId"], p): (i["timestamp"], i[p])
        for i in data["items"]
        for p in ("temp", "mode")
        if p in i
    }
    assert got[(a0, "temp")] == (admin["temp"]["time"], admin["temp"]["value"])
    assert got[(a0, "mode")] == (admin["mode"]["time"], admin["mode"]["value"])
    assert all("localtime" in i for i in data["items"])
    f1 = env.ok("/latest", {"assetIds": f"{a0},{a1}", "pointIds": "temp,mode", "itemFormat": 1})[
        "items"
    ]
    assert (
        len(f1) == 2 and f1[0]["temp"] == 1439.0 and f1[0]["mode"] == 2 and "localtime" not in f1[0]
    )
    # timeWindow: the data is from 2024, nothing is within the last 10 minutes
    assert env.ok("/latest", {"assetIds": a0, "pointIds": "temp", "timeWindow": 10})["items"] == []
    flt = {"modelId": "meter", "assetIds": f"{a0},{a1},{env.assets[2]}", "pointId": "temp"}
    ge = env.ok("/latest/filter", {**flt, "operator": "ge", "valueFilter": "100"})["items"]
    assert sorted(i["assetId"] for i in ge) == [a0, a1]
    lt = env.ok("/latest/filter", {**flt, "operator": "lt", "valueFilter": "100"})["items"]
    assert [i["assetId"] for i in lt] == [env.assets[2]]
    btw = env.ok("/latest/filter", {**flt, "operator": "between", "valueFilter": "100,2000"})[
        "items"
    ]
    assert len(btw) == 2
    assert env.error("/latest/filter", {**flt, "operator": "gt", "valueFilter": "abc"}, 80400)
    assert env.error("/latest/filter", {**flt, "operator": "like", "valueFilter": "1"}, 80400)
    # delete: a1's latest temp is gone, its history stays, mode stays
    r = env.call("/latest", {"assetIds": a1, "pointIds": "temp"}, params={"action": "delete"})
    assert r.json() == {"code": 0, "msg": "OK", "submsg": "", "data": None}
    after = env.ok("/latest", {"assetIds": a1, "pointIds": "temp,mode"})["items"]
    assert [("temp" in i, "mode" in i) for i in after] == [(False, True)]
    hist = env.ok("/ai", {"assetIds": a1, "pointIds": "temp", "pageSize": 1, **day()})
    assert hist["items"]
    # a newer sample shows again
    c = Client(env.hub, env.channel["username"], env.channel["password"])
    c.subscribe(f"/sys/{env.pk}/integration/#")
    now = int(time.time() * 1000)
    item = {"deviceKey": "m1", "time": now, "measurepoints": {"temp": -1.0}}
    assert (
        c.request(f"/sys/{env.pk}/integration/measurepoint/post", mp_request("n", [item]))["code"]
        == 200
    )
    c.close()
    back = env.ok("/latest", {"assetIds": a1, "pointIds": "temp", "timeWindow": 10})["items"]
    assert [(i["timestamp"], i["temp"]) for i in back] == [(now, -1.0)]


# -- limits, permissions, tokens ----------------------------------------------------------------


def test_limits_are_80400_with_a_message(env: Env) -> None:
    # 4 devices x 5 points x 40000 > 640,000
    body = {"assetIds": ",".join(env.assets), "pointIds": "temp,Power,mode,running,label", **day()}
    msg = env.error("/raw", {**body, "pageSize": 40000}, 80400)
    assert "640000" in msg and "pageSize" in msg
    assert env.ok("/raw", {**body, "pageSize": 32000})["items"]
    # devices x points over 3000: the same points named again count once, so use many devices
    many = [f"{env.org}-x{i}" for i in range(700)]
    r = env.api.post(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices",
        json=[{"deviceKey": f"x{i}", "assetId": a} for i, a in enumerate(many)],
    )
    assert r.status_code == 201, r.text
    msg = env.error(
        "/latest", {"assetIds": ",".join(many), "pointIds": "temp,Power,mode,running,label"}, 80400
    )
    assert "3000" in msg
    assert env.ok(
        "/latest", {"assetIds": ",".join(many[:600]), "pointIds": "temp,Power,mode,running,label"}
    ) == {"items": []}
    assert "pageSize" in env.error("/ai", {**body, "pointIds": "temp", "pageSize": 0}, 80400)
    assert "startTime" in env.error("/ai", {"assetIds": env.assets[0], "pointIds": "temp"}, 80400)
    assert "nope" in env.error(
        "/ai", {"assetIds": env.assets[0], "pointIds": "nope", **day()}, 80400
    )
    r = env.http.post(
        TSDB + "/ai",
        params={"orgId": env.org},
        content=b"{not json",
        headers={"apim-accesstoken": env.token},
    )
    assert r.json()["code"] == 80400


def test_another_orgs_asset_and_org_are_80401(
    env: Env, shared_hub: HubProcess, shared_api: httpx.Client
) -> None:
    other = Env(shared_hub, shared_api)
    other.http.close()
    body = {"assetIds": other.assets[0], "pointIds": "temp", **day()}
    assert other.assets[0] in env.error("/ai", body, 80401)
    assert env.error("/ai", {**body, "assetIds": "no-such-asset"}, 80401)
    # the token is scoped to its organization
    assert env.error("/ai", {**body, "assetIds": env.assets[0]}, 80401, org=other.org)
    assert env.error(
        "/latest", {"assetIds": f"{env.assets[0]},{other.assets[0]}", "pointIds": "temp"}, 80401
    )


def test_missing_invalid_and_expired_tokens(env: Env, tmp_path: Any) -> None:
    body = {"assetIds": env.assets[0], "pointIds": "temp", **day()}
    r = env.call("/ai", body, token="")
    assert r.status_code == 401 and r.json()["code"] == 1202
    r = env.call("/ai", body, token="deadbeef")
    assert r.status_code == 401 and r.json()["code"] == 1009
    hub = HubProcess(tmp_path / "short", extra=["--set", "token.ttl=1"])
    hub.start()
    try:
        with hub.client() as api:
            short = Env(hub, api)
            assert short.ok("/latest", {"assetIds": short.assets[0], "pointIds": "temp"}) == {
                "items": []
            }
            time.sleep(1.5)
            r = short.call("/latest", {"assetIds": short.assets[0], "pointIds": "temp"})
            short.http.close()
            assert r.status_code == 401 and r.json()["code"] == 1203, r.text
    finally:
        hub.stop()


# -- storage policies ---------------------------------------------------------------------------


def test_storage_policies_crud_enos_read_and_retention(env: Env) -> None:
    base = f"/api/v1/orgs/{env.org}/storage-policies"
    r = env.api.post(
        base,
        json={
            "policyName": "labels as DI",
            "policyType": "DI",
            "retention": "6M",
            "models": [{"modelId": "meter", "points": ["label"]}],
        },
    )
    assert r.status_code == 201, r.text
    pid = r.json()["policyId"]
    r = env.http.get(
        f"/tsdb-policy/v2.0/policies/{pid}",
        params={"orgId": env.org},
        headers={"apim-accesstoken": env.token},
    )
    assert r.json() == {
        "code": 0,
        "msg": "OK",
        "submsg": None,
        "data": {
            "policyId": pid,
            "policyName": "labels as DI",
            "policyType": "DI",
            "retention": "6M",
            "models": [{"modelId": "meter", "points": ["label"]}],
        },
    }
    # a DI policy puts a string point on the di path
    di = env.ok("/di", {"assetIds": env.assets[2], "pointIds": "label", **day()})["items"]
    assert len(di) == 24
    # retention: the longest of the policies naming a point; NEVER wins
    r = env.api.post(
        base,
        json={
            "policyName": "all a year",
            "policyType": "AI_NORM",
            "retention": "1Y",
            "models": [{"modelId": "meter"}],
        },
    )
    assert r.status_code == 201, r.text
    ret = env.api.get(f"/api/v1/orgs/{env.org}/devices/{env.assets[0]}/retention").json()[
        "retention"
    ]
    assert ret == [
        {"points": ["Power", "label", "mode", "running", "temp"], "keepMs": 365 * 86_400_000}
    ]
    env.api.patch(f"{base}/{pid}", json={"retention": "2Y"}).raise_for_status()
    ret = env.api.get(f"/api/v1/orgs/{env.org}/devices/{env.assets[0]}/retention").json()[
        "retention"
    ]
    assert ret == [
        {"points": ["Power", "mode", "running", "temp"], "keepMs": 365 * 86_400_000},
        {"points": ["label"], "keepMs": 730 * 86_400_000},
    ]
    bad = env.api.post(base, json={"policyName": "x", "policyType": "DI", "retention": "6 months"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "retention"
    bad = env.api.post(
        base,
        json={
            "policyName": "x",
            "policyType": "DI",
            "models": [{"modelId": "meter", "points": ["nope"]}],
        },
    )
    assert bad.status_code == 422
    listed = env.api.get(base).json()["items"]
    assert len(listed) == 2
    for p in listed:
        assert env.api.delete(f"{base}/{p['policyId']}").status_code == 204
    assert (
        env.api.get(f"/api/v1/orgs/{env.org}/devices/{env.assets[0]}/retention").json()["retention"]
        == []
    )
    r = env.http.get(
        f"/tsdb-policy/v2.0/policies/{pid}",
        params={"orgId": env.org},
        headers={"apim-accesstoken": env.token},
    )
    assert r.json()["code"] == 80400
    assert env.error("/di", {"assetIds": env.assets[2], "pointIds": "label", **day()}, 80400)


def test_pointer_is_opaque_base64(env: Env) -> None:
    data = env.ok("/ai", {"assetIds": env.assets[0], "pointIds": "temp", "pageSize": 3, **day()})
    raw = base64.urlsafe_b64decode(data["pointer"] + "=" * (-len(data["pointer"]) % 4))
    assert json.loads(raw)["c"][env.assets[0]][0] == DAY0 + 2 * 60_000
