"""Sample retention in a running hub: a product's retentionDays, else store.retention_days,
drops older samples in the background; newer ones stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HubProcess, from_template
from tests.e2e.mqtt_support import Client, mp_request, provision

DAY = 86_400_000


@pytest.fixture
def hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(
        from_template(hub_template, tmp_path / "data"),
        extra=["--set", "store.retention_interval=0.2", "--set", "store.retention_days=2"],
    )
    h.start()
    yield h
    h.stop()


def times(api: httpx.Client, org: str, pk: str) -> list[int]:
    r = api.get(
        f"/api/v1/orgs/{org}/products/{pk}/devices/dev0/measurepoints",
        params={"points": "temp", "start": "0", "limit": "100"},
    )
    r.raise_for_status()
    return [i["time"] for i in r.json()["items"]]


def wait_for(api: httpx.Client, org: str, pk: str, want: list[int]) -> None:
    deadline = time.monotonic() + 60
    while times(api, org, pk) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert times(api, org, pk) == want


def test_product_retention_then_the_default(hub: HubProcess) -> None:
    with hub.client() as api:
        env = provision(api)
        product = f"/api/v1/orgs/{env.org}/products/{env.pk}"
        bad = api.patch(product, json={"retentionDays": -1})
        assert bad.status_code == 422 and "retentionDays" in bad.text
        assert api.patch(product, json={"retentionDays": 1}).json()["retentionDays"] == 1
        c = Client(hub, env.username, env.password)
        c.subscribe(f"/sys/{env.pk}/integration/#")
        topic = f"/sys/{env.pk}/integration/measurepoint/post"

        def post(rid: str, ages: list[float]) -> list[int]:
            now = int(time.time() * 1000)
            ts = [now - int(a * DAY) for a in ages]
            items = [{"deviceKey": "dev0", "time": t, "measurepoints": {"temp": 1.0}} for t in ts]
            assert c.request(topic, mp_request(rid, items))["code"] == 200
            return ts

        _old3, _old15, recent = post("a", [3, 1.5, 0.01])
        # the product keeps 1 day: both older samples go, the recent one stays
        wait_for(api, env.org, env.pk, [recent])
        # back to the default (store.retention_days = 2): 1.5 days old is kept now
        api.patch(product, json={"retentionDays": 0}).raise_for_status()
        _old25, old15 = post("b", [2.5, 1.5])
        wait_for(api, env.org, env.pk, [old15, recent])
        c.close()
