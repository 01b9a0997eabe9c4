"""Poison requests: input the decoder or validator let through but the store could not
hold used to close the MQTT connection unanswered (a client with a persistent session
then resent it on every reconnect, forever) and answer 500 over HTTP. Every such request
now gets its error reply, and the same connection's next request is stored."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.http_support import MP, Enos, make_tenant, message, refused
from tests.e2e.mqtt_support import Client, mp_request, provision

DEEP = 100_000


def _deep_value() -> str:
    return "[" * DEEP + "1" + "]" * DEEP


POISONS = {
    "time beyond int64": '{"id":"p","version":"1.0","method":"integration.measurepoint.post",'
    '"params":[{"deviceKey":"dev0","time":9223372036854775808,"measurepoints":{"temp":1.0}}]}',
    "time beyond uint64": '{"id":"p","version":"1.0","method":"integration.measurepoint.post",'
    '"params":[{"deviceKey":"dev0","time":18446744073709551616,"measurepoints":{"temp":1.0}}]}',
    "negative time": '{"id":"p","version":"1.0","method":"integration.measurepoint.post",'
    '"params":[{"deviceKey":"dev0","time":-1,"measurepoints":{"temp":1.0}}]}',
    "value nested 100k deep": '{"id":"p","version":"1.0","method":"integration.measurepoint.post",'
    '"params":[{"deviceKey":"dev0","measurepoints":{"temp":' + _deep_value() + "}}]}",
    "params nested 100k deep": '{"id":"p","version":"1.0","method":"integration.measurepoint.post",'
    '"params":' + _deep_value() + "}",
    "id nested 100k deep": '{"id":'
    + _deep_value()
    + ',"version":"1.0","method":"integration.measurepoint.post","params":[]}',
    "double out of range": '{"id":"p","version":"1.0","method":"integration.measurepoint.post",'
    '"params":[{"deviceKey":"dev0","measurepoints":{"temp":1e400}}]}',
}


@pytest.mark.parametrize("name", list(POISONS))
def test_mqtt_poison_is_answered_and_the_connection_goes_on(
    shared_hub: HubProcess, shared_api: httpx.Client, name: str
) -> None:
    env = provision(shared_api, devices=1)
    c = Client(
        shared_hub, env.username, env.password, client_id="p-" + uuid.uuid4().hex[:6], clean=False
    )
    try:
        t = f"/sys/{env.pk}/integration/measurepoint/post"
        c.subscribe(t + "_reply")
        bad = c.request(t, POISONS[name].encode())
        assert bad["code"] == 1220, bad
        if "time" in name:
            assert "time" in bad["message"] or "time" in json.dumps(bad["data"])
        good = c.request(
            t, mp_request("ok1", [{"deviceKey": "dev0", "time": 5, "measurepoints": {"temp": 2.5}}])
        )
        assert good == {"id": "ok1", "code": 200, "message": "success", "data": {}}
        assert not c.disconnected.is_set()
    finally:
        c.close()
    rows = shared_api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev0/measurepoints",
        params={"points": "temp", "start": 0},
    ).json()["items"]
    assert [(r["time"], r["value"]) for r in rows] == [(5, 2.5)]  # nothing of the poison


@pytest.mark.parametrize("name", list(POISONS))
def test_http_poison_is_a_client_error(
    shared_hub: HubProcess, shared_api: httpx.Client, name: str
) -> None:
    t = make_tenant(shared_api, shared_hub.url, devices=1)
    c = Enos(shared_hub, t)
    try:
        body = POISONS[name].replace(
            '"deviceKey":"dev0"', f'"productKey":"{t.product}","deviceKey":"d0"'
        )
        refused(c.post_json("postMeasurepoint", body.encode()), 400, 1220)
        item = {"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 1.0}}
        assert c.post_json("postMeasurepoint", message(MP, [item])).status_code == 200
    finally:
        c.close()


def test_admin_api_deep_json_is_a_400(shared_api: httpx.Client) -> None:
    r = shared_api.post(
        "/api/v1/orgs",
        content=('{"name":' + _deep_value() + "}").encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "bad_request" and "deep" in err["message"]
    # and the API goes on
    assert shared_api.post("/api/v1/orgs", json={"name": "after the deep one"}).status_code == 201
