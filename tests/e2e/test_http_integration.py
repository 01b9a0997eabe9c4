"""The EnOS real-time integration endpoint (B.2) against a real hub, through httpx with
real multipart bodies: data, files, every reply code, organization isolation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headrace.store.sqlite.store import SQLiteStore
from tests.conftest import HubProcess, from_template
from tests.e2e.http_support import (
    ATTR,
    EVENT,
    INTEGRATION,
    MP,
    Enos,
    Tenant,
    make_tenant,
    message,
    ok,
    refused,
)


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory: pytest.TempPathFactory, hub_template: Path) -> Iterator[HubProcess]:
    """A hub with small file limits."""
    h = HubProcess(
        from_template(hub_template, tmp_path_factory.mktemp("small") / "data"),
        ["--set", "http.max_file_size=1048576", "--set", "http.max_files=2"],
    )
    h.start()
    yield h
    h.stop()


@pytest.fixture
def tenant(shared_hub: HubProcess, shared_api: httpx.Client) -> Tenant:
    return make_tenant(shared_api, shared_hub.url)


@pytest.fixture
def enos(shared_hub: HubProcess, tenant: Tenant) -> Iterator[Enos]:
    c = Enos(shared_hub, tenant)
    yield c
    c.close()


def mp(t: Tenant, dk: str, points: dict[str, Any], ts: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"productKey": t.product, "deviceKey": dk, "measurepoints": points}
    if ts is not None:
        item["time"] = ts
    return item


def samples(api: httpx.Client, t: Tenant, dk: str) -> list[dict[str, Any]]:
    r = api.get(f"/api/v1/orgs/{t.org}/products/{t.product}/devices/{dk}/measurepoints")
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def device_files(api: httpx.Client, t: Tenant, dk: str) -> list[dict[str, Any]]:
    r = api.get(f"/api/v1/orgs/{t.org}/products/{t.product}/devices/{dk}/files")
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


# -- data ----------------------------------------------------------------------------------


def test_json_posts_all_actions(enos: Enos, shared_api: httpx.Client) -> None:
    t = enos.t
    now = int(time.time() * 1000)
    ok(
        enos.post_json(
            "postMeasurepoint",
            message(
                MP,
                [
                    mp(t, "d0", {"temp": 20.5, "Power": {"value": 3.5, "quality": 9}}, now - 1000),
                    {"assetId": t.assets["d1"], "time": now, "measurepoints": {"temp": 7}},
                ],
                isRealtimeIntegration=True,
            ),
        )
    )
    got = {(s["point"], s["time"]): s for s in samples(shared_api, t, "d0")}
    assert got[("temp", now - 1000)]["value"] == 20.5
    assert got[("Power", now - 1000)]["value"] == 3.5 and got[("Power", now - 1000)]["quality"] == 9
    assert [s["value"] for s in samples(shared_api, t, "d1")] == [7]
    ok(
        enos.post_json(
            "postAttribute",
            message(
                ATTR, [{"productKey": t.product, "deviceKey": "d0", "attributes": {"mac": "aa:bb"}}]
            ),
        )
    )
    r = shared_api.get(f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d0/attributes")
    assert r.json()["attributes"]["mac"]["value"] == "aa:bb"
    ok(
        enos.post_json(
            "postEvent",
            message(
                EVENT,
                [
                    {
                        "productKey": t.product,
                        "deviceKey": "d0",
                        "time": now,
                        "events": {"motion": {"picture": "enos-connect://x"}},
                    }
                ],
            ),
        )
    )
    r = shared_api.get(f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d0/events")
    assert r.json()["items"][0]["event"] == "motion"


def test_realtime_flag_recorded_as_source(enos: Enos, shared_hub: HubProcess) -> None:
    t = enos.t
    ok(enos.post_json("postMeasurepoint", message(MP, [mp(t, "d0", {"temp": 1.0}, 1000)])))
    ok(
        enos.post_json(
            "postMeasurepoint",
            message(MP, [mp(t, "d0", {"temp": 2.0}, 2000)], isRealtimeIntegration=False),
        )
    )
    # the source is not in the query API: read it through the store, on the hub's database
    path = shared_hub.data_dir / "headrace.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (device,) = db.execute(
        "SELECT id FROM devices WHERE asset_id = ?", (t.assets["d0"],)
    ).fetchone()
    db.close()
    store = SQLiteStore(path)
    store.start()
    try:
        got = asyncio.run(store.query_samples(device, ["temp"], 0, 10_000, 10, False, None))
    finally:
        store.close()
    assert [(s.ts, s.source) for s in got] == [(1000, 1), (2000, 0)]


def test_idempotent_and_atomic(enos: Enos, shared_api: httpx.Client) -> None:
    t = enos.t
    msg = message(MP, [mp(t, "d0", {"temp": 1.5}, 5000)])
    ok(enos.post_json("postMeasurepoint", msg))
    ok(enos.post_json("postMeasurepoint", msg))
    assert len(samples(shared_api, t, "d0")) == 1
    bad = message(
        MP,
        [
            mp(t, "d1", {"temp": 1.0}, 6000),
            mp(t, "nope", {"temp": 1.0}, 6000),
            mp(t, "d2", {"nosuchpoint": 1}, 6000),
        ],
    )
    body = refused(enos.post_json("postMeasurepoint", bad), 404, 1257)
    errors = body["data"]["errors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, 1257), (2, 1204)]
    assert samples(shared_api, t, "d1") == []  # nothing of the request was stored


# -- files ---------------------------------------------------------------------------------


def test_multipart_with_files_everywhere(enos: Enos, shared_api: httpx.Client) -> None:
    t = enos.t
    jpg, mp4, pdf = b"\xff\xd8jpeg" * 1000, bytes(range(256)) * 500, b"%PDF-1.4 manual"
    now = int(time.time() * 1000)
    r = enos.post_multipart(
        "postMeasurepoint",
        message(
            MP,
            [
                mp(
                    t,
                    "d0",
                    {"snapshot": "local://a.jpg", "clip": {"video": "local://v.mp4", "seconds": 3}},
                    now,
                ),
                {
                    "assetId": t.assets["d1"],
                    "time": now,
                    "measurepoints": {"snapshot": "local://a.jpg"},
                },
            ],
        ),
        [("a.jpg", jpg), ("v.mp4", mp4), ("unused.bin", b"nobody refers to me")],
        md5={
            "a.jpg": hashlib.md5(jpg).hexdigest(),
            "v.mp4": base64.b64encode(hashlib.md5(mp4).digest()).decode(),
        },
    )
    ok(r)
    got = {s["point"]: s["value"] for s in samples(shared_api, t, "d0")}
    assert got["snapshot"].startswith("enos-connect://")
    assert got["clip"]["video"].startswith("enos-connect://") and got["clip"]["seconds"] == 3
    files0 = {f["fileUri"]: f for f in device_files(shared_api, t, "d0")}
    assert set(files0) == {got["snapshot"], got["clip"]["video"]}
    f = files0[got["snapshot"]]
    assert f["originalFilename"] == "a.jpg" and f["fileSize"] == len(jpg)
    assert f["md5"] == hashlib.md5(jpg).hexdigest()
    assert f["sha256"] == hashlib.sha256(jpg).hexdigest()
    (d1_snap,) = [s["value"] for s in samples(shared_api, t, "d1")]
    assert d1_snap.startswith("enos-connect://") and d1_snap != got["snapshot"]
    assert [x["originalFilename"] for x in device_files(shared_api, t, "d1")] == ["a.jpg"]
    # attributes and event outputs carry files too
    ok(
        enos.post_multipart(
            "postAttribute",
            message(
                ATTR,
                [
                    {
                        "productKey": t.product,
                        "deviceKey": "d2",
                        "attributes": {"manual": "local://m.pdf"},
                    }
                ],
            ),
            [("m.pdf", pdf)],
        )
    )
    ok(
        enos.post_multipart(
            "postEvent",
            message(
                EVENT,
                [
                    {
                        "productKey": t.product,
                        "deviceKey": "d2",
                        "time": now,
                        "events": {"motion": {"picture": "local://p.jpg"}},
                    }
                ],
            ),
            [("p.jpg", jpg)],
        )
    )
    names = sorted(x["originalFilename"] for x in device_files(shared_api, t, "d2"))
    assert names == ["m.pdf", "p.jpg"]
    attrs = shared_api.get(
        f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d2/attributes"
    ).json()
    assert attrs["attributes"]["manual"]["value"].startswith("enos-connect://")
    # a multipart body without files works as well
    ok(enos.post_multipart("postMeasurepoint", message(MP, [mp(t, "d2", {"temp": 3.0})])))


def test_refused_request_keeps_no_files(
    enos: Enos, shared_api: httpx.Client, shared_hub: HubProcess
) -> None:
    t = enos.t
    content = b"refused content " + t.org.encode()
    body = refused(
        enos.post_multipart(
            "postMeasurepoint",
            message(MP, [mp(t, "d0", {"snapshot": "local://a.jpg"}), mp(t, "d1", {"temp": "hot"})]),
            [("a.jpg", content)],
        ),
        400,
        1204,
    )
    assert body["data"]["errors"][0]["index"] == 1
    assert device_files(shared_api, t, "d0") == []
    sha = hashlib.sha256(content).hexdigest()
    assert not (shared_hub.data_dir / "files" / sha[:2] / sha[2:4] / sha).exists()
    assert list((shared_hub.data_dir / "files" / "tmp").iterdir()) == []


def test_file_errors(enos: Enos) -> None:
    t = enos.t
    msg = message(MP, [mp(t, "d0", {"snapshot": "local://a.jpg"})])
    # Content-MD5 mismatch
    refused(
        enos.post_multipart("postMeasurepoint", msg, [("a.jpg", b"abc")], md5={"a.jpg": "0" * 32}),
        400,
        1202,
    )
    # reference to a part that is not there (multipart and plain JSON)
    refused(enos.post_multipart("postMeasurepoint", msg, [("b.jpg", b"abc")]), 400, 1220)
    refused(enos.post_json("postMeasurepoint", msg), 400, 1220)
    # two parts with one name; a file part without filename
    refused(
        enos.post_multipart("postMeasurepoint", msg, [("a.jpg", b"1"), ("a.jpg", b"2")]), 400, 1220
    )
    boundary = "XyZ"
    raw = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="enos-message"\r\n\r\n{json.dumps(msg)}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="enos-file"\r\n\r\nabc\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    r = enos.http.post(
        INTEGRATION,
        params={"action": "postMeasurepoint", "orgId": t.org},
        content=raw,
        headers={**enos.headers(), "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    refused(r, 400, 1220)


def _raw_multipart(enos: Enos, raw: bytes, ctype: str) -> httpx.Response:
    return enos.http.post(
        INTEGRATION,
        params={"action": "postMeasurepoint", "orgId": enos.t.org},
        content=raw,
        headers={**enos.headers(), "content-type": ctype},
    )


def test_malformed_multipart(enos: Enos) -> None:
    msg = json.dumps(message(MP, [mp(enos.t, "d0", {"temp": 1.0})]))
    part = f'--B\r\nContent-Disposition: form-data; name="enos-message"\r\n\r\n{msg}\r\n'
    refused(
        _raw_multipart(enos, part.encode(), "multipart/form-data; boundary=B"), 400, 1220
    )  # no end
    refused(_raw_multipart(enos, (part + "--B--\r\n").encode(), "multipart/form-data"), 400, 1220)
    refused(_raw_multipart(enos, b"garbage", "multipart/form-data; boundary=B"), 400, 1220)
    no_message = b'--B\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--B--\r\n'
    refused(_raw_multipart(enos, no_message, "multipart/form-data; boundary=B"), 400, 1220)
    two = (part + part + "--B--\r\n").encode()
    refused(_raw_multipart(enos, two, "multipart/form-data; boundary=B"), 400, 1220)
    ok(_raw_multipart(enos, (part + "--B--\r\n").encode(), "multipart/form-data; boundary=B"))


def test_limits_while_streaming(small_hub: HubProcess) -> None:
    with small_hub.client() as api:
        t = make_tenant(api, small_hub.url)
    c = Enos(small_hub, t)
    msg = message(MP, [mp(t, "d0", {"snapshot": "local://a.bin"})])
    ok(c.post_multipart("postMeasurepoint", msg, [("a.bin", b"x" * 1048576)]))
    body = refused(
        c.post_multipart("postMeasurepoint", msg, [("a.bin", b"x" * 1048577)]), 413, 1008
    )
    assert "1048576" in body["msg"]
    # the connection is still usable after an early refusal
    ok(c.post_multipart("postMeasurepoint", msg, [("a.bin", b"y" * 10)]))
    refused(
        c.post_multipart("postMeasurepoint", msg, [("a.bin", b"1"), ("b", b"2"), ("c", b"3")]),
        413,
        1008,
    )
    big = message(MP, [mp(t, "d0", {"temp": 1.0})], pad="p" * (512 * 1024))
    refused(c.post_multipart("postMeasurepoint", big), 413, 1008)
    refused(c.post_json("postMeasurepoint", big), 413, 1008)
    assert list((small_hub.data_dir / "files" / "tmp").iterdir()) == []
    c.close()


# -- reply codes ---------------------------------------------------------------------------


def test_reply_codes(enos: Enos, shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    t = enos.t
    good = message(MP, [mp(t, "d0", {"temp": 1.0})])
    # authentication
    r = enos.http.post(
        INTEGRATION, params={"action": "postMeasurepoint", "orgId": t.org}, json=good
    )
    refused(r, 401, 1009)
    refused(enos.post_json("postMeasurepoint", good, token="not-a-token"), 401, 1009)
    # parameters
    r = enos.http.post(
        INTEGRATION, params={"action": "postMeasurepoint"}, json=good, headers=enos.headers()
    )
    refused(r, 400, 1220)
    refused(enos.post_json("postMeasurepoints", good), 400, 1250)
    refused(enos.post_json("postAttribute", good), 400, 1260)
    refused(
        enos.post_json("postMeasurepoint", {**good, "method": "integration.nope.post"}), 400, 1250
    )
    # payloads
    refused(enos.post_json("postMeasurepoint", b""), 400, 1251)
    refused(enos.post_json("postMeasurepoint", {**good, "params": []}), 400, 1251)
    refused(enos.post_json("postMeasurepoint", b"{not json"), 400, 1220)
    refused(enos.post_json("postMeasurepoint", {**good, "params": "x"}), 400, 1220)
    refused(
        enos.post_json("postMeasurepoint", message(MP, [mp(t, "d0", {"temp": "hot"})])), 400, 1204
    )
    refused(
        enos.post_json("postMeasurepoint", message(MP, [mp(t, "d0", {"snapshot": 5})])), 400, 1204
    )
    refused(enos.post_json("postMeasurepoint", message(MP, [mp(t, "zz", {"temp": 1})])), 404, 1257)
    refused(
        enos.post_json(
            "postMeasurepoint", message(MP, [{"assetId": "nope", "measurepoints": {"temp": 1}}])
        ),
        404,
        1257,
    )
    big = {**good, "pad": "p" * (512 * 1024)}
    refused(enos.post_json("postMeasurepoint", big), 413, 1008)
    ok(enos.post_json("postMeasurepoint", good))


def test_rate_limited(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    t = make_tenant(shared_api, shared_hub.url, rate_limit=2)
    c = Enos(shared_hub, t)
    good = message(MP, [mp(t, "d0", {"temp": 1.0})])
    codes = [c.post_json("postMeasurepoint", good).json()["code"] for _ in range(6)]
    assert codes[:2] == [0, 0] and 1274 in codes
    refused_one = next(
        r for r in (c.post_json("postMeasurepoint", good) for _ in range(3)) if r.status_code != 200
    )
    refused(refused_one, 429, 1274)
    c.close()


def test_logs_of_a_service_account(enos: Enos, shared_api: httpx.Client) -> None:
    t = enos.t
    ok(enos.post_json("postMeasurepoint", message(MP, [mp(t, "d0", {"temp": 1.0})], id="req-1")))
    refused(
        enos.post_json("postMeasurepoint", message(MP, [mp(t, "zz", {"temp": 1.0})], id="req-2")),
        404,
        1257,
    )
    refused(enos.post_json("postNothing", message(MP, [mp(t, "d0", {"temp": 1.0})])), 400, 1250)
    r = shared_api.get(f"/api/v1/orgs/{t.org}/service-accounts/{t.app_key}/logs")
    items = r.json()["items"]
    assert items[0]["kind"] == "error" and items[0]["code"] == 1250  # refused before the pipeline
    assert {(i["kind"], i["requestId"], i["code"]) for i in items} >= {
        ("payload", "req-1", 200),
        ("payload", "req-2", 1257),
        ("error", "req-2", 1257),
    }


# -- organization isolation ----------------------------------------------------------------


def test_cross_org_refused(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    a = make_tenant(shared_api, shared_hub.url)
    b = make_tenant(shared_api, shared_hub.url)
    ca = Enos(shared_hub, a)
    # A's token, B's orgId
    refused(
        ca.post_json("postMeasurepoint", message(MP, [mp(b, "d0", {"temp": 1})]), org=b.org),
        403,
        1009,
    )
    # A's org with B's product: no permission; B's device by assetId: not found for A
    refused(ca.post_json("postMeasurepoint", message(MP, [mp(b, "d0", {"temp": 1})])), 403, 1009)
    foreign = [{"assetId": b.assets["d0"], "measurepoints": {"snapshot": "local://x"}}]
    refused(
        ca.post_json(
            "postMeasurepoint", message(MP, [{**foreign[0], "measurepoints": {"temp": 1}}])
        ),
        404,
        1257,
    )
    refused(
        ca.post_multipart("postMeasurepoint", message(MP, foreign), [("x", b"data")]), 404, 1257
    )
    assert samples(shared_api, b, "d0") == [] and device_files(shared_api, b, "d0") == []
    ca.close()
