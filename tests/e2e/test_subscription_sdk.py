"""The data subscription service against a client nobody here wrote: the enos-subscribe
SDK from PyPI (docs/subscription.md). Measurepoints go in over MQTT (paho) and HTTP
(httpx); the SDK's DataClient/OfflineClient get them as EnOS message values."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from tests.conftest import HubProcess, from_template
from tests.e2e import http_support as hs
from tests.e2e import mqtt_support as ms
from tests.e2e.subscription_support import (
    SDKClient,
    create_job,
    gather,
    job,
    points_of,
    wait_committed,
    wait_members,
)

sub_pb2 = pytest.importorskip("enos_subscribe.proto.sub_pb2")
core = pytest.importorskip("enos_subscribe.core")

pytestmark = pytest.mark.slow


class Env:
    """An organization with a model, an HTTP tenant (service account + token) and an MQTT
    channel for the same product."""

    def __init__(self, hub: HubProcess, api: httpx.Client, devices: int = 4):
        self.hub = hub
        self.api = api
        self.t = hs.make_tenant(api, hub.url, devices=devices)
        r = api.post(
            f"/api/v1/orgs/{self.t.org}/channels",
            json={"name": "ch", "products": [self.t.product]},
        )
        assert r.status_code == 201, r.text
        self.channel = r.json()
        self.mqtt = self._mqtt()
        self.http = hs.Enos(hub, self.t)
        self.n = 0

    def _mqtt(self) -> ms.Client:
        c = ms.Client(self.hub, self.channel["username"], self.channel["password"])
        c.subscribe(f"/sys/{self.t.product}/integration/#")
        return c

    def reconnect_mqtt(self) -> None:
        self.mqtt.close()
        self.mqtt = self._mqtt()

    def close(self) -> None:
        self.mqtt.close()
        self.http.close()

    def _item(self, device: str) -> dict[str, Any]:
        self.n += 1
        return {
            "deviceKey": device,
            "time": 1_700_000_000_000 + self.n,
            "measurepoints": {"temp": float(self.n), "Power": {"value": 1.5, "quality": 0}},
        }

    def via_http(self, device: str) -> int:
        item = {"productKey": self.t.product, **self._item(device)}
        hs.ok(self.http.post_json("postMeasurepoint", hs.message(hs.MP, [item])))
        return self.n

    def via_mqtt(self, device: str, *, realtime: bool = True) -> int:
        item = self._item(device)
        body = {
            "id": uuid.uuid4().hex[:8],
            "version": "1.0",
            "method": hs.MP,
            "params": [item],
            "isRealtimeIntegration": realtime,
        }
        reply = self.mqtt.request(
            f"/sys/{self.t.product}/integration/measurepoint/post", json.dumps(body).encode()
        )
        assert reply["code"] == 200, reply
        return self.n


@pytest.fixture
def hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    # the SDK holds one lock over a pull and its answer, and its commits wait for it: a
    # short long-poll lets these tests commit after every message (interval 0)
    data = from_template(hub_template, tmp_path / "data")
    h = HubProcess(data, ["--set", "subscription.pull_wait=0.1"])
    h.start()
    yield h
    h.stop()


@pytest.fixture
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with hub.client() as c:
        yield c


@pytest.fixture
def env(hub: HubProcess, api: httpx.Client) -> Any:
    e = Env(hub, api)
    yield e
    e.close()


def temps(values: list[dict[str, Any]]) -> list[float]:
    return [points_of(v)[2]["temp"] for v in values]


def test_realtime_over_mqtt_and_http(env: Env) -> None:
    t = env.t
    sub = create_job(env.api, t.org, t.app_key, partitions=4)
    assert sub["type"] == "time-series" and sub["channel"] == "realtime"
    assert sub["retentionDays"] == 3.0
    c = SDKClient(env.hub, t.app_key, t.secret, sub["subId"])
    try:
        wait_members(env.api, t.org, sub["subId"], "DefaultConsumerGroup", 1)
        sent = [env.via_mqtt("d0"), env.via_http("d1"), env.via_mqtt("d2"), env.via_http("d0")]
        sent.append(env.via_mqtt("d3", realtime=False))  # history: not on the real-time job
        got = c.take(4)
        assert sorted(temps(got)) == [float(n) for n in sent[:4]]
        for v in got:
            asset, ts, points = points_of(v)
            assert v["orgId"] == t.org and v["modelId"] == "camera"
            assert asset in t.assets.values()
            assert points["Power"] == 1.5 and ts > 1_700_000_000_000
        # per device in order: d0's two messages come in the order they were stored
        d0 = [points_of(v)[2]["temp"] for v in got if points_of(v)[0] == t.assets["d0"]]
        assert d0 == [float(sent[0]), float(sent[3])]
        c.ask(1)
        assert c.more(2.0) == []  # the history sample went to no one here
    finally:
        c.stop()


def test_offline_channel_gets_history_only(env: Env) -> None:
    t = env.t
    sub = create_job(env.api, t.org, t.app_key, channel="offline")
    c = SDKClient(env.hub, t.app_key, t.secret, sub["subId"], cls="OfflineClient")
    try:
        wait_members(env.api, t.org, sub["subId"], "DefaultConsumerGroup", 1)
        env.via_http("d0")  # real-time: not on the offline job
        n = env.via_mqtt("d1", realtime=False)
        [v] = c.take(1)
        assert points_of(v)[2]["temp"] == float(n)
    finally:
        c.stop()


def test_filters_models_points_devices(env: Env) -> None:
    t = env.t
    sub = create_job(
        env.api,
        t.org,
        t.app_key,
        filter={"measurepoints": ["temp"], "devices": [t.assets["d1"]]},
    )
    c = SDKClient(env.hub, t.app_key, t.secret, sub["subId"])
    try:
        wait_members(env.api, t.org, sub["subId"], "DefaultConsumerGroup", 1)
        env.via_http("d0")
        n = env.via_http("d1")
        [v] = c.take(1)
        asset, _ts, points = points_of(v)
        assert asset == t.assets["d1"] and points == {"temp": float(n)}  # Power filtered out
    finally:
        c.stop()


def test_commit_then_hub_restart_redelivers_exactly_the_uncommitted(env: Env) -> None:
    t = env.t
    sub = create_job(env.api, t.org, t.app_key, partitions=4)
    sid = sub["subId"]
    c = SDKClient(env.hub, t.app_key, t.secret, sid, group="g1")
    try:
        wait_members(env.api, t.org, sid, "g1", 1)
        sent = []
        for i in range(4):
            sent.append(env.via_mqtt(f"d{i}"))
            sent.append(env.via_http(f"d{(i + 1) % 4}"))
        # 7 iterations: the 7th commits the offsets of the first 6 (the SDK commits what
        # it returned before); values 7 and 8 stay uncommitted
        first = c.take(7)
        assert len(c.commits) >= 1
        committed: dict[int, int] = {}
        for commit in c.commits:
            for topic, partition, offset in commit:
                assert topic == sid
                committed[partition] = max(committed.get(partition, -1), offset)
        wait_committed(env.api, t.org, sid, "g1", committed)
        seen = temps(first)
        assert sorted(seen) == sorted(float(n) for n in seen) and len(set(seen)) == 7
        uncommitted = sorted(set(map(float, sent)) - set(seen[:6]))
        env.hub.restart()  # the SDK reconnects by itself, to the same port
        wait_members(env.api, t.org, sid, "g1", 1)
        env.reconnect_mqtt()
        after = [env.via_http("d0"), env.via_mqtt("d1"), env.via_http("d2")]
        expected = len(uncommitted) + len(after)
        c.ask(expected + 1)  # one more than expected: must not come
        [values] = gather([c], expected, timeout=10.0, quiet=2.0)
        got = [json.loads(v) for v in values]
        assert sorted(temps(got)) == sorted(uncommitted + [float(n) for n in after])
    finally:
        c.stop()


def test_two_clients_in_one_group_share_the_messages(env: Env) -> None:
    t = env.t
    env.api.post(
        f"/api/v1/orgs/{t.org}/products/{t.product}/devices",
        json=[{"deviceKey": f"x{i}"} for i in range(12)],
    ).raise_for_status()
    sub = create_job(env.api, t.org, t.app_key, partitions=8)
    sid = sub["subId"]
    a = SDKClient(env.hub, t.app_key, t.secret, sid, group="shared")
    b = SDKClient(env.hub, t.app_key, t.secret, sid, group="shared")
    try:
        g = wait_members(env.api, t.org, sid, "shared", 2)
        parts = [set(m["partitions"]) for m in g["members"]]
        assert parts[0] and parts[1] and not parts[0] & parts[1]
        assert parts[0] | parts[1] == set(range(8))
        sent = []
        for round_ in range(5):
            for i in range(12):
                sent.append(env.via_http(f"x{i}") if round_ % 2 else env.via_mqtt(f"x{i}"))
        a.ask(len(sent))
        b.ask(len(sent))
        values_a, values_b = gather([a, b], len(sent), timeout=10.0, quiet=2.0)
        got_a = [json.loads(v) for v in values_a]
        got_b = [json.loads(v) for v in values_b]
        assert got_a and got_b  # both got a share
        assets_a = {points_of(v)[0] for v in got_a}
        assets_b = {points_of(v)[0] for v in got_b}
        assert not assets_a & assets_b  # a device belongs to one partition, so one client
        got = sorted(temps(got_a) + temps(got_b))
        assert got == [float(n) for n in sent], json.dumps(
            job(env.api, t.org, sid)["groups"]
        )  # none lost
    finally:
        a.stop()
        b.stop()


def _auth(hub: HubProcess, ak: str, secret: str, sub_id: str, sub_type: int = 0) -> Any:
    """The SDK's auth exchange, synchronously: its own sign, package builder and parser."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{hub.ports['subscription']}", timeout=10)
    try:
        req = sub_pb2.AuthReq(accessKey=ak, subId=sub_id, subType=sub_type)
        req.sign = core.sign(access_key=ak, sub_id=sub_id, secret=secret)
        ws.send(core.build_pkg(2, req.SerializeToString()), websocket.ABNF.OPCODE_BINARY)
        kind, rsp = core.pkg_parser(ws.recv())
        assert kind is sub_pb2.AuthRsp
        return rsp
    finally:
        ws.close()


