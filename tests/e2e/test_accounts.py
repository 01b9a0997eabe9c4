"""Operator accounts against a real hub over HTTP (httpx): login and logout, the session
cookie's flags (Secure over TLS), CSRF, each role's allowed and refused calls, login rate
limits, session expiry and restarts, the audit log, the ``headrace user`` commands."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HubProcess, from_template, running_hub
from tests.e2e.accounts_support import (
    OPEN,
    PLATFORM_ADMIN,
    SESSION,
    Operator,
    admin_password,
    client,
    close_clients,
    make_org,
    make_user,
    org_admin,
    viewer,
)


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """The module's hub on a fresh data dir (not ``hub_template``): its first start, and
    the operator it creates, are what this module tests first."""
    yield from running_hub(tmp_path_factory.mktemp("hub") / "data")


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    close_clients()


MODEL = {"id": "meter", "name": "Meter", "measurepoints": [{"id": "kwh", "type": "double"}]}


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    """The API's error shape with ``status``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()["error"]
    assert body["status"] == status and body["code"] and body["message"]
    return dict(body)


def cookie_attrs(r: httpx.Response) -> tuple[str, set[str]]:
    """(value, attribute names in lower case, with their values) of the session cookie."""
    header = r.headers["set-cookie"]
    first, *attrs = [p.strip() for p in header.split(";")]
    name, _, value = first.partition("=")
    assert name == "headrace_session"
    return value, {a.lower() for a in attrs}


# -- login, logout, cookie ------------------------------------------------------------------


def test_first_admin_login_logout(shared_hub: HubProcess) -> None:
    path = shared_hub.data_dir / "admin-password"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "created the first operator" in shared_hub.log_path.read_text()
    c = client(shared_hub.url)
    error(c.get(SESSION), 401)
    error(c.post(SESSION, json={"username": "admin", "password": "not-the-password"}), 401)
    error(c.post(SESSION, json={"username": "nobody", "password": "not-the-password"}), 401)
    assert "headrace_session" not in c.cookies
    r = c.post(SESSION, json={"username": "admin", "password": admin_password(shared_hub)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "user": {"username": "admin", "roles": [PLATFORM_ADMIN]},
        "csrfToken": body["csrfToken"],
    }
    assert len(body["csrfToken"]) >= 32
    value, attrs = cookie_attrs(r)
    assert len(value) >= 32 and value != body["csrfToken"]
    assert {"httponly", "samesite=strict", "path=/"} <= attrs
    assert "secure" not in attrs  # plain HTTP
    assert c.get(SESSION).json() == body
    # the session works on the admin API like the token
    assert c.get("/api/v1/orgs").status_code == 200
    # logout needs the CSRF token
    error(c.delete(SESSION), 403)
    assert c.get(SESSION).status_code == 200
    r = c.delete(SESSION, headers={"X-CSRF-Token": body["csrfToken"]})
    assert r.status_code == 204
    _, attrs = cookie_attrs(r)
    assert "max-age=0" in attrs
    # the old cookie opens nothing any more
    old = client(shared_hub.url, cookies={"headrace_session": value})
    error(old.get(SESSION), 401)
    error(old.get("/api/v1/orgs"), 401)
    error(old.get("/api/v1/users"), 401)


def test_login_body_is_checked(shared_hub: HubProcess) -> None:
    url = shared_hub.url + SESSION
    error(httpx.post(url, content=b"username=admin&password=x"), 415)  # a form: refused
    assert httpx.post(url, json={"username": "admin"}).status_code in (400, 422)
    assert (
        httpx.post(url, content=b"{", headers={"content-type": "application/json"}).status_code
        == 400
    )


def test_a_forged_cookie_and_a_wrong_token_are_refused(shared_hub: HubProcess) -> None:
    forged = client(shared_hub.url, cookies={"headrace_session": "x" * 43})
    error(forged.get("/api/v1/orgs"), 401)
    error(forged.get(SESSION), 401)
    wrong = httpx.get(shared_hub.url + "/api/v1/orgs", headers={"Authorization": "Bearer nope"})
    error(wrong, 401)
    # the admin token has no session: /session is for users
    error(
        httpx.get(shared_hub.url + SESSION, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}), 401
    )


# -- CSRF -----------------------------------------------------------------------------------------


