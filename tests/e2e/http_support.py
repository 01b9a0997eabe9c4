"""Helpers shared by the real-time HTTP integration tests (tests/e2e/test_http_*.py)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import HubProcess

MODEL = {
    "id": "camera",
    "name": "Camera",
    "attributes": [
        {"id": "mac", "type": "string"},
        {"id": "manual", "type": "file"},
    ],
    "measurepoints": [
        {"id": "temp", "type": "double"},
        {"id": "snapshot", "type": "file"},
        {
            "id": "clip",
            "type": "struct",
            "fields": [
                {"id": "video", "type": "file"},
                {"id": "seconds", "type": "int"},
            ],
        },
        {"id": "Power", "type": "float", "withQuality": True},
    ],
    "events": [{"id": "motion", "outputs": [{"id": "picture", "type": "file"}]}],
}

TOKEN_GET = "/apim-token-service/v2.0/token/get"
TOKEN_REFRESH = "/apim-token-service/v2.0/token/refresh"
INTEGRATION = "/connect-service/v2.1/integration"
FILES = "/connect-service/v2.1/files"


@dataclass
class Tenant:
    """An organization with a product, devices and a service account."""

    org: str
    product: str
    devices: list[str]
    assets: dict[str, str]
    app_key: str
    secret: str
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def encryption(app_key: str, ts: str, secret: str) -> str:
    return hashlib.sha256((app_key + ts + secret).encode()).hexdigest()


def token_body(app_key: str, secret: str, ts: int | None = None, **extra: Any) -> dict[str, Any]:
    ts = int(time.time() * 1000) if ts is None else ts
    return {
        "appKey": app_key,
        "encryption": encryption(app_key, str(ts), secret),
        "timestamp": ts,
        **extra,
    }


def get_token(url: str, app_key: str, secret: str) -> str:
    r = httpx.post(url + TOKEN_GET, json=token_body(app_key, secret))
    body = r.json()
    assert body["status"] == 0, body
    return str(body["data"]["accessToken"])


def make_tenant(
    api: httpx.Client,
    url: str,
    *,
    devices: int = 3,
    inactivity: int = 300,
    rate_limit: float = 0.0,
) -> Tenant:
    r = api.post("/api/v1/orgs", json={"name": "Org " + uuid.uuid4().hex[:6]})
    assert r.status_code == 201, r.text
    org = r.json()["orgId"]
    assert api.post(f"/api/v1/orgs/{org}/models", json=MODEL).status_code == 201
    r = api.post(
        f"/api/v1/orgs/{org}/products",
        json={"name": "Cam", "modelId": "camera", "inactivityTimeout": inactivity},
    )
    assert r.status_code == 201, r.text
    pk = r.json()["productKey"]
    keys = [f"d{i}" for i in range(devices)]
    r = api.post(f"/api/v1/orgs/{org}/products/{pk}/devices", json=[{"deviceKey": k} for k in keys])
    assert r.status_code == 201, r.text
    assets = {d["deviceKey"]: d["assetId"] for d in r.json()["items"]}
    r = api.post(
        f"/api/v1/orgs/{org}/service-accounts", json={"name": "SCADA", "rateLimit": rate_limit}
    )
    assert r.status_code == 201, r.text
    sa = r.json()
    t = Tenant(org, pk, keys, assets, sa["appKey"], sa["appSecret"])
    t.token = get_token(url, t.app_key, t.secret)
    return t


def message(method: str, params: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex[:8],
        "version": "1.0",
        "method": method,
        "params": params,
        **extra,
    }


MP = "integration.measurepoint.post"
ATTR = "integration.attribute.post"
EVENT = "integration.event.post"


class Enos:
    """An EnOS real-time integration client over httpx."""

    def __init__(self, hub: HubProcess, tenant: Tenant):
        self.hub = hub
        self.t = tenant
        self.http = httpx.Client(base_url=hub.url, timeout=120)

    def close(self) -> None:
        self.http.close()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"apim-accesstoken": self.t.token if token is None else token}

    def post_json(
        self,
        action: str,
        msg: dict[str, Any] | bytes,
        *,
        org: str | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        content = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        return self.http.post(
            INTEGRATION,
            params={"action": action, "orgId": org or self.t.org},
            content=content,
            headers={**self.headers(token), "content-type": "application/json"},
        )

    def post_multipart(
        self,
        action: str,
        msg: dict[str, Any] | bytes,
        files: list[tuple[str, Any]] | None = None,
        *,
        md5: dict[str, str] | None = None,
        org: str | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        content = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        parts: list[tuple[str, Any]] = [("enos-message", (None, content, "application/json"))]
        for name, data in files or []:
            headers = {"Content-MD5": md5[name]} if md5 and name in md5 else {}
            parts.append(("enos-file", (name, data, "application/octet-stream", headers)))
        return self.http.post(
            INTEGRATION,
            params={"action": action, "orgId": org or self.t.org},
            files=parts,
            headers=self.headers(token),
        )

    def files(
        self,
        action: str,
        uri: str,
        device: str,
        *,
        method: str = "GET",
        _headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        q = {
            "action": action,
            "orgId": self.t.org,
            "fileUri": uri,
            "productKey": self.t.product,
            "deviceKey": device,
        }
        return self.http.request(
            method, FILES, params=q, headers={**self.headers(), **(_headers or {})}
        )


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == 0 and body["msg"] == "OK", body
    uuid.UUID(body["requestId"])
    return body


def refused(r: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert body["msg"] and set(body) == {"code", "msg", "requestId", "data"}
    return body