def test_refusals(env: Env) -> None:
    t = env.t
    sub = create_job(env.api, t.org, t.app_key)
    sid = sub["subId"]
    ok = _auth(env.hub, t.app_key, t.secret, sid)
    assert ok.ack == 0
    wrong = _auth(env.hub, t.app_key, "not-the-secret", sid)
    assert wrong.ack != 0 and "sign" in wrong.msg
    # another organization's service account, with its own right secret
    other = hs.make_tenant(env.api, env.hub.url, devices=1)
    foreign = _auth(env.hub, other.app_key, other.secret, sid)
    assert foreign.ack != 0 and "does not exist" in foreign.msg
    # an account of this org that the job does not list
    r = env.api.post(f"/api/v1/orgs/{t.org}/service-accounts", json={"name": "other"})
    extra = r.json()
    assert _auth(env.hub, extra["appKey"], extra["appSecret"], sid).ack != 0
    # the wrong client class for the job (an offline client on a real-time job)
    mismatch = _auth(env.hub, t.app_key, t.secret, sid, sub_type=3)
    assert mismatch.ack != 0 and "subType" in mismatch.msg
    # a stopped job
    env.api.post(f"/api/v1/orgs/{t.org}/subscriptions/{sid}/stop").raise_for_status()
    assert _auth(env.hub, t.app_key, t.secret, sid).ack != 0
    # the SDK itself, wrongly signed: it logs the refusal and gets nothing
    env.api.post(f"/api/v1/orgs/{t.org}/subscriptions/{sid}/start").raise_for_status()
    c = SDKClient(env.hub, t.app_key, "wrong", sid)
    try:
        env.via_http("d0")
        c.ask(1)
        assert c.more(2.0) == []
        assert "Auth fail" in c.log()
    finally:
        c.stop()
    assert not job(env.api, t.org, sid)["groups"]


