"""A product's secret reset (``POST .../products/{pk}/reset-secret``): the EnOS signed
login with the old secret is refused from then on, the new one logs in."""

from __future__ import annotations

import hashlib

import httpx

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client, provision


def signed(hub: HubProcess, pk: str, secret: str) -> Client:
    ts = "1626951234567"
    text = (
        "clientId" + pk + "deviceKey" + "%channel%" + "productKey" + pk + "timestamp" + ts + secret
    )
    return Client(
        hub,
        f"%channel%&{pk}",
        hashlib.sha256(text.encode()).hexdigest(),
        client_id=f"{pk}|securemode=4,signmethod=sha256,timestamp={ts}|",
    )


def test_reset_secret_refuses_the_old_one(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    c = signed(shared_hub, env.pk, env.secret)
    assert c.accepted
    c.close()
    r = shared_api.post(f"/api/v1/orgs/{env.org}/products/{env.pk}/reset-secret")
    assert r.status_code == 200, r.text
    new = r.json()["productSecret"]
    assert new and new != env.secret
    assert (
        shared_api.get(f"/api/v1/orgs/{env.org}/products/{env.pk}").json()["productSecret"] == new
    )
    old = signed(shared_hub, env.pk, env.secret)
    assert old.rc.is_failure and str(old.rc) == "Not authorized"
    old.close()
    c = signed(shared_hub, env.pk, new)
    assert c.accepted
    c.close()
    # an unknown product is 404
    assert shared_api.post(f"/api/v1/orgs/{env.org}/products/nope/reset-secret").status_code == 404
