"""Schemathesis against the hub's own OpenAPI document (``/api/docs/openapi.json``).

A real hub, seeded with two organizations' worth of data (models, products, devices,
channels, service accounts, enterprises, measurepoints, attributes, events, a file, a
script), is fuzzed operation by operation: the path parameters are mostly one seeded
context's keys (so that requests get past the 404s), sometimes what schemathesis
generates; query parameters and bodies are generated from the document, valid and
invalid. No answer may be a 5xx, and every answer, success or error, must match the
schema and media type the document gives for its status (the admin API's errors are the
hub's ``{"error": {...}}`` shape, documented by ``api.common.document_errors``).

Bounded: EXAMPLES cases per operation (``FUZZ_EXAMPLES=300`` for a deeper run), no
shrinking; the deletes run last, so that the other operations see the seeded data. Each
phase's operations are split between two worker processes (``openapi_support.py``), as
generating the cases, not the hub, takes the time. The
schema is driven through schemathesis' Python API (``as_strategy``) rather than its
pytest plugin, whose fixture loader does not run on pytest 9.2.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.http_support import ATTR, EVENT, MP, Enos, make_tenant, message, ok
from tests.e2e.mqtt_support import Client, mp_request, provision
from tests.e2e.openapi_support import Context, fuzz, load
from tests.e2e.test_http_files import upload
from tests.e2e.test_raw_scripts import DECODER, ENCODER

TOKEN = "/apim-token-service/v2.0/token"
CONTENT = "/files/{file_id}/content"
# operations whose answer never ends (server-sent events): tested in test_log_tail.py
STREAMING = {"GET /api/v1/orgs/{org_id}/channels/{channel_id}/logs/stream"}
MEASUREPOINTS = {
    "Power": {"value": 1.5, "quality": 9},
    "temp": 20.25,
    "branchCurr": ["1", "2"],
    "fan_fault": True,
    "mode": 1,
}
T0 = 1_700_000_000_000


def seed(hub: HubProcess, api: httpx.Client) -> list[Context]:
    """Real data for the fuzzer to find: two organizations, each with a product, devices,
    a channel, a service account and an enterprise; history, attributes and events in the
    first, real-time data and a file in the second, a parsing script on a third product.
    Returns the sets of path parameters that reach it: one per device (and file), one for
    the scripted product."""
    env = provision(api, devices=3)
    mqtt = Client(hub, env.username, env.password)
    try:
        mqtt.subscribe(f"/sys/{env.pk}/integration/#")
        for kind, method, key, values in (
            ("measurepoint/post", MP, "measurepoints", MEASUREPOINTS),
            ("attribute/post", ATTR, "attributes", {"mac": "00:11", "capacity": 5}),
            ("event/post", EVENT, "events", {"overheat": {"level": 3}}),
        ):
            items = [
                {"deviceKey": dk, "time": T0 + i, key: values}
                for dk in env.devices
                for i in range(5)
            ]
            reply = mqtt.request(
                f"/sys/{env.pk}/integration/{kind}", mp_request(kind, items, method)
            )
            assert reply["code"] == 200, reply
    finally:
        mqtt.close()
    tenant = make_tenant(api, hub.url, devices=2)
    http = Enos(hub, tenant)
    try:
        for dk in tenant.devices:  # real-time data: the devices come online
            item = {"productKey": tenant.product, "deviceKey": dk, "measurepoints": {"temp": 1.5}}
            ok(http.post_json("postMeasurepoint", message(MP, [item])))
        upload(http, tenant.devices[0], "seed.bin", b"seed" * 100)
    finally:
        http.close()

    def created(path: str, body: dict[str, Any], key: str) -> str:
        r = api.post(path, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()[key])

    contexts: list[Context] = []
    for org, model, pk in ((env.org, "inverter", env.pk), (tenant.org, "camera", tenant.product)):
        base = f"/api/v1/orgs/{org}"
        common = {
            "org_id": org,
            "model_id": model,
            "product_key": pk,
            "channel_id": env.channel_id
            if org == env.org
            else created(f"{base}/channels", {"name": "c", "products": [pk]}, "channelId"),
            "app_key": tenant.app_key
            if org == tenant.org
            else created(f"{base}/service-accounts", {"name": "s"}, "appKey"),
            "enterprise_id": created(
                f"{base}/enterprises",
                {"name": "e", "products": [pk], "eventTypes": ["device_status_kv"]},
                "enterpriseId",
            ),
        }
        for d in api.get(f"{base}/products/{pk}/devices").json()["items"]:
            files = api.get(f"{base}/devices/{d['assetId']}/files").json()["items"]
            contexts += [
                {**common, "device_key": d["deviceKey"], "asset_id": d["assetId"], "file_id": f}
                for f in [f["id"] for f in files] or [None]
            ]
    raw = created(
        f"/api/v1/orgs/{env.org}/products",
        {"name": "raw", "modelId": "inverter", "dataFormat": "custom"},
        "productKey",
    )
    r = api.put(f"/api/v1/orgs/{env.org}/products/{raw}/script", content=DECODER + ENCODER)
    assert r.status_code == 200, r.text
    contexts.append({"org_id": env.org, "model_id": "inverter", "product_key": raw})
    return [{k: v for k, v in c.items() if v is not None} for c in contexts]


@pytest.fixture(scope="module")
def seeded(shared_hub: HubProcess, shared_api: httpx.Client) -> list[Context]:
    return seed(shared_hub, shared_api)


def test_no_operation_answers_5xx(shared_hub: HubProcess, seeded: list[Context]) -> None:
    url = shared_hub.url + "/api/docs/openapi.json"
    labels = [r.ok().label for r in load(url).get_all_operations()]
    labels = [label for label in labels if label not in STREAMING]
    # the deletes last, so that every other operation sees the seeded data; each phase's
    # operations are split between two processes (openapi_support: generating the cases
    # is what takes the time)
    deletes = [label for label in labels if label.startswith("DELETE ")]
    phases = [[label for label in labels if label not in deletes], deletes]
    statuses: dict[str, Counter[int]] = {}
    failures: list[str] = []
    spawn = multiprocessing.get_context("spawn")  # not a fork of pytest and its threads
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        for phase in phases:
            for counts, failed in pool.map(
                fuzz, [url, url], [phase[0::2], phase[1::2]], [seeded, seeded]
            ):
                statuses.update(counts)
                failures += failed
    assert sorted(statuses) == sorted(labels)  # every operation was fuzzed
    assert not failures, "\n\n".join(failures) + "\n\nhub log:\n" + shared_hub.log()
    # the seed works: many operations reached real data (about two thirds, typically)
    reached = [label for label, c in statuses.items() if any(200 <= s < 300 for s in c)]
    assert len(reached) > len(labels) // 3, statuses


# -- what the fuzzer found, kept as plain requests ---------------------------------------


@pytest.fixture(scope="module")
def intact(shared_hub: HubProcess, shared_api: httpx.Client) -> list[Context]:
    """Seeded data of its own: the fuzzer's may have been deleted, renamed, disabled."""
    return seed(shared_hub, shared_api)