def test_jobs_api(env: Env) -> None:
    t, api = env.t, env.api
    base = f"/api/v1/orgs/{t.org}/subscriptions"
    sub = create_job(api, t.org, t.app_key, subId="sub-api-1", type="event")
    assert sub["subId"] == "sub-api-1" and sub["type"] == "event"
    assert (
        api.post(
            base, json={"name": "x", "subId": "sub-api-1", "serviceAccounts": [t.app_key]}
        ).status_code
        == 409
    )
    r = api.post(base, json={"name": "x", "serviceAccounts": ["nobody"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "serviceAccounts[0]"
    r = api.post(base, json={"name": "x", "serviceAccounts": [t.app_key], "partitions": 0})
    assert r.status_code == 422
    r = api.post(
        base,
        json={"name": "x", "serviceAccounts": [t.app_key], "type": "alert", "channel": "offline"},
    )
    assert r.status_code == 422
    other = hs.make_tenant(api, env.hub.url, devices=1)
    assert api.get(f"/api/v1/orgs/{other.org}/subscriptions/sub-api-1").status_code == 404
    r = api.patch(f"{base}/sub-api-1", json={"retentionDays": 1, "filter": {"models": ["camera"]}})
    assert r.status_code == 200 and r.json()["retentionDays"] == 1.0
    assert r.json()["filter"]["models"] == ["camera"]
    items = api.get(base).json()["items"]
    assert [j["subId"] for j in items] == ["sub-api-1"]
    assert api.delete(f"{base}/sub-api-1").status_code == 204
    assert api.get(f"{base}/sub-api-1").status_code == 404
    assert _auth(env.hub, t.app_key, t.secret, "sub-api-1", 4).ack != 0


def test_retention_drops_what_no_group_took_in_time(env: Env) -> None:
    t = env.t
    sub = create_job(env.api, t.org, t.app_key, retentionDays=2 / 86400)  # two seconds
    env.via_http("d0")  # nobody subscribed: kept for the job, then out of its retention
    time.sleep(4)  # past the retention and a pruning pass (every second)
    kept = env.via_http("d1")
    c = SDKClient(env.hub, t.app_key, t.secret, sub["subId"])
    try:
        [v] = c.take(1)
        assert points_of(v)[2]["temp"] == float(kept)
        c.ask(1)
        assert c.more(1.5) == []
    finally:
        c.stop()


def test_a_rotated_secret_ends_the_subscription(env: Env) -> None:
    t = env.t
    sub = create_job(env.api, t.org, t.app_key)
    c = SDKClient(env.hub, t.app_key, t.secret, sub["subId"])
    try:
        wait_members(env.api, t.org, sub["subId"], "DefaultConsumerGroup", 1)
        n = env.via_http("d0")
        assert temps(c.take(1)) == [float(n)]
        r = env.api.post(f"/api/v1/orgs/{t.org}/service-accounts/{t.app_key}/rotate-secret")
        assert r.status_code == 200, r.text
        wait_members(env.api, t.org, sub["subId"], "DefaultConsumerGroup", 0)
        env.via_mqtt("d1")  # (the rotation revoked the HTTP token too)
        c.ask(1)
        assert c.more(2.0) == []  # its reconnect is refused: the old secret signs no more
        assert "Auth fail" in c.log()
    finally:
        c.stop()
