"""Online state driven by real-time HTTP data, against a real hub."""

from __future__ import annotations

import time

import httpx

from tests.conftest import HubProcess
from tests.e2e.http_support import MP, Enos, make_tenant, message, ok


def wait_for(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_online_then_offline(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    t = make_tenant(shared_api, shared_hub.url, inactivity=1)
    c = Enos(shared_hub, t)
    base = f"/api/v1/orgs/{t.org}/products/{t.product}/devices"
    state = shared_api.get(f"{base}/d0/online").json()
    assert state["online"] is False and state["since"] == 0  # never seen
    # history does not change online state
    hist = message(
        MP,
        [{"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 1}}],
        isRealtimeIntegration=False,
    )
    ok(c.post_json("postMeasurepoint", hist))
    assert shared_api.get(f"{base}/d0/online").json()["online"] is False
    before = int(time.time() * 1000)
    live = message(MP, [{"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 2}}])
    ok(c.post_json("postMeasurepoint", live))
    state = shared_api.get(f"{base}/d0/online").json()
    assert state["online"] is True and state["ip"] == "127.0.0.1" and state["since"] >= before
    assert shared_api.get(f"{base}/d1/online").json()["online"] is False
    by_asset = shared_api.get(f"/api/v1/orgs/{t.org}/devices/{t.assets['d0']}/online").json()
    assert by_asset == state
    online = shared_api.get(f"/api/v1/orgs/{t.org}/online", params={"state": "online"}).json()
    assert [s["deviceKey"] for s in online["items"]] == ["d0"]
    # no real-time data for the product's inactivity timeout (1 s): offline
    wait_for(lambda: shared_api.get(f"{base}/d0/online").json()["online"] is False)
    st = shared_api.get(f"{base}/d0/online").json()
    assert st["since"] - st["lastSeen"] >= 999  # went offline when the timeout ran out
    # the state flips in memory first; its change record is written right after
    wait_for(lambda: len(shared_api.get(f"{base}/d0/online/changes").json()["items"]) >= 2)
    changes = shared_api.get(f"{base}/d0/online/changes").json()["items"]
    assert [ch["online"] for ch in changes] == [True, False]
    assert (
        shared_api.get(f"/api/v1/orgs/{t.org}/online", params={"state": "online"}).json()["items"]
        == []
    )
    offline = shared_api.get(f"/api/v1/orgs/{t.org}/online", params={"state": "offline"}).json()
    assert [s["deviceKey"] for s in offline["items"]] == ["d0"]
    assert (
        shared_api.get(f"/api/v1/orgs/{t.org}/online", params={"state": "maybe"}).status_code == 422
    )
    # back online with the next real-time data
    ok(c.post_json("postMeasurepoint", live))
    assert shared_api.get(f"{base}/d0/online").json()["online"] is True
    changes = shared_api.get(f"{base}/d0/online/changes").json()["items"]
    assert [ch["online"] for ch in changes] == [True, False, True]
    c.close()


def test_online_state_survives_restart(hub: HubProcess, api: httpx.Client) -> None:
    t = make_tenant(api, hub.url, inactivity=300)
    c = Enos(hub, t)
    live = message(MP, [{"productKey": t.product, "deviceKey": "d1", "measurepoints": {"temp": 2}}])
    ok(c.post_json("postMeasurepoint", live))
    url = f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d1/online"
    before = api.get(url).json()
    hub.restart()
    after = api.get(url).json()
    assert after["online"] is True and after["since"] == before["since"]
    changes = api.get(url + "/changes").json()["items"]
    assert [ch["online"] for ch in changes] == [True]
    c.close()