PAST_INT64 = [2**63, -(2**63) - 1]


@pytest.mark.parametrize("value", PAST_INT64)
@pytest.mark.parametrize(
    ("route", "param"),
    [
        (route, param)
        for route in ("channel logs", "account logs")
        for param in ("start", "end", "cursor")
    ]
    + [
        (route, param)
        for route in ("measurepoints", "aggregate", "events", "online changes")
        for param in ("start", "end")
    ]
    + [("aggregate", "interval"), ("measurepoints", "cursor")],
)
def test_integers_past_int64_are_refused(
    shared_api: httpx.Client, intact: list[Context], route: str, param: str, value: int
) -> None:
    """Found by the fuzzer: a query integer past int64 reached SQLite (OverflowError, 500).
    Every integer a query route passes to the store is range-checked first (422)."""
    ctx = next(c for c in intact if "file_id" in c)  # the device with data
    org, device = f"/api/v1/orgs/{ctx['org_id']}", f"devices/{ctx['asset_id']}"
    path, query = {
        "channel logs": (f"{org}/channels/{ctx['channel_id']}/logs", {}),
        "account logs": (f"{org}/service-accounts/{ctx['app_key']}/logs", {}),
        "measurepoints": (f"{org}/{device}/measurepoints", {}),
        "aggregate": (
            f"{org}/{device}/measurepoints/aggregate",
            {"interval": 1000, "points": "temp"},
        ),
        "events": (f"{org}/{device}/events", {}),
        "online changes": (f"{org}/{device}/online/changes", {}),
    }[route]
    query[param] = f"{value}:temp" if (route, param) == ("measurepoints", "cursor") else value
    r = shared_api.get(path, params=query)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == param


@pytest.mark.parametrize("cursor", ["1" * 5000 + ":temp", "\u00b2:temp", "--5:temp", "\u0661:temp"])
def test_malformed_measurepoint_cursors_are_refused(
    shared_api: httpx.Client, intact: list[Context], cursor: str
) -> None:
    """Found while fixing the above: a cursor time of 5000 digits (int() refuses past
    4300), of non-ASCII digits or with two minus signs was a ValueError (500)."""
    ctx = next(c for c in intact if "file_id" in c)
    path = "/api/v1/orgs/{org_id}/devices/{asset_id}/measurepoints".format(**ctx)
    r = shared_api.get(path, params={"cursor": cursor})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cursor", r.text


