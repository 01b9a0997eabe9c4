"""Raw data through per-product JavaScript parsing scripts: script management API and
binary payloads published by a real client (paho-mqtt) on the up_raw topics."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client

MODEL = {
    "id": "meter",
    "measurepoints": [
        {"id": "a", "type": "int"},
        {"id": "b", "type": "double"},
        {"id": "c", "type": "int"},
        {"id": "d", "type": "int"},
        {"id": "e", "type": "int"},
    ],
}

# 20 bytes -> 5 measurepoints; byte 0 selects the device, byte 1 the request number
DECODER = """
function rawDataToJsonStr(rawData) {
  var b = rawData.map(function (x) { return x & 0xff; });
  function u32(i) { return ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]; }
  return JSON.stringify({
    id: "raw" + b[1], version: "1.0", method: "integration.measurepoint.post",
    params: [{deviceKey: "dev" + b[0], time: 1700000000000 + b[1] * 1000,
              measurepoints: {a: u32(4), b: u32(8) / 100, c: u32(12), d: b[16], e: (b[17] << 8) | b[18]}}]
  });
}
"""
ENCODER = """
function jsonStrToRawData(json) {
  var r = JSON.parse(json);
  return [r.code === 200 ? 1 : 0, (r.code >> 8) & 0xff, r.code & 0xff];
}
"""


def sample(device: int, n: int, a: int = 0x01020304) -> bytes:
    return (
        bytes([device, n, 0xFE, 0xFF])
        + a.to_bytes(4, "big")
        + (12345).to_bytes(4, "big")
        + (0xFFFFFFFF).to_bytes(4, "big")
        + bytes([200, 0x12, 0x34, 0])
    )


@dataclass
class RawEnv:
    org: str
    pk: str
    pk2: str
    json_pk: str
    username: str
    password: str


@pytest.fixture(scope="module")
def env(shared_api: httpx.Client) -> RawEnv:
    api = shared_api
    org = api.post("/api/v1/orgs", json={"name": "raw " + uuid.uuid4().hex[:6]}).json()["orgId"]
    api.post(f"/api/v1/orgs/{org}/models", json=MODEL).raise_for_status()
    pks = []
    for fmt in ("custom", "custom", "json"):
        p = api.post(
            f"/api/v1/orgs/{org}/products",
            json={"name": "m", "modelId": "meter", "dataFormat": fmt},
        ).json()
        api.post(
            f"/api/v1/orgs/{org}/products/{p['productKey']}/devices",
            json=[{"deviceKey": f"dev{i}"} for i in range(3)],
        )
        pks.append(p["productKey"])
    ch = api.post(f"/api/v1/orgs/{org}/channels", json={"name": "raw", "products": pks}).json()
    for pk in pks[:2]:
        r = api.put(f"/api/v1/orgs/{org}/products/{pk}/script", content=DECODER + ENCODER)
        assert r.status_code == 200, r.text
    return RawEnv(org, pks[0], pks[1], pks[2], ch["username"], ch["password"])


@pytest.fixture
def client(shared_hub: HubProcess, env: RawEnv) -> Iterator[Client]:
    c = Client(shared_hub, env.username, env.password)
    for pk in (env.pk, env.pk2, env.json_pk):
        c.subscribe(f"/sys/{pk}/integration/#")
    yield c
    c.close()


def raw_topic(pk: str, legacy: bool = False) -> str:
    return f"/sys/{pk}/integration/" + ("up_raw" if legacy else "model/up_raw")


def raw_reply(client: Client, topic: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        m = client.messages.get(timeout=max(0.1, deadline - time.monotonic()))
        if m.topic == topic + "_reply":
            return bytes(m.payload)


def put_script(api: httpx.Client, env: RawEnv, pk: str, source: str) -> httpx.Response:
    return api.put(f"/api/v1/orgs/{env.org}/products/{pk}/script", content=source)


def latest(api: httpx.Client, env: RawEnv, pk: str, device: str) -> dict:
    r = api.get(f"/api/v1/orgs/{env.org}/products/{pk}/devices/{device}/measurepoints/latest")
    return dict(r.json()["points"])


@pytest.mark.parametrize("legacy", [False, True])
def test_raw_decoded_stored_and_reply_encoded(
    client: Client, shared_api: httpx.Client, env: RawEnv, legacy: bool
) -> None:
    t = raw_topic(env.pk, legacy)
    client.publish(t, sample(1, 7 if legacy else 8))
    assert raw_reply(client, t) == bytes([1, 0, 200])  # jsonStrToRawData of the reply
    pts = latest(shared_api, env, env.pk, "dev1")
    assert (
        pts["a"]["value"] == 0x01020304
        and pts["b"]["value"] == 123.45
        and pts["c"]["value"] == 0xFFFFFFFF
    )
    assert pts["d"]["value"] == 200 and pts["e"]["value"] == 0x1234


def test_reply_json_without_encoder(client: Client, shared_api: httpx.Client, env: RawEnv) -> None:
    assert put_script(shared_api, env, env.pk2, DECODER).status_code == 200
    t = raw_topic(env.pk2)
    client.publish(t, sample(2, 3))
    reply = json.loads(raw_reply(client, t))
    assert reply == {"id": "raw3", "code": 200, "message": "success", "data": {}}


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ("function rawDataToJsonStr(r) { while (true) {} }", "time limit"),
        (
            "function rawDataToJsonStr(r) { var a = []; while (true) { a.push(new Array(100000).fill(1)); } }",
            "memory",
        ),
        (
            "function rawDataToJsonStr(r) { throw new Error('bad frame ' + r.length); }",
            "bad frame 20",
        ),
        ("function rawDataToJsonStr(r) { return JSON.stringify({hello: 1}); }", "method"),
        ("function rawDataToJsonStr(r) { return 42; }", ""),
    ],
)
def test_script_failures_answer_1202_and_are_logged(
    shared_hub: HubProcess, shared_api: httpx.Client, env: RawEnv, script: str, words: str
) -> None:
    # a product of its own, so the failing script cannot disturb other tests
    org = env.org
    p = shared_api.post(
        f"/api/v1/orgs/{org}/products",
        json={"name": "f", "modelId": "meter", "dataFormat": "custom"},
    ).json()
    pk = p["productKey"]
    ch = shared_api.post(
        f"/api/v1/orgs/{org}/channels", json={"name": "f", "products": [pk, env.pk]}
    ).json()
    assert put_script(shared_api, env, pk, script).status_code == 200
    c = Client(shared_hub, ch["username"], ch["password"])
    c.subscribe(f"/sys/{pk}/integration/#")
    c.subscribe(f"/sys/{env.pk}/integration/#")
    started = time.monotonic()
    c.publish(raw_topic(pk), sample(0, 1))
    # another product's request behind it is decoded too (replies come in request order)
    c.publish(raw_topic(env.pk), sample(0, 9))
    replies = {}
    while len(replies) < 2:
        m = c.messages.get(timeout=10)
        replies[m.topic] = bytes(m.payload)
    assert time.monotonic() - started < 5
    c.close()
    assert replies[raw_topic(env.pk) + "_reply"] == bytes([1, 0, 200])
    reply = json.loads(replies[raw_topic(pk) + "_reply"])
    assert reply["code"] == 1202 and reply["id"] == "unknown"
    assert words.lower() in reply["message"].lower()
    logs = shared_api.get(
        f"/api/v1/orgs/{org}/channels/{ch['channelId']}/logs", params={"kind": "error"}
    ).json()
    assert any(
        r.get("code") == 1202 and words.lower() in r["message"].lower() for r in logs["items"]
    )


def test_json_product_refuses_raw(client: Client, env: RawEnv) -> None:
    t = raw_topic(env.json_pk)
    client.publish(t, sample(0, 1))
    reply = json.loads(raw_reply(client, t))
    assert reply["code"] == 1202 and "custom" in reply["message"]


def test_script_management_and_rollback(shared_api: httpx.Client, env: RawEnv) -> None:
    api = shared_api
    base = f"/api/v1/orgs/{env.org}/products/{env.pk}/script"
    r = put_script(api, env, env.pk, "function rawDataToJsonStr(r) {\n  return 'x' +;\n}")
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "script_failed" and err["line"] == 2 and err["column"]
    r = put_script(api, env, env.pk, "function other() {}")
    assert r.status_code == 422 and "rawDataToJsonStr" in r.json()["error"]["message"]
    before = api.get(base).json()
    assert before["source"] == DECODER + ENCODER  # refused saves changed nothing
    v2 = put_script(api, env, env.pk, DECODER.replace("b[16]", "b[16] + 1") + ENCODER).json()
    assert v2["version"] == before["version"] + 1
    assert [v["version"] for v in v2["versions"]][-2:] == [before["version"], v2["version"]]
    r = api.post(base + "/debug", json={"hex": sample(0, 1).hex()})
    assert r.json()["ok"] is True and r.json()["output"]["params"][0]["measurepoints"]["d"] == 201
    assert r.json()["durationMs"] >= 0
    assert r.json()["reply"] == {"id": "raw1", "code": 200, "message": "success", "data": {}}
    # output the hub would refuse is not "ok": the debug run says what the reply would be
    poison = DECODER.replace("time: 1700000000000 + b[1] * 1000", "time: Math.pow(2, 63)")
    r = api.post(base + "/debug", json={"hex": sample(0, 1).hex(), "source": poison})
    assert r.status_code == 200 and r.json()["ok"] is False, r.text
    assert r.json()["reply"]["code"] == 1220 and "time" in r.json()["error"]
    back = api.post(base + "/rollback", json={"version": before["version"]}).json()
    assert back["version"] == before["version"]
    import base64

    r = api.post(base + "/debug", json={"base64": base64.b64encode(sample(0, 1)).decode()})
    assert r.json()["output"]["params"][0]["measurepoints"]["d"] == 200
    r = api.post(
        base + "/debug",
        json={"hex": "00", "source": "function rawDataToJsonStr(r) { throw new Error('nope'); }"},
    )
    assert r.status_code == 200 and r.json()["ok"] is False and "nope" in r.json()["error"]
    assert api.post(base + "/debug", json={"hex": "zz"}).status_code == 422
    assert api.post(base + "/rollback", json={"version": 999}).status_code == 404


def test_script_replaced_while_traffic_flows(
    client: Client, shared_api: httpx.Client, env: RawEnv
) -> None:
    t = raw_topic(env.pk)
    codes: list[bytes] = []
    stop = threading.Event()

    def pump() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            client.publish(t, sample(2, n % 250), qos=1)
            codes.append(raw_reply(client, t))
            n += 1

    th = threading.Thread(target=pump)
    th.start()
    time.sleep(0.3)
    assert (
        put_script(
            shared_api, env, env.pk, DECODER.replace("b[16]", "b[16] + 1000") + ENCODER
        ).status_code
        == 200
    )
    time.sleep(0.3)
    stop.set()
    th.join(30)
    assert codes and all(c == bytes([1, 0, 200]) for c in codes)
    assert latest(shared_api, env, env.pk, "dev2")["d"]["value"] == 1200
    # restore for other tests
    assert put_script(shared_api, env, env.pk, DECODER + ENCODER).status_code == 200


def test_messages_in_flight_together_keep_their_own_results(
    shared_hub: HubProcess, shared_api: httpx.Client, env: RawEnv
) -> None:
    """Raw messages that arrive together are decoded in batches (one sandbox round trip
    for many); a failing message among good ones fails alone, every reply is its own
    and they come back in request order."""
    p = shared_api.post(
        f"/api/v1/orgs/{env.org}/products",
        json={"name": "batch", "modelId": "meter", "dataFormat": "custom"},
    ).json()
    pk = p["productKey"]
    shared_api.post(
        f"/api/v1/orgs/{env.org}/products/{pk}/devices",
        json=[{"deviceKey": f"dev{i}"} for i in range(3)],
    ).raise_for_status()
    failing = DECODER.replace(
        "var b = rawData.map(function (x) { return x & 0xff; });",
        "var b = rawData.map(function (x) { return x & 0xff; });"
        " if (b[1] % 5 === 3) throw new Error('refused frame ' + b[1]);",
    )
    assert put_script(shared_api, env, pk, failing + ENCODER).status_code == 200
    ch = shared_api.post(
        f"/api/v1/orgs/{env.org}/channels", json={"name": "batch", "products": [pk]}
    ).json()
    c = Client(shared_hub, ch["username"], ch["password"])
    c.subscribe(f"/sys/{pk}/integration/#")
    count = 60
    for n in range(count):  # no waiting for acks: all in flight at once
        c.c.publish(raw_topic(pk), sample(n % 3, n), 1)
    replies = [raw_reply(c, raw_topic(pk)) for _ in range(count)]
    c.close()
    for n, reply in enumerate(replies):
        if n % 5 == 3:
            body = json.loads(reply)
            assert body["code"] == 1202 and f"refused frame {n}" in body["message"], (n, body)
        else:
            assert reply == bytes([1, 0, 200]), (n, reply)
    stored = shared_api.get(
        f"/api/v1/orgs/{env.org}/products/{pk}/devices/dev1/measurepoints",
        params={"points": "a", "start": 0, "end": 2**62, "limit": 1000},
    )
    assert stored.status_code == 200, stored.text
    times = {s["time"] for s in stored.json()["items"]}
    assert times == {1700000000000 + n * 1000 for n in range(count) if n % 3 == 1 and n % 5 != 3}
