"""Offline message integration over MQTT, end to end, with real clients (paho-mqtt 3.1.1
and 5.0, Debian's mosquitto_pub/mosquitto_sub, raw sockets) against a real hub."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client, Provisioned, mp_request, provision

MP = "integration.measurepoint.post"


@pytest.fixture(scope="module")
def env(shared_hub: HubProcess, shared_api: httpx.Client) -> Provisioned:
    return provision(shared_api)


@pytest.fixture
def client(shared_hub: HubProcess, env: Provisioned) -> Iterator[Client]:
    c = Client(shared_hub, env.username, env.password)
    assert c.accepted
    c.subscribe(f"/sys/{env.pk}/integration/#")
    yield c
    c.close()


def topic(pk: str, kind: str = "measurepoint/post", slash: bool = True) -> str:
    return ("/" if slash else "") + f"sys/{pk}/integration/{kind}"


def samples(api: httpx.Client, env: Provisioned, device: str, **params: str) -> list[dict]:
    r = api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/{device}/measurepoints", params=params
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("tls", [False, True])
def test_measurepoints_stored_and_replied(
    shared_hub: HubProcess, shared_api: httpx.Client, env: Provisioned, version: int, tls: bool
) -> None:
    c = Client(shared_hub, env.username, env.password, version=version, tls=tls)
    assert c.accepted
    c.subscribe(topic(env.pk) + "_reply")
    t0 = 1_700_000_000_000 + version * 1000 + (100 if tls else 0)
    items = [
        {
            "deviceKey": "dev1",
            "time": t0,
            "measurepoints": {
                "Power": {"value": 1.5, "quality": 9},
                "temp": 20.25,
                "branchCurr": ["1.02", "2.02"],
                "fan_fault": 1,
            },
        },
        {"deviceKey": "dev1", "time": t0 + 1, "measurepoints": {"temp": 21}},
    ]
    reply = c.request(topic(env.pk), mp_request("r1", items))
    assert reply == {"id": "r1", "code": 200, "message": "success", "data": {}}
    c.close()
    got = samples(shared_api, env, "dev1", start=str(t0), end=str(t0 + 2))
    assert {"point": "Power", "time": t0, "value": 1.5, "quality": 9} in got
    assert {"point": "temp", "time": t0, "value": 20.25} in got
    assert {"point": "branchCurr", "time": t0, "value": ["1.02", "2.02"]} in got
    assert {"point": "fan_fault", "time": t0, "value": True} in got
    assert {"point": "temp", "time": t0 + 1, "value": 21.0} in got


@pytest.mark.parametrize(
    "kind",
    ["measurepoint/post", "attribute/post", "attributes/post", "event/post"],
)
@pytest.mark.parametrize("slash", [True, False])
def test_every_topic_spelling(
    client: Client, shared_api: httpx.Client, env: Provisioned, kind: str, slash: bool
) -> None:
    t = topic(env.pk, kind, slash)
    client.subscribe(t + "_reply")
    if kind.startswith("measurepoint"):
        body = mp_request(
            "a", [{"deviceKey": "dev2", "time": 1_600_000_000_000, "measurepoints": {"temp": 1.0}}]
        )
    elif kind.startswith("attribute"):
        body = mp_request(
            "a",
            [{"deviceKey": "dev2", "attributes": {"mac": "00:11", "capacity": 5}}],
            "integration.attribute.post",
        )
    else:
        body = mp_request(
            "a",
            [
                {
                    "deviceKey": "dev2",
                    "time": 1_600_000_000_000,
                    "events": {"overheat": {"level": 3}},
                }
            ],
            "integration.event.post",
        )
    client.publish(t, body)
    # the reply goes to the request topic exactly as received plus _reply
    m = client.messages.get(timeout=10)
    while m.topic != t + "_reply":
        m = client.messages.get(timeout=10)
    assert json.loads(m.payload)["code"] == 200
    base = f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev2"
    if kind.startswith("attribute"):
        attrs = shared_api.get(base + "/attributes").json()["attributes"]
        assert attrs["mac"]["value"] == "00:11" and attrs["capacity"]["value"] == 5.0
    elif kind.startswith("event"):
        events = shared_api.get(base + "/events").json()["items"]
        assert {"event": "overheat", "time": 1_600_000_000_000, "outputs": {"level": 3}} in events


def _codes(
    client: Client, env: Provisioned, payload: bytes, kind: str = "measurepoint/post"
) -> dict:
    return client.request(topic(env.pk, kind), payload)


def test_error_codes(client: Client, shared_api: httpx.Client, env: Provisioned) -> None:
    good = {"deviceKey": "dev0", "time": 1_650_000_000_000, "measurepoints": {"temp": 1.0}}
    # 1257: device not found; every failing item is listed, nothing of the request stored
    r = _codes(
        client,
        env,
        mp_request(
            "e1",
            [
                good,
                {"deviceKey": "ghost", "measurepoints": {"temp": 1}},
                {"deviceKey": "dev0", "measurepoints": {"temp": "hot"}},
            ],
        ),
    )
    assert r["code"] == 1257 and r["id"] == "e1"
    assert [(e["index"], e["code"]) for e in r["data"]["errors"]] == [(1, 1257), (2, 1204)]
    assert samples(shared_api, env, "dev0", start="1650000000000", end="1650000000001") == []
    # 1204: model validation (wrong type, unknown point, enum out of range)
    for bad in ({"temp": "hot"}, {"nope": 1}, {"mode": 7}, {"Power": {"value": "x", "quality": 1}}):
        r = _codes(client, env, mp_request("e2", [{"deviceKey": "dev0", "measurepoints": bad}]))
        assert r["code"] == 1204, (bad, r)
        assert r["data"]["errors"][0]["message"]
    # 1220: not JSON / wrong shape
    assert _codes(client, env, b"{not json")["code"] == 1220
    assert (
        _codes(client, env, b'{"id":"x","method":"integration.measurepoint.post","params":{}}')[
            "code"
        ]
        == 1220
    )
    # 1250: unknown method; 1260: method does not match topic
    assert _codes(client, env, mp_request("e3", [good], "integration.foo.post"))["code"] == 1250
    r = _codes(client, env, mp_request("e4", [good], "integration.event.post"))
    assert r["code"] == 1260 and r["id"] == "e4"
    # 1251: empty payload and empty params
    assert _codes(client, env, b"")["code"] == 1251
    assert _codes(client, env, mp_request("e5", []))["code"] == 1251
    # 1008: message over 512 KiB
    big = mp_request(
        "e6", [{"deviceKey": "dev0", "measurepoints": {"temp": 1.0}, "pad": "x" * 600_000}]
    )
    assert _codes(client, env, big)["code"] == 1008
    # 1009: an item for a product the channel does not cover
    r = _codes(client, env, mp_request("e7", [{**good, "productKey": env.other_pk}]))
    assert r["code"] == 1009
    # the request id is echoed exactly, type included
    r = _codes(client, env, json.dumps({"id": 42, "method": MP, "params": [good]}).encode())
    assert r["id"] == 42 and r["code"] == 200


def test_rate_limit_1274(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api, rate_limit=1)
    c = Client(shared_hub, env.username, env.password)
    c.subscribe(topic(env.pk) + "_reply")
    body = mp_request("r", [{"deviceKey": "dev0", "measurepoints": {"temp": 1.0}}])
    codes = [c.request(topic(env.pk), body)["code"] for _ in range(3)]
    c.close()
    assert codes[0] == 200 and 1274 in codes[1:]


def test_acl_subscribe_and_publish_outside_channel(
    client: Client, shared_api: httpx.Client, env: Provisioned
) -> None:
    refused = client.subscribe(f"/sys/{env.other_pk}/integration/measurepoint/post_reply")
    assert refused[0].is_failure
    assert client.subscribe("#")[0].is_failure
    assert client.subscribe("/sys/+/integration/#")[0].is_failure
    assert not client.subscribe(f"sys/{env.pk}/integration/+/post_reply")[0].is_failure
    # publishing for another product: acknowledged, refused, logged; nothing stored
    client.publish(
        topic(env.other_pk),
        mp_request("x", [{"deviceKey": "dev0", "measurepoints": {"temp": 9.0}}]),
    )
    time.sleep(0.3)
    logs = shared_api.get(
        f"/api/v1/orgs/{env.org}/channels/{env.channel_id}/logs", params={"kind": "error"}
    ).json()
    assert any(env.other_pk in rec.get("message", "") for rec in logs["items"])


def _sign(cid: str, pk: str, ts: str, secret: str, algo: str) -> str:
    content = (
        "clientId" + cid + "deviceKey" + "%channel%" + "productKey" + pk + "timestamp" + ts + secret
    )
    return hashlib.new(algo, content.encode()).hexdigest()


@pytest.mark.parametrize(
    ("signmethod", "algo", "upper", "extra"),
    [
        ("sha256", "sha256", False, ""),
        ("hmacsha256", "sha256", False, "[java-sdk]"),
        ("sha1", "sha1", True, ""),
        ("hmacsha1", "sha1", False, ""),
        ("md5", "md5", False, ""),
        ("hmacmd5", "md5", True, ""),
    ],
)
def test_enos_signed_login(
    shared_hub: HubProcess, env: Provisioned, signmethod: str, algo: str, upper: bool, extra: str
) -> None:
    ts = "1626951234567.123"
    cid = env.pk + extra
    client_id = f"{cid}|securemode=4,signmethod={signmethod},timestamp={ts}|"
    password = _sign(cid, env.pk, ts, env.secret, algo)
    c = Client(
        shared_hub,
        f"%channel%&{env.pk}",
        password.upper() if upper else password,
        client_id=client_id,
    )
    assert c.accepted
    c.subscribe(topic(env.pk) + "_reply")
    assert (
        c.request(
            topic(env.pk), mp_request("s", [{"deviceKey": "dev0", "measurepoints": {"temp": 2.0}}])
        )["code"]
        == 200
    )
    c.close()
    bad = Client(shared_hub, f"%channel%&{env.pk}", "0" * len(password), client_id=client_id)
    assert bad.rc.is_failure and str(bad.rc) == "Not authorized"  # 3.1.1 code 5
    bad.close()


def test_bad_logins_refused(shared_hub: HubProcess, env: Provisioned) -> None:
    c = Client(shared_hub, env.username, "wrong")
    assert c.rc.is_failure and str(c.rc) == "Not authorized"
    c.close()
    c5 = Client(shared_hub, "nobody", "x", version=5)
    assert c5.rc.is_failure and c5.rc.value == 0x87
    c5.close()


def test_mosquitto_clients(
    shared_hub: HubProcess, shared_api: httpx.Client, env: Provisioned
) -> None:
    t = topic(env.pk)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(shared_hub.mqtt_port),
            "-u",
            env.username,
            "-P",
            env.password,
            "-i",
            "msub-" + uuid.uuid4().hex[:6],
            "-t",
            t + "_reply",
            "-C",
            "1",
            "-W",
            "15",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    body = mp_request(
        "mq", [{"deviceKey": "dev2", "time": 1_690_000_000_000, "measurepoints": {"temp": 7.5}}]
    )
    for args in (
        ["-p", str(shared_hub.mqtt_port)],
        [
            "-p",
            str(shared_hub.mqtt_tls_port),
            "--cafile",
            str(shared_hub.data_dir / "tls/server-cert.pem"),
        ],
    ):
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                *args,
                "-u",
                env.username,
                "-P",
                env.password,
                "-q",
                "1",
                "-t",
                t,
                "-m",
                body.decode(),
            ],
            check=True,
            timeout=15,
        )
    out, _ = sub.communicate(timeout=20)
    assert json.loads(out.splitlines()[0]) == {
        "id": "mq",
        "code": 200,
        "message": "success",
        "data": {},
    }
    assert (
        samples(shared_api, env, "dev2", start="1690000000000", end="1690000000001")[0]["value"]
        == 7.5
    )


def test_qos2_and_resend_store_nothing_twice(
    client: Client, shared_api: httpx.Client, env: Provisioned
) -> None:
    t0 = 1_710_000_000_000
    body = mp_request(
        "q2",
        [
            {"deviceKey": "dev1", "time": t0 + i, "measurepoints": {"temp": float(i)}}
            for i in range(5)
        ],
    )
    assert client.request(topic(env.pk), body, qos=2)["code"] == 200
    # the reply was "lost": the client resends the same request
    assert client.request(topic(env.pk), body, qos=1)["code"] == 200
    assert client.request(topic(env.pk), body, qos=0)["code"] == 200
    got = samples(shared_api, env, "dev1", start=str(t0), end=str(t0 + 10))
    assert len(got) == 5


def test_latest_is_highest_timestamp(
    client: Client, shared_api: httpx.Client, env: Provisioned
) -> None:
    new = {"deviceKey": "dev2", "time": 1_800_000_000_000, "measurepoints": {"temp": 99.0}}
    old = {"deviceKey": "dev2", "time": 1_000_000_000_000, "measurepoints": {"temp": 1.0}}
    assert client.request(topic(env.pk), mp_request("n", [new]))["code"] == 200
    assert client.request(topic(env.pk), mp_request("o", [old]))["code"] == 200  # backfill
    latest = shared_api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev2/measurepoints/latest",
        params={"points": "temp"},
    ).json()
    assert latest["points"]["temp"] == {"time": 1_800_000_000_000, "value": 99.0}


def _raw_connect(port: int, username: str, password: str, keepalive: int) -> socket.socket:
    def s(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    body = (
        s(b"MQTT")
        + bytes([4, 0xC2])
        + keepalive.to_bytes(2, "big")
        + s(b"raw-" + uuid.uuid4().hex[:6].encode())
    )
    body += s(username.encode()) + s(password.encode())
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    return sock


def test_keepalive_expiry(shared_hub: HubProcess, env: Provisioned) -> None:
    sock = _raw_connect(shared_hub.mqtt_port, env.username, env.password, keepalive=1)
    sock.settimeout(5)
    start = time.monotonic()
    assert sock.recv(10) == b""  # closed by the server
    took = time.monotonic() - start
    assert 1.4 <= took <= 3.0, took
    sock.close()


def test_malformed_bytes_do_not_affect_others(
    client: Client, shared_hub: HubProcess, env: Provisioned
) -> None:
    for garbage in (
        b"\xff\xff\xff\xff\xff",
        b"\x10\xff\xff\xff\xff\x7f",
        b"\x30\x05ab",
        b"GET / HTTP/1.1\r\n\r\n",
    ):
        sock = socket.create_connection(("127.0.0.1", shared_hub.mqtt_port))
        sock.settimeout(5)
        sock.sendall(garbage)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        assert data in (b"",) or data[0] >> 4 == 2  # closed, or a CONNACK refusal
        sock.close()
    # a connected client sending a bad packet is closed; the others carry on
    with _raw_connect(shared_hub.mqtt_port, env.username, env.password, keepalive=30) as sock:
        sock.settimeout(5)
        sock.sendall(b"\x32\x03\x00\x01#")  # PUBLISH QoS1 with a truncated body
        assert sock.recv(10) == b""
    body = mp_request("ok", [{"deviceKey": "dev0", "measurepoints": {"temp": 3.0}}])
    assert client.request(topic(env.pk), body)["code"] == 200


def test_oversized_packet_closes_connection(
    shared_hub: HubProcess, env: Provisioned, client: Client
) -> None:
    with _raw_connect(shared_hub.mqtt_port, env.username, env.password, keepalive=30) as sock:
        sock.settimeout(5)
        # remaining length 200 MiB announced: refused from the header alone
        sock.sendall(b"\x30\x80\x80\x80\x64")
        assert sock.recv(10) == b""


def test_duplicate_client_id_takes_over(shared_hub: HubProcess, env: Provisioned) -> None:
    cid = "dup-" + uuid.uuid4().hex[:6]
    a = Client(shared_hub, env.username, env.password, client_id=cid)
    a.c.reconnect_delay_set(60, 120)
    b = Client(shared_hub, env.username, env.password, client_id=cid)
    assert a.disconnected.wait(5)
    b.subscribe(topic(env.pk) + "_reply")
    assert (
        b.request(
            topic(env.pk), mp_request("d", [{"deviceKey": "dev0", "measurepoints": {"temp": 1.0}}])
        )["code"]
        == 200
    )
    a.c.loop_stop()
    b.close()


def test_persistent_session_keeps_subscriptions(shared_hub: HubProcess, env: Provisioned) -> None:
    cid = "persist-" + uuid.uuid4().hex[:6]
    a = Client(shared_hub, env.username, env.password, client_id=cid, clean=False)
    assert a.rc.value == 0
    a.subscribe(topic(env.pk) + "_reply")
    a.close()
    b = Client(shared_hub, env.username, env.password, client_id=cid, clean=False)
    # no new SUBSCRIBE: the session remembered it
    assert (
        b.request(
            topic(env.pk), mp_request("p", [{"deviceKey": "dev0", "measurepoints": {"temp": 1.0}}])
        )["code"]
        == 200
    )
    b.close()


def test_disabling_channel_disconnects(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    c = Client(shared_hub, env.username, env.password)
    c.c.reconnect_delay_set(60, 120)
    assert c.accepted
    r = shared_api.patch(
        f"/api/v1/orgs/{env.org}/channels/{env.channel_id}", json={"enabled": False}
    )
    assert r.status_code == 200 and r.json()["enabled"] is False and "password" not in r.json()
    assert c.disconnected.wait(5)
    c.c.loop_stop()
    again = Client(shared_hub, env.username, env.password)
    assert again.rc.is_failure
    again.close()


def test_message_log_records(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    c = Client(shared_hub, env.username, env.password)
    c.subscribe(topic(env.pk) + "_reply")
    c.request(
        topic(env.pk), mp_request("l1", [{"deviceKey": "dev0", "measurepoints": {"temp": 1.0}}])
    )
    c.request(topic(env.pk), b"{oops")
    c.close()
    time.sleep(0.5)
    logs = shared_api.get(f"/api/v1/orgs/{env.org}/channels/{env.channel_id}/logs").json()["items"]
    kinds = {(r["kind"], r.get("event"), r.get("code")) for r in logs}
    assert ("connection", "connect", None) in kinds and ("connection", "disconnect", None) in kinds
    assert (
        ("payload", None, 200) in kinds
        and ("payload", None, 1220) in kinds
        and ("error", None, 1220) in kinds
    )
    payload = next(r for r in logs if r["kind"] == "payload" and r["code"] == 200)
    assert payload["requestId"] == "l1" and payload["items"] == 1 and payload["size"] > 0
    only_errors = shared_api.get(
        f"/api/v1/orgs/{env.org}/channels/{env.channel_id}/logs", params={"kind": "error"}
    ).json()["items"]
    assert only_errors and all(r["kind"] == "error" for r in only_errors)


def test_acknowledged_data_survives_sigkill(hub: HubProcess) -> None:
    with hub.client() as api:
        env = provision(api)
    c = Client(hub, env.username, env.password)
    c.subscribe(topic(env.pk) + "_reply")
    t0 = 1_720_000_000_000
    body = mp_request(
        "k",
        [
            {"deviceKey": "dev0", "time": t0 + i, "measurepoints": {"temp": float(i)}}
            for i in range(50)
        ],
    )
    assert c.request(topic(env.pk), body)["code"] == 200
    hub.kill()  # SIGKILL right after the reply
    c.c.loop_stop()
    hub.start()
    with hub.client() as api:
        assert len(samples(api, env, "dev0", start=str(t0), end=str(t0 + 100))) == 50