def test_int64_extremes_are_answered(shared_api: httpx.Client, intact: list[Context]) -> None:
    """The range's own ends are valid: answered, and aggregate buckets keep integer times
    (a range longer than int64 overflowed the store's bucket arithmetic into floats)."""
    lo, hi = -(2**63), 2**63 - 1
    ctx = next(c for c in intact if "file_id" in c)
    org, device = f"/api/v1/orgs/{ctx['org_id']}", f"devices/{ctx['asset_id']}"
    for path, query in [
        (f"{org}/{device}/measurepoints", {"start": lo, "end": hi, "cursor": f"{hi}:temp"}),
        (f"{org}/{device}/events", {"start": lo, "end": hi}),
        (f"{org}/{device}/online/changes", {"start": lo, "end": hi}),
        (f"{org}/channels/{ctx['channel_id']}/logs", {"start": lo, "end": hi, "cursor": lo}),
        (f"{org}/service-accounts/{ctx['app_key']}/logs", {"start": lo, "end": hi, "cursor": hi}),
    ]:
        r = shared_api.get(path, params=query)
        assert r.status_code == 200, (path, r.text)
    agg = f"{org}/{device}/measurepoints/aggregate"
    r = shared_api.get(agg, params={"interval": hi, "start": lo, "end": hi, "points": "temp"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "end", r.text
    r = shared_api.get(agg, params={"interval": hi, "start": 0, "end": hi, "points": "temp"})
    assert r.status_code == 200, r.text
    assert [type(b["time"]) for b in r.json()["points"]["temp"]] == [int]


# -- what the document once got wrong ----------------------------------------------------


def openapi(hub: HubProcess) -> dict[str, Any]:
    return dict(httpx.get(hub.url + "/api/docs/openapi.json").json())


def documented(hub: HubProcess, method: str, path: str, status: str) -> dict[str, Any]:
    return dict(openapi(hub)["paths"][path][method]["responses"][status]["content"])


def resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return dict(doc["components"]["schemas"][ref.rsplit("/", 1)[1]]) if ref else schema


def test_token_answer_is_documented(shared_hub: HubProcess) -> None:
    doc = openapi(shared_hub)
    content = doc["paths"][f"{TOKEN}/get"]["post"]["responses"]["200"]["content"]
    r = httpx.post(shared_hub.url + f"{TOKEN}/get", content=b"")
    assert r.status_code == 200 and r.json()["status"] == 1202
    schema = resolved(doc, content["application/json"]["schema"])
    assert schema.get("type") == "object", content
    assert set(schema["properties"]) == set(r.json()) == {"status", "msg", "business", "data"}


def test_file_content_type_is_documented(
    shared_hub: HubProcess, shared_api: httpx.Client, intact: list[Context]
) -> None:
    ctx = next(c for c in intact if "file_id" in c)
    path = "/api/v1/orgs/{org_id}/devices/{asset_id}" + CONTENT
    r = shared_api.get(path.format(**ctx))
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert "application/octet-stream" in documented(shared_hub, "get", path, "200")


def test_error_answers_are_documented(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    r = shared_api.get("/api/v1/orgs/nope")
    assert r.status_code == 404 and set(r.json()["error"]) >= {"status", "code", "message"}
    doc = openapi(shared_hub)
    responses = doc["paths"]["/api/v1/orgs/{org_id}"]["get"]["responses"]
    assert {"400", "401", "403", "404", "422"} <= set(responses), sorted(responses)
    assert "409" not in responses  # a read conflicts with nothing
    schema = resolved(doc, responses["400"]["content"]["application/json"]["schema"])
    assert "error" in schema.get("properties", {}), schema
    creates = doc["paths"]["/api/v1/orgs"]["post"]["responses"]
    assert {"400", "409", "413", "422"} <= set(creates), sorted(creates)


@pytest.mark.parametrize("spec", [b"bytes=\xb2-", b"bytes=0-\xb2", b"bytes=-" + b"9" * 5000])
def test_malformed_ranges_are_not_a_500(
    shared_api: httpx.Client, intact: list[Context], spec: bytes
) -> None:
    ctx = next(c for c in intact if "file_id" in c)
    path = "/api/v1/orgs/{org_id}/devices/{asset_id}" + CONTENT
    r = shared_api.get(path.format(**ctx), headers={"Range": spec})
    assert r.status_code < 500, r.text
