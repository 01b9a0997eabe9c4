"""Helpers of the rule tests: two sources of data per organization (MQTT history through
a channel, HTTP real-time through a service account) and a tansu broker."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import HubProcess
from tests.e2e.http_support import INTEGRATION, get_token
from tests.e2e.mqtt_support import Client, Provisioned, provision

MP_HTTP = "integration.measurepoint.post"


@dataclass
class Org:
    env: Provisioned
    token: str
    assets: dict[str, str]  # deviceKey -> assetId

    @property
    def id(self) -> str:
        return self.env.org


def make_org(hub: HubProcess, api: httpx.Client, devices: int = 3) -> Org:
    env = provision(api, devices=devices)
    r = api.post(f"/api/v1/orgs/{env.org}/service-accounts", json={"name": "live"})
    assert r.status_code == 201, r.text
    sa = r.json()
    token = get_token(hub.url, sa["appKey"], sa["appSecret"])
    r = api.get(f"/api/v1/orgs/{env.org}/products/{env.pk}/devices")
    assets = {d["deviceKey"]: d["assetId"] for d in r.json()["items"]}
    return Org(env, token, assets)


def history(client: Client, org: Org, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One MQTT history request (QoS 1), answered after it is stored."""
    payload = json.dumps(
        {
            "id": uuid.uuid4().hex[:8],
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": items,
        }
    ).encode()
    return client.request(f"/sys/{org.env.pk}/integration/measurepoint/post", payload)


def realtime(http: httpx.Client, org: Org, items: list[dict[str, Any]]) -> dict[str, Any]:
    params = [{"productKey": org.env.pk, **it} for it in items]
    body = {"id": uuid.uuid4().hex[:8], "version": "1.0", "method": MP_HTTP, "params": params}
    r = http.post(
        INTEGRATION,
        params={"action": "postMeasurepoint", "orgId": org.id},
        content=json.dumps(body).encode(),
        headers={"apim-accesstoken": org.token, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert out["code"] == 0, out
    return out


def mqtt_client(hub: HubProcess, org: Org) -> Client:
    c = Client(hub, org.env.username, org.env.password)
    assert c.accepted
    c.subscribe(f"/sys/{org.env.pk}/integration/#")
    return c


def kafka_rule(api: httpx.Client, org: str, bootstrap: str, **fields: Any) -> dict[str, Any]:
    sink = {"type": "kafka", "bootstrap": bootstrap, **fields.pop("sink", {})}
    body = {"name": fields.pop("name", "r-" + uuid.uuid4().hex[:6]), "sink": sink, **fields}
    r = api.post(f"/api/v1/orgs/{org}/rules", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def first_occurrences(values: list[Any]) -> list[Any]:
    """The values in order of their first occurrence (duplicates after a retry or a
    restart dropped)."""
    seen: set[Any] = set()
    out = []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
