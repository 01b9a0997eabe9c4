"""One rate limiter for every edge: a sender below one request per second still gets one
through every 1/rate seconds (a bucket of at least one token), over MQTT and HTTP alike."""

from __future__ import annotations

import time
import uuid

import httpx

from headrace.ingest.ratelimit import RateLimiter
from tests.conftest import HubProcess
from tests.e2e.http_support import MP, Enos, make_tenant, message, ok, refused
from tests.e2e.mqtt_support import Client, mp_request, provision


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_below_one_per_second() -> None:
    clock = Clock()
    rl = RateLimiter(0.0, clock)
    assert rl.allow("a", 0.5)
    assert not rl.allow("a", 0.5)
    clock.t += 1.9
    assert not rl.allow("a", 0.5)  # 0.95 of a token
    clock.t += 0.2
    assert rl.allow("a", 0.5)
    assert not rl.allow("a", 0.5)
    assert rl.allow("b", 0.5)  # its own bucket


def test_bucket_burst_is_one_second_and_default_applies() -> None:
    clock = Clock()
    rl = RateLimiter(3.0, clock)
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    clock.t += 1.0
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    clock.t += 100.0  # idle time never stores more than a second's worth
    assert sum(rl.allow("a") for _ in range(10)) == 3
    assert all(RateLimiter(0.0, clock).allow("x") for _ in range(1000))  # 0: no limit


def test_mqtt_channel_at_half_a_request_per_second(
    shared_hub: HubProcess, shared_api: httpx.Client
) -> None:
    env = provision(shared_api, devices=1, rate_limit=0.5)
    c = Client(shared_hub, env.username, env.password)
    try:
        t = f"/sys/{env.pk}/integration/measurepoint/post"
        c.subscribe(t + "_reply")

        def send(ts: int) -> dict[str, object]:
            rid = uuid.uuid4().hex[:8]
            r = c.request(
                t,
                mp_request(
                    rid, [{"deviceKey": "dev0", "time": ts, "measurepoints": {"temp": 1.0}}]
                ),
            )
            assert r["id"] == rid
            return r

        assert send(1)["code"] == 200
        second = send(2)
        assert second["code"] == 1274 and "rate" in str(second["message"])
        time.sleep(2.1)
        assert send(3)["code"] == 200
    finally:
        c.close()
    rows = shared_api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev0/measurepoints",
        params={"points": "temp", "start": 0, "end": 10},
    ).json()
    assert [s["time"] for s in rows["items"]] == [1, 3]  # the refused one was not stored


def test_http_account_at_half_a_request_per_second(
    shared_hub: HubProcess, shared_api: httpx.Client
) -> None:
    t = make_tenant(shared_api, shared_hub.url, devices=1, rate_limit=0.5)
    c = Enos(shared_hub, t)
    try:

        def send(ts: int) -> httpx.Response:
            item = {
                "productKey": t.product,
                "deviceKey": "d0",
                "time": ts,
                "measurepoints": {"temp": 1.0},
            }
            return c.post_json("postMeasurepoint", message(MP, [item]))

        ok(send(1))
        refused(send(2), 429, 1274)
        time.sleep(2.1)
        ok(send(3))
    finally:
        c.close()
