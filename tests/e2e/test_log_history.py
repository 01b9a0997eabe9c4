"""A channel's message log read with ``GET .../logs`` (httpx) against a real hub: each
payload record keeps the bytes mosquitto_pub sent (capped), and the ``device`` and
``code`` filters are applied by the hub, over pages (docs/mqtt-integration.md)."""

from __future__ import annotations

from typing import Any

import httpx

from headrace.ingest.logpayload import LOG_PAYLOAD_MAX
from tests.conftest import HubProcess
from tests.e2e.mqtt_support import mp_request, provision
from tests.e2e.sse_support import mqtt_publish, stored_log

T = 1_700_000_000_000


def item(device: str, i: int = 0) -> dict[str, Any]:
    return {"deviceKey": device, "time": T + i, "measurepoints": {"temp": 1.5}}


def pages(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {**params, **({"cursor": cursor} if cursor is not None else {})}
        r = api.get(path, params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= params.get("limit", 100)
        out += body["items"]
        cursor = body["nextCursor"]
        if cursor is None:
            return out


def test_payloads_and_server_side_filters(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    big = mp_request("h4", [item("dev2", i) for i in range(120)])
    assert len(big) > LOG_PAYLOAD_MAX
    sent = [
        mp_request("h1", [item("dev0")]),
        mp_request("h2", [item("ghost")]),  # unknown device: 1257
        mp_request("h3", [item("dev1"), item("ghost2")]),  # one item refused
        big,
        b"{not json",
    ]
    mqtt_publish(shared_hub, env, sent)
    stored = stored_log(shared_api, env)
    payloads = [r for r in stored if r["kind"] == "payload"]
    assert len(payloads) == 5
    # each payload record holds the bytes sent, a long one cut at the cap
    for rec, body in zip(payloads, sent, strict=True):
        assert rec["size"] == len(body)
        if len(body) <= LOG_PAYLOAD_MAX:
            assert rec["payload"] == body.decode() and "payloadTruncated" not in rec
        else:
            assert rec["payload"] == body[:LOG_PAYLOAD_MAX].decode()
            assert rec["payloadTruncated"] is True
    assert all("payload" not in r for r in stored if r["kind"] != "payload")

    path = f"/api/v1/orgs/{env.org}/channels/{env.channel_id}/logs"
    newest = list(reversed(stored))

    def want(pred: Any) -> list[dict[str, Any]]:
        return [r for r in newest if pred(r)]

    def codes(r: dict[str, Any]) -> set[int]:
        return {r.get("code"), *(e.get("code") for e in r.get("errors", []))}

    def devices(r: dict[str, Any]) -> set[str]:
        return {e.get("deviceKey") for e in r.get("errors", [])}

    assert want(lambda r: "ghost" in devices(r)), stored
    assert want(lambda r: 1257 in codes(r)), stored
    # filtered by the hub, in pages of one: every match once, newest first
    assert pages(shared_api, path, device="ghost", limit=1) == want(lambda r: "ghost" in devices(r))
    assert pages(shared_api, path, code=1257, limit=1) == want(lambda r: 1257 in codes(r))
    assert pages(shared_api, path, code=200, kind="payload", limit=2) == want(
        lambda r: r["kind"] == "payload" and r["code"] == 200
    )
    assert pages(shared_api, path, device="ghost2", code=1257) == want(
        lambda r: "ghost2" in devices(r) and 1257 in codes(r)
    )
    assert pages(shared_api, path, device="nobody") == []
    # a code is a number
    assert shared_api.get(path, params={"code": "abc"}).status_code == 422
