"""Service accounts (admin API) and the EnOS token service (B.1) against a real hub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HubProcess, from_template
from tests.e2e.http_support import (
    MP,
    TOKEN_GET,
    TOKEN_REFRESH,
    Enos,
    make_tenant,
    message,
    ok,
    refused,
    token_body,
)


def token_call(url: str, path: str, body: object) -> dict:
    r = httpx.post(url + path, json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == {"status", "msg", "business", "data"}
    assert data["business"] == "apim-token-service" and data["msg"]
    return data  # type: ignore[no-any-return]


def test_service_account_admin_api(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    org = shared_api.post("/api/v1/orgs", json={"name": "SA org"}).json()["orgId"]
    base = f"/api/v1/orgs/{org}/service-accounts"
    r = shared_api.post(base, json={"name": "scada", "description": "plant"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["appKey"] and len(created["appSecret"]) >= 32 and created["enabled"]
    ak = created["appKey"]
    # the secret is shown once
    got = shared_api.get(f"{base}/{ak}").json()
    assert "appSecret" not in got and "secret" not in got and got["name"] == "scada"
    listed = shared_api.get(base).json()
    assert [a["appKey"] for a in listed["items"]] == [ak]
    assert all("appSecret" not in a and "secret" not in a for a in listed["items"])
    # org-scoped: another org does not see it
    other = shared_api.post("/api/v1/orgs", json={"name": "other"}).json()["orgId"]
    assert shared_api.get(f"/api/v1/orgs/{other}/service-accounts/{ak}").status_code == 404
    assert shared_api.get(f"/api/v1/orgs/{other}/service-accounts").json()["items"] == []
    # rotate: a new secret, the old one refused
    rotated = shared_api.post(f"{base}/{ak}/rotate-secret").json()
    assert rotated["appSecret"] != created["appSecret"]
    old = token_call(shared_hub.url, TOKEN_GET, token_body(ak, created["appSecret"]))
    assert old["status"] == 1003
    assert (
        token_call(shared_hub.url, TOKEN_GET, token_body(ak, rotated["appSecret"]))["status"] == 0
    )
    # disable: tokens refused; enable again
    assert shared_api.post(f"{base}/{ak}/disable").json()["enabled"] is False
    assert (
        token_call(shared_hub.url, TOKEN_GET, token_body(ak, rotated["appSecret"]))["status"]
        == 1002
    )
    assert shared_api.patch(f"{base}/{ak}", json={"enabled": True}).json()["enabled"] is True
    assert (
        token_call(shared_hub.url, TOKEN_GET, token_body(ak, rotated["appSecret"]))["status"] == 0
    )
    # validation and auth
    assert shared_api.post(base, json={"name": ""}).status_code == 422
    assert shared_api.post(base, json={"name": "x", "bogus": 1}).status_code == 422
    assert shared_api.post(base, json={"name": "x", "appKey": ak}).status_code == 409
    assert httpx.get(shared_hub.url + base).status_code == 401
    assert shared_api.delete(f"{base}/{ak}").status_code == 204
    assert shared_api.get(f"{base}/{ak}").status_code == 404
    assert (
        token_call(shared_hub.url, TOKEN_GET, token_body(ak, rotated["appSecret"]))["status"]
        == 1002
    )


def test_token_get_and_refresh(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    t = make_tenant(shared_api, shared_hub.url)
    url = shared_hub.url
    first = token_call(url, TOKEN_GET, token_body(t.app_key, t.secret))
    assert first["status"] == 0 and first["msg"] == "SUCCESS"
    assert first["data"]["accessToken"] == t.token  # same token while valid
    assert 7190 <= first["data"]["expire"] <= 7200
    # timestamp as a string
    ts = str(int(time.time() * 1000) + 7)
    b = token_body(t.app_key, t.secret, int(ts))
    b["timestamp"] = ts
    assert token_call(url, TOKEN_GET, b)["data"]["accessToken"] == t.token
    # refresh: a new token with the full lifetime; the old one stops working
    r = token_call(url, TOKEN_REFRESH, token_body(t.app_key, t.secret, accessToken=t.token))
    assert r["status"] == 0 and r["data"]["expire"] == 7200
    new = r["data"]["accessToken"]
    assert new != t.token
    c = Enos(shared_hub, t)
    msg = message(MP, [{"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 1}}])
    refused(c.post_json("postMeasurepoint", msg), 401, 1009)
    ok(c.post_json("postMeasurepoint", msg, token=new))
    c.close()


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda b: {**b, "appKey": "nobody"}, 1002),
        (lambda b: {**b, "encryption": "0" * 64}, 1003),
        (lambda b: {**b, "timestamp": b["timestamp"] - 10 * 60 * 1000}, 1003),
        (lambda b: {**b, "timestamp": b["timestamp"] + 10 * 60 * 1000}, 1003),
        (lambda b: {**b, "timestamp": "yesterday"}, 1004),
        (lambda b: {**b, "appKey": 5}, 1004),
        (lambda b: [b], 1004),
        (lambda b: {k: v for k, v in b.items() if k != "encryption"}, 1202),
        (lambda b: {**b, "appKey": ""}, 1202),
    ],
)
def test_token_errors(shared_hub: HubProcess, shared_api: httpx.Client, mutate, status) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant(shared_api, shared_hub.url, devices=1)
    assert (
        token_call(shared_hub.url, TOKEN_GET, mutate(token_body(t.app_key, t.secret)))["status"]
        == status
    )


def test_token_raw_body_errors(shared_hub: HubProcess) -> None:
    for content in (b"", b"{not json", b"x" * 20000):
        r = httpx.post(
            shared_hub.url + TOKEN_GET,
            content=content,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200
        assert r.json()["status"] == (1202 if not content else 1004)


def test_replayed_encryption_refused(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    t = make_tenant(shared_api, shared_hub.url, devices=1)
    b = token_body(t.app_key, t.secret)
    assert token_call(shared_hub.url, TOKEN_GET, b)["status"] == 0
    assert token_call(shared_hub.url, TOKEN_GET, b)["status"] == 1001
    rb = token_body(t.app_key, t.secret, accessToken=t.token)
    assert token_call(shared_hub.url, TOKEN_REFRESH, rb)["status"] == 0
    assert token_call(shared_hub.url, TOKEN_REFRESH, rb)["status"] == 1001


def test_refresh_errors(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    a = make_tenant(shared_api, shared_hub.url, devices=1)
    b = make_tenant(shared_api, shared_hub.url, devices=1)
    url = shared_hub.url
    assert token_call(url, TOKEN_REFRESH, token_body(a.app_key, a.secret))["status"] == 1202
    assert (
        token_call(url, TOKEN_REFRESH, token_body(a.app_key, a.secret, accessToken="x"))["status"]
        == 1204
    )
    # another account's token cannot be refreshed with my credentials
    assert (
        token_call(url, TOKEN_REFRESH, token_body(a.app_key, a.secret, accessToken=b.token))[
            "status"
        ]
        == 1204
    )
    assert (
        token_call(url, TOKEN_REFRESH, token_body(a.app_key, a.secret, accessToken=7))["status"]
        == 1004
    )


@pytest.fixture
def short_token_hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(from_template(hub_template, tmp_path / "data"), ["--set", "token.ttl=2"])
    h.start()
    yield h
    h.stop()


def test_expired_token_refused(short_token_hub: HubProcess) -> None:
    h = short_token_hub
    with h.client() as api:
        t = make_tenant(api, h.url)
        c = Enos(h, t)
        msg = message(
            MP, [{"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 1}}]
        )
        ok(c.post_json("postMeasurepoint", msg))
        time.sleep(2.2)
        body = refused(c.post_json("postMeasurepoint", msg), 401, 1009)
        assert "expired" in body["msg"]
        r = token_call(h.url, TOKEN_REFRESH, token_body(t.app_key, t.secret, accessToken=t.token))
        assert r["status"] == 1203
        # get answers a new token once the old one expired
        new = token_call(h.url, TOKEN_GET, token_body(t.app_key, t.secret))["data"]
        assert new["accessToken"] != t.token and new["expire"] == 2
        ok(c.post_json("postMeasurepoint", msg, token=new["accessToken"]))
        c.close()


def test_tokens_survive_restart(hub: HubProcess, api: httpx.Client) -> None:
    t = make_tenant(api, hub.url)
    b = token_body(t.app_key, t.secret)
    assert token_call(hub.url, TOKEN_GET, b)["status"] == 0
    hub.restart()
    c = Enos(hub, t)
    msg = message(MP, [{"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 2}}])
    ok(c.post_json("postMeasurepoint", msg))
    again = token_call(hub.url, TOKEN_GET, token_body(t.app_key, t.secret))
    assert again["data"]["accessToken"] == t.token
    # the replay memory survives too
    assert token_call(hub.url, TOKEN_GET, b)["status"] == 1001
    c.close()


def test_service_account_cli(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    import json
    import subprocess
    import sys

    org = shared_api.post("/api/v1/orgs", json={"name": "CLI org"}).json()["orgId"]

    def cli(*args: str) -> object:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "headrace",
                "service-account",
                *args,
                "--org",
                org,
                "--url",
                shared_hub.url,
                "--token",
                ADMIN_TOKEN,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else None

    created = cli("create", "from the cli", "--rate-limit", "5")
    assert isinstance(created, dict) and created["rateLimit"] == 5 and created["appSecret"]
    ak = created["appKey"]
    assert (
        token_call(shared_hub.url, TOKEN_GET, token_body(ak, created["appSecret"]))["status"] == 0
    )
    listed = cli("list")
    assert isinstance(listed, dict) and [a["appKey"] for a in listed["items"]] == [ak]
    assert cli("disable", ak)["enabled"] is False  # type: ignore[index]
    assert cli("enable", ak)["enabled"] is True  # type: ignore[index]
    rotated = cli("rotate-secret", ak)
    assert isinstance(rotated, dict) and rotated["appSecret"] != created["appSecret"]
    cli("delete", ak)
    assert cli("list") == {"items": [], "nextCursor": None}