def test_csrf_on_every_state_change(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    admin = Operator(shared_hub, "admin", admin_password(shared_hub))
    org = "csrf-" + os.urandom(4).hex()
    # missing, wrong, another session's token: 403, nothing changed
    other = Operator(shared_hub, "admin", admin_password(shared_hub))
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": other.csrf}):
        r = admin.post(
            "/api/v1/orgs", json={"name": org, "orgId": org}, csrf=False, headers=headers
        )
        assert error(r, 403)["code"] == "forbidden"
    error(shared_api.get(f"/api/v1/orgs/{org}"), 404)
    # every method that changes state is checked, on org routes too
    assert admin.post("/api/v1/orgs", json={"name": org, "orgId": org}).status_code == 201
    error(admin.patch(f"/api/v1/orgs/{org}", json={"name": "x"}, csrf=False), 403)
    error(admin.post(f"/api/v1/orgs/{org}/models", json=MODEL, csrf=False), 403)
    error(admin.put(f"/api/v1/orgs/{org}/models/meter", json=MODEL, csrf=False), 403)
    error(admin.delete(f"/api/v1/orgs/{org}", csrf=False), 403)
    assert shared_api.get(f"/api/v1/orgs/{org}").json()["name"] == org
    # reads need none; the admin token needs none
    assert admin.get(f"/api/v1/orgs/{org}").status_code == 200
    assert shared_api.patch(f"/api/v1/orgs/{org}", json={"name": "by token"}).status_code == 200
    assert admin.delete(f"/api/v1/orgs/{org}").status_code == 204
    admin.close()
    other.close()


# -- roles ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orgs(shared_api: httpx.Client) -> tuple[str, str]:
    a, b = make_org(shared_api, "ra"), make_org(shared_api, "rb")
    for org in (a, b):
        shared_api.post(f"/api/v1/orgs/{org}/models", json=MODEL).raise_for_status()
    return a, b


def test_org_viewer_reads_its_org_only(
    shared_hub: HubProcess, shared_api: httpx.Client, orgs: tuple[str, str]
) -> None:
    a, b = orgs
    name, password = make_user(shared_api, [viewer(a)])
    v = Operator(shared_hub, name, password)
    assert v.login.json()["user"] == {"username": name, "roles": [viewer(a)]}
    assert [o["orgId"] for o in v.get("/api/v1/orgs").json()["items"]] == [a]
    assert v.get(f"/api/v1/orgs/{a}").status_code == 200
    assert v.get(f"/api/v1/orgs/{a}/models/meter").json()["id"] == "meter"
    assert v.get(f"/api/v1/orgs/{a}/channels").status_code == 200
    # writes in its org: 403, and nothing changed
    assert "org-viewer" in error(v.patch(f"/api/v1/orgs/{a}", json={"name": "v"}), 403)["message"]
    error(v.post(f"/api/v1/orgs/{a}/models", json={**MODEL, "id": "m2"}), 403)
    error(v.delete(f"/api/v1/orgs/{a}/models/meter"), 403)
    error(v.post(f"/api/v1/orgs/{a}/products", json={"name": "p", "modelId": "meter"}), 403)
    assert shared_api.get(f"/api/v1/orgs/{a}").json()["name"] == a
    assert shared_api.get(f"/api/v1/orgs/{a}/models/meter").status_code == 200
    # another org is as if it did not exist: the same 404 as an org that does not
    other = error(v.get(f"/api/v1/orgs/{b}"), 404)
    missing = error(shared_api.get("/api/v1/orgs/no-such-org"), 404)
    assert other["message"] == missing["message"].replace("no-such-org", b)
    error(v.get(f"/api/v1/orgs/{b}/models"), 404)
    error(v.get(f"/api/v1/orgs/{b}/channels"), 404)
    error(v.patch(f"/api/v1/orgs/{b}", json={"name": "v"}), 404)
    # platform things
    error(v.post("/api/v1/orgs", json={"name": "x"}), 403)
    error(v.get("/api/v1/users"), 403)
    error(v.get("/api/v1/audit"), 403)
    error(v.get("/metrics"), 403)
    v.close()


def test_org_admin_writes_its_org_only(
    shared_hub: HubProcess, shared_api: httpx.Client, orgs: tuple[str, str]
) -> None:
    a, b = orgs
    name, password = make_user(shared_api, [org_admin(a)])
    oa = Operator(shared_hub, name, password)
    assert [o["orgId"] for o in oa.get("/api/v1/orgs").json()["items"]] == [a]
    r = oa.post(f"/api/v1/orgs/{a}/products", json={"name": "p", "modelId": "meter"})
    assert r.status_code == 201, r.text
    pk = r.json()["productKey"]
    assert (
        oa.post(f"/api/v1/orgs/{a}/products/{pk}/devices", json={"deviceKey": "d1"}).status_code
        == 201
    )
    ch = oa.post(f"/api/v1/orgs/{a}/channels", json={"name": "c", "products": [pk]})
    assert ch.status_code == 201 and ch.json()["password"]
    assert oa.patch(f"/api/v1/orgs/{a}", json={"name": "renamed"}).json()["name"] == "renamed"
    shared_api.patch(f"/api/v1/orgs/{a}", json={"name": a}).raise_for_status()
    error(oa.get(f"/api/v1/orgs/{b}"), 404)
    error(oa.post(f"/api/v1/orgs/{b}/models", json={**MODEL, "id": "x"}), 404)
    error(oa.post("/api/v1/orgs", json={"name": "x"}), 403)
    error(oa.post("/api/v1/users", json={"username": "x", "roles": []}), 403)
    error(oa.get("/api/v1/users"), 403)
    oa.close()


def test_roles_in_several_orgs_and_changed_live(
    shared_hub: HubProcess, shared_api: httpx.Client, orgs: tuple[str, str]
) -> None:
    a, b = orgs
    name, password = make_user(shared_api, [viewer(a), org_admin(b)])
    u = Operator(shared_hub, name, password)
    assert sorted(o["orgId"] for o in u.get("/api/v1/orgs").json()["items"]) == sorted([a, b])
    assert u.patch(f"/api/v1/orgs/{b}", json={"name": b}).status_code == 200
    error(u.patch(f"/api/v1/orgs/{a}", json={"name": a}), 403)
    # the roles are read on every request: a change applies to the open session at once
    r = shared_api.patch(f"/api/v1/users/{name}", json={"roles": [org_admin(a)]})
    assert r.status_code == 200 and r.json()["roles"] == [org_admin(a)]
    assert u.patch(f"/api/v1/orgs/{a}", json={"name": a}).status_code == 200
    error(u.get(f"/api/v1/orgs/{b}"), 404)
    assert u.get(SESSION).json()["user"]["roles"] == [org_admin(a)]
    u.close()


def test_platform_admin_user(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    name, password = make_user(shared_api, [PLATFORM_ADMIN])
    pa = Operator(shared_hub, name, password)
    org = pa.post("/api/v1/orgs", json={"name": "by pa"})
    assert org.status_code == 201
    listed = {o["orgId"] for o in pa.get("/api/v1/orgs?limit=1000").json()["items"]}
    assert org.json()["orgId"] in listed and len(listed) >= 2
    assert pa.get("/api/v1/users").status_code == 200
    assert pa.get("/metrics").status_code == 200
    assert pa.delete(f"/api/v1/orgs/{org.json()['orgId']}").status_code == 204
    pa.close()


# -- users ------------------------------------------------------------------------------------------


def test_user_management(
    shared_hub: HubProcess, shared_api: httpx.Client, orgs: tuple[str, str]
) -> None:
    a, _ = orgs
    users = "/api/v1/users"
    r = shared_api.post(users, json={"username": "carol", "roles": [viewer(a)]})
    assert r.status_code == 201
    generated = r.json()["password"]
    assert len(generated) >= 16 and "passwordHash" not in r.text
    error(shared_api.post(users, json={"username": "carol", "password": "x" * 12}), 409)
    bad = [
        ({"username": "bad name", "password": "x" * 12}, "username"),
        ({"username": "d1", "password": "short"}, "password"),
        ({"username": "d2", "roles": [{"role": "boss", "orgId": a}]}, "roles[0].role"),
        ({"username": "d3", "roles": [{"role": "org-admin"}]}, "roles[0].orgId"),
        ({"username": "d4", "roles": [{"role": "org-admin", "orgId": "nope"}]}, "roles[0].orgId"),
        ({"username": "d5", "roles": [{"role": "platform-admin", "orgId": a}]}, "roles[0].orgId"),
    ]
    for body, field in bad:
        assert error(shared_api.post(users, json=body), 422)["field"] == field, body
    error(shared_api.get(users + "/d1"), 404)
    got = shared_api.get(users + "/carol").json()
    assert got["roles"] == [viewer(a)] and "password" not in got and "passwordHash" not in got
    # paging
    page1 = shared_api.get(users, params={"limit": 1}).json()
    assert len(page1["items"]) == 1 and page1["nextCursor"]
    page2 = shared_api.get(users, params={"limit": 1, "cursor": page1["nextCursor"]}).json()
    assert page2["items"][0]["username"] > page1["items"][0]["username"]
    # a reset ends the user's sessions; the old password stops working
    carol = Operator(shared_hub, "carol", generated)
    r = shared_api.post(users + "/carol/password", json={})
    assert r.status_code == 200
    new = r.json()["password"]
    assert new != generated
    error(carol.get(SESSION), 401)
    error(
        httpx.post(shared_hub.url + SESSION, json={"username": "carol", "password": generated}), 401
    )
    carol = Operator(shared_hub, "carol", new)
    assert (
        shared_api.post(users + "/carol/password", json={"password": "chosen-password"})
        .json()
        .get("password")
        is None
    )
    error(carol.get(SESSION), 401)
    carol = Operator(shared_hub, "carol", "chosen-password")
    # deleting ends its sessions
    assert shared_api.delete(users + "/carol").status_code == 204
    error(carol.get(SESSION), 401)
    error(shared_api.get(users + "/carol"), 404)
    error(shared_api.delete(users + "/carol"), 404)


def test_own_password_change(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    name, password = make_user(shared_api, [])
    here, elsewhere = Operator(shared_hub, name, password), Operator(shared_hub, name, password)
    change = "/api/v1/session/password"
    body = {"currentPassword": password, "newPassword": "a-new-password"}
    error(here.post(change, json=body, csrf=False), 403)
    error(here.post(change, json={**body, "currentPassword": "wrong-password"}), 401)
    error(here.post(change, json={**body, "newPassword": "short"}), 422)
    assert here.post(change, json=body).status_code == 204
    assert here.get(SESSION).status_code == 200  # this session goes on
    error(elsewhere.get(SESSION), 401)  # the others end
    error(httpx.post(shared_hub.url + SESSION, json={"username": name, "password": password}), 401)
    Operator(shared_hub, name, "a-new-password").close()
    # the admin token is no user
    error(shared_api.post(change, json=body), 401)


# -- the audit log --------------------------------------------------------------------------------------


def test_audit_records_every_change(
    shared_hub: HubProcess, shared_api: httpx.Client, orgs: tuple[str, str]
) -> None:
    a, b = orgs
    started = int(time.time() * 1000)
    name, password = make_user(shared_api, [org_admin(a)])
    oa = Operator(shared_hub, name, password)
    assert oa.patch(f"/api/v1/orgs/{a}/models/meter", json=MODEL).status_code == 405  # no route
    assert oa.put(f"/api/v1/orgs/{a}/models/meter", json={**MODEL, "name": "M"}).status_code == 200
    error(oa.put(f"/api/v1/orgs/{b}/models/meter", json=MODEL), 404)  # refused: not recorded
    shared_api.put(f"/api/v1/orgs/{b}/models/meter", json={**MODEL, "name": "B"}).raise_for_status()
    v_name, v_password = make_user(shared_api, [viewer(a)])
    v = Operator(shared_hub, v_name, v_password)
    error(v.put(f"/api/v1/orgs/{a}/models/meter", json=MODEL), 403)  # refused: not recorded

    mine = oa.get("/api/v1/audit", params={"start": started}).json()["items"]
    # an org admin sees its org's records only: its own change here
    assert {r["orgId"] for r in mine} == {a}
    change = next(r for r in mine if r["method"] == "PUT")
    assert change == {
        "id": change["id"],
        "time": change["time"],
        "user": name,
        "via": "session",
        "orgId": a,
        "action": "PUT /orgs/{org_id}/models/{model_id}",
        "method": "PUT",
        "path": f"/api/v1/orgs/{a}/models/meter",
        "target": "models/meter",
        "status": 200,
    }
    assert started <= change["time"] <= int(time.time() * 1000)
    assert len([r for r in mine if r["method"] == "PUT"]) == 1
    error(oa.get("/api/v1/audit", params={"orgId": b}), 404)

    # the platform view: every record, filtered by org, user, time
    everything = shared_api.get("/api/v1/audit", params={"start": started, "limit": 1000}).json()[
        "items"
    ]
    by_token = [r for r in everything if r["orgId"] == b and r["method"] == "PUT"]
    assert len(by_token) == 1 and by_token[0]["user"] is None and by_token[0]["via"] == "token"
    created = [r for r in everything if r["action"] == "POST /users"]
    assert len(created) == 2 and all(
        r["via"] == "token" and r["target"] == "users" for r in created
    )
    logins = [r for r in everything if r["action"] == "login"]
    assert {r["user"] for r in logins} >= {name, v_name}
    assert not [r for r in everything if r["user"] == v_name and r["action"] != "login"]
    only_b = shared_api.get("/api/v1/audit", params={"orgId": b, "start": started}).json()["items"]
    assert only_b == by_token
    of_user = shared_api.get("/api/v1/audit", params={"user": name, "start": started}).json()[
        "items"
    ]
    assert {r["user"] for r in of_user} == {name} and len(of_user) == 2  # login, PUT
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids, reverse=True)  # newest first
    later = shared_api.get("/api/v1/audit", params={"start": change["time"] + 1_000_000}).json()
    assert later["items"] == []
    before = shared_api.get("/api/v1/audit", params={"end": started}).json()["items"]
    assert all(r["time"] < started for r in before)
    # paging
    p1 = shared_api.get("/api/v1/audit", params={"limit": 2, "start": started}).json()
    p2 = shared_api.get(
        "/api/v1/audit", params={"limit": 2, "start": started, "cursor": p1["nextCursor"]}
    ).json()
    assert [r["id"] for r in p1["items"] + p2["items"]] == ids[:4]
    oa.close()
    v.close()


# -- the CLI ---------------------------------------------------------------------------------------------


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_cli_user_commands(shared_hub: HubProcess, orgs: tuple[str, str]) -> None:
    a, _ = orgs
    common = ["--url", shared_hub.url, "--token", ADMIN_TOKEN]
    r = cli(
        "user", "create", "--admin", "ops", "--password-stdin", *common, stdin="ops-password-1\n"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["roles"] == [PLATFORM_ADMIN]
    ops = Operator(shared_hub, "ops", "ops-password-1")
    assert ops.get("/api/v1/users").status_code == 200
    r = cli("user", "create", "bob", "--role", f"org-viewer:{a}", *common)
    assert r.returncode == 0, r.stderr
    bob = json.loads(r.stdout)
    assert bob["roles"] == [viewer(a)]
    Operator(shared_hub, "bob", bob["password"]).close()
    listed = json.loads(cli("user", "list", *common).stdout)
    assert {"ops", "bob", "admin"} <= {u["username"] for u in listed["items"]}
    r = cli("user", "passwd", "bob", "--password-stdin", *common, stdin="bob-password-2\n")
    assert r.returncode == 0, r.stderr
    Operator(shared_hub, "bob", "bob-password-2").close()
    # errors: a bad role, an existing user, no password on stdin
    assert cli("user", "create", "eve", "--role", "org-viewer", *common).returncode == 2
    dup = cli("user", "create", "bob", *common)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert cli("user", "create", "eve", "--password-stdin", *common, stdin="").returncode == 2
    assert cli("user", "delete", "bob", *common).returncode == 0
    ops.close()


# -- hubs of their own: limits, expiry, restart, TLS ---------------------------------------------------


IDLE, MAX_AGE = 1.5, 4.0  # seconds: test_sessions_expire waits them out


@pytest.fixture
def strict_hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(
        from_template(hub_template, tmp_path / "data"),
        [
            "--set",
            "session.login_failures=5",
            "--set",
            "session.login_user_failures=3",
            "--set",
            "session.login_window=8",
            "--set",
            f"session.idle_timeout={IDLE}",
            "--set",
            f"session.max_age={MAX_AGE}",
        ],
    )
    h.start()
    yield h
    h.stop()


def test_login_rate_limit(strict_hub: HubProcess) -> None:
    url = strict_hub.url + SESSION
    api = strict_hub.client()
    OPEN.append(api)
    name, password = make_user(api, [])
    other, other_password = make_user(api, [])
    for _ in range(3):
        error(httpx.post(url, json={"username": name, "password": "wrong-password"}), 401)
    # the username is blocked: even the right password gets 429, with Retry-After
    r = httpx.post(url, json={"username": name, "password": password})
    assert error(r, 429)["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 8
    # another user from the same address still logs in (3 failures < 5 per address)
    Operator(strict_hub, other, other_password).close()
    for _ in range(2):
        error(httpx.post(url, json={"username": other, "password": "wrong-password"}), 401)
    # 5 failures from this address: everyone from it is refused
    r = httpx.post(url, json={"username": other, "password": other_password})
    assert error(r, 429) and int(r.headers["retry-after"]) >= 1
    # the admin token is not affected
    assert api.get("/api/v1/users").status_code == 200
    time.sleep(int(r.headers["retry-after"]) + 0.5)
    Operator(strict_hub, name, password).close()


def test_sessions_expire(strict_hub: HubProcess) -> None:
    api = strict_hub.client()
    OPEN.append(api)
    name, password = make_user(api, [])
    idle = Operator(strict_hub, name, password)
    busy = Operator(strict_hub, name, password)
    # idle: IDLE s without a request ends it
    time.sleep(IDLE + 0.5)
    error(idle.get(SESSION), 401)
    # busy: requests (every 0.25 s, well within IDLE) keep it alive past the idle
    # timeout, but not past MAX_AGE
    busy2 = Operator(strict_hub, name, password)
    start = time.monotonic()
    alive = []
    while time.monotonic() - start < MAX_AGE + 1.5:
        alive.append((time.monotonic() - start, busy2.get(SESSION).status_code))
        time.sleep(0.25)
    ok = [t for t, s in alive if s == 200]
    assert ok and max(ok) > IDLE + 1, alive  # lived beyond the idle timeout
    assert alive[-1][1] == 401 and min(t for t, s in alive if s == 401) >= MAX_AGE - 1, alive
    error(busy.get("/api/v1/orgs"), 401)


def test_sessions_survive_restart(hub: HubProcess) -> None:
    password = admin_password(hub)
    admin = Operator(hub, "admin", password)
    cookie, csrf = admin.cookie, admin.csrf
    org = admin.post("/api/v1/orgs", json={"name": "before restart"}).json()["orgId"]
    hub.restart()
    # the same cookie and CSRF token go on; no second admin, no new password
    again = client(hub.url, cookies={"headrace_session": cookie})
    r = again.get(SESSION)
    assert r.status_code == 200 and r.json()["csrfToken"] == csrf
    r = again.patch(f"/api/v1/orgs/{org}", json={"name": "after"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert admin_password(hub) == password
    admin_api = hub.client()
    OPEN.append(admin_api)
    assert [u["username"] for u in admin_api.get("/api/v1/users").json()["items"]] == ["admin"]
    # the audit log is durable too
    actions = [r["action"] for r in admin_api.get("/api/v1/audit").json()["items"]]
    assert actions[:3] == ["PATCH /orgs/{org_id}", "POST /orgs", "login"]


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[HubProcess]:
    h = HubProcess(tmp_path / "data", https=True)
    h.start()
    yield h
    h.stop()


def test_cookie_is_secure_over_tls(tls_hub: HubProcess) -> None:
    assert tls_hub.url.startswith("https://")
    ca = ssl.create_default_context(cafile=str(tls_hub.data_dir / "tls" / "server-cert.pem"))
    op = Operator(tls_hub, "admin", admin_password(tls_hub), verify=ca)
    _, attrs = cookie_attrs(op.login)
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attrs
    assert op.get("/api/v1/orgs").status_code == 200
    op.close()


def test_cookie_secure_setting_over_plain_http(tmp_path: Path) -> None:
    h = HubProcess(tmp_path / "data", ["--set", "session.cookie_secure=true"])
    h.start()
    try:
        r = httpx.post(h.url + SESSION, json={"username": "admin", "password": admin_password(h)})
        assert r.status_code == 200
        assert "secure" in cookie_attrs(r)[1]
    finally:
        h.stop()
