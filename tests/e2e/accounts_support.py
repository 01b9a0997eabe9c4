"""Helpers for the operator-account tests: a signed-in httpx client that sends the
session's CSRF token on state-changing requests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import HubProcess

SESSION = "/api/v1/session"
OPEN: list[httpx.Client] = []  # closed after each test (close_clients)


def client(base_url: str, **kw: Any) -> httpx.Client:
    """An httpx client closed after the test."""
    c = httpx.Client(base_url=base_url, timeout=30, **kw)
    OPEN.append(c)
    return c


def close_clients() -> None:
    while OPEN:
        OPEN.pop().close()


class Operator:
    """An httpx client holding a user's session cookie (and its CSRF token)."""

    def __init__(self, hub: HubProcess, username: str, password: str, **kw: Any):
        self.hub = hub
        self.username = username
        self.c = client(hub.url, **kw)
        self.login = self.c.post(SESSION, json={"username": username, "password": password})
        assert self.login.status_code == 200, self.login.text
        self.csrf: str = self.login.json()["csrfToken"]

    @property
    def cookie(self) -> str:
        return self.c.cookies["headrace_session"]

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.c.get(path, **kw)

    def send(self, method: str, path: str, *, csrf: bool = True, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return self.c.request(method, path, headers=headers, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.send("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.send("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.send("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.send("DELETE", path, **kw)

    def close(self) -> None:
        self.c.close()


def admin_password(hub: HubProcess) -> str:
    return (hub.data_dir / "admin-password").read_text().strip()


def make_user(api: httpx.Client, roles: list[dict[str, Any]], prefix: str = "u") -> tuple[str, str]:
    """A new user with ``roles`` (created with the admin token); (username, password)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    password = "pw-" + uuid.uuid4().hex
    r = api.post("/api/v1/users", json={"username": name, "password": password, "roles": roles})
    assert r.status_code == 201, r.text
    assert "password" not in r.json()  # given, so not echoed
    return name, password


def make_org(api: httpx.Client, prefix: str = "org") -> str:
    org_id = f"{prefix}{uuid.uuid4().hex[:8]}"
    r = api.post("/api/v1/orgs", json={"name": org_id, "orgId": org_id})
    assert r.status_code == 201, r.text
    return org_id


def viewer(org: str) -> dict[str, Any]:
    return {"role": "org-viewer", "orgId": org}


def org_admin(org: str) -> dict[str, Any]:
    return {"role": "org-admin", "orgId": org}


PLATFORM_ADMIN = {"role": "platform-admin", "orgId": None}
