"""Helpers for MQTT end-to-end tests: provisioning through the admin API and a
synchronous wrapper around paho-mqtt (an independent client implementation)."""

from __future__ import annotations

import json
import queue
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from tests.conftest import HubProcess

MODEL = {
    "id": "inverter",
    "name": "Inverter",
    "attributes": [{"id": "mac", "type": "string"}, {"id": "capacity", "type": "double"}],
    "measurepoints": [
        {"id": "Power", "type": "float", "withQuality": True},
        {"id": "temp", "type": "double"},
        {"id": "branchCurr", "type": "array", "items": "string"},
        {"id": "fan_fault", "type": "bool", "flag": "fault", "name": "Fan fault"},
        {"id": "mode", "type": "enum", "enum": {"0": "off", "1": "on"}},
    ],
    "events": [{"id": "overheat", "outputs": [{"id": "level", "type": "int"}]}],
}


@dataclass
class Provisioned:
    org: str
    pk: str
    secret: str
    other_pk: str
    channel_id: str
    username: str
    password: str
    devices: list[str]


def provision(api: httpx.Client, *, devices: int = 3, rate_limit: float = 0.0) -> Provisioned:
    org = api.post("/api/v1/orgs", json={"name": "mqtt " + uuid.uuid4().hex[:6]}).json()["orgId"]
    api.post(f"/api/v1/orgs/{org}/models", json=MODEL).raise_for_status()
    p = api.post(f"/api/v1/orgs/{org}/products", json={"name": "inv", "modelId": "inverter"}).json()
    other = api.post(
        f"/api/v1/orgs/{org}/products", json={"name": "other", "modelId": "inverter"}
    ).json()
    keys = [f"dev{i}" for i in range(devices)]
    api.post(
        f"/api/v1/orgs/{org}/products/{p['productKey']}/devices",
        json=[{"deviceKey": k} for k in keys],
    )
    api.post(
        f"/api/v1/orgs/{org}/products/{other['productKey']}/devices", json=[{"deviceKey": "dev0"}]
    )
    ch = api.post(
        f"/api/v1/orgs/{org}/channels",
        json={"name": "ch", "products": [p["productKey"]], "rateLimit": rate_limit},
    )
    ch.raise_for_status()
    c = ch.json()
    return Provisioned(
        org,
        p["productKey"],
        p["productSecret"],
        other["productKey"],
        c["channelId"],
        c["username"],
        c["password"],
        keys,
    )


def mp_request(
    rid: str, items: list[dict[str, Any]], method: str = "integration.measurepoint.post"
) -> bytes:
    return json.dumps({"id": rid, "version": "1.0", "method": method, "params": items}).encode()


class Client:
    """A blocking paho-mqtt client: connect, subscribe, publish and wait for replies."""

    def __init__(
        self,
        hub: HubProcess,
        username: str,
        password: str,
        *,
        version: int = 4,
        tls: bool = False,
        client_id: str | None = None,
        clean: bool = True,
        keepalive: int = 30,
    ):
        self.version = version
        proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        cid = client_id if client_id is not None else "t-" + uuid.uuid4().hex[:8]
        kwargs: dict[str, Any] = {"client_id": cid, "protocol": proto}
        if version != 5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.c.username_pw_set(username, password)
        if tls:
            self.c.tls_set(
                ca_certs=str(hub.data_dir / "tls" / "server-cert.pem"), cert_reqs=ssl.CERT_REQUIRED
            )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.published: queue.Queue[int] = queue.Queue()
        self.disconnected = threading.Event()
        self.c.on_message = lambda _c, _u, m: self.messages.put(m)
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(list(rcs))
        self.c.on_publish = lambda _c, _u, mid, _rc, _p: self.published.put(mid)
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        port = hub.mqtt_tls_port if tls else hub.mqtt_port
        self.c.connect("127.0.0.1", port, keepalive=keepalive)
        self.c.loop_start()
        self.rc = self.connack.get(timeout=10)

    @property
    def accepted(self) -> bool:
        return not self.rc.is_failure

    def subscribe(self, topic: str, qos: int = 1) -> list[Any]:
        self.c.subscribe(topic, qos)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos)
        info.wait_for_publish(timeout=10)

    def reply(self, timeout: float = 10) -> dict[str, Any]:
        m = self.messages.get(timeout=timeout)
        return dict(json.loads(m.payload))

    def request(self, topic: str, payload: bytes, qos: int = 1) -> dict[str, Any]:
        self.publish(topic, payload, qos)
        return self.reply()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
