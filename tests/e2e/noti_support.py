"""Helpers for the noti push tests: a client written from Python's ``ssl`` and ``json``
only (no headrace code), provisioning through the admin API, and data producers (MQTT
with paho-mqtt, real-time HTTP with httpx)."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import HubProcess
from tests.e2e.http_support import get_token
from tests.e2e.mqtt_support import Client as MqttClient

MODEL = {
    "id": "boiler",
    "name": "Boiler",
    "attributes": [{"id": "mac", "type": "string"}, {"id": "site", "type": "string"}],
    "measurepoints": [
        {"id": "temp", "type": "double"},
        {"id": "seq", "type": "int"},
        {"id": "note", "type": "string", "maxLength": 8000},
        {"id": "remark", "type": "string", "maxLength": 8000},
        {"id": "burner_fault", "type": "bool", "flag": "fault", "name": "Burner fault"},
        {"id": "pressure_alert", "type": "int", "flag": "alert", "name": "Pressure alert"},
    ],
}

ALL_TYPES = [
    "device_online",
    "device_offline",
    "attr_fault",
    "attr_alert",
    "device_status_raw",
    "device_status_kv",
]


@dataclass
class Tenant:
    org: str
    pk: str
    assets: dict[str, str]  # deviceKey -> assetId
    username: str  # MQTT channel login
    password: str
    app_key: str  # HTTP service account
    app_secret: str


def tenant(api: httpx.Client, *, devices: int = 3, inactivity: int = 300) -> Tenant:
    r = api.post("/api/v1/orgs", json={"name": "noti " + uuid.uuid4().hex[:6]})
    assert r.status_code == 201, r.text
    org = r.json()["orgId"]
    assert api.post(f"/api/v1/orgs/{org}/models", json=MODEL).status_code == 201
    r = api.post(
        f"/api/v1/orgs/{org}/products",
        json={"name": "Boiler", "modelId": "boiler", "inactivityTimeout": inactivity},
    )
    assert r.status_code == 201, r.text
    pk = r.json()["productKey"]
    body = [{"deviceKey": f"d{i}", "group": "g1" if i == 0 else ""} for i in range(devices)]
    r = api.post(f"/api/v1/orgs/{org}/products/{pk}/devices", json=body)
    assert r.status_code == 201, r.text
    assets = {d["deviceKey"]: d["assetId"] for d in r.json()["items"]}
    r = api.post(f"/api/v1/orgs/{org}/channels", json={"name": "ch", "products": [pk]})
    assert r.status_code == 201, r.text
    ch = r.json()
    r = api.post(f"/api/v1/orgs/{org}/service-accounts", json={"name": "SCADA"})
    assert r.status_code == 201, r.text
    sa = r.json()
    return Tenant(org, pk, assets, ch["username"], ch["password"], sa["appKey"], sa["appSecret"])


def enterprise(
    api: httpx.Client, t: Tenant, types: list[str] | None = None, **extra: Any
) -> tuple[str, str]:
    body = {"name": "app", "products": [t.pk], "eventTypes": types or ALL_TYPES, **extra}
    r = api.post(f"/api/v1/orgs/{t.org}/enterprises", json=body)
    assert r.status_code == 201, r.text
    e = r.json()
    return e["enterpriseId"], e["enterpriseSecret"]


def stats(api: httpx.Client, t: Tenant, eid: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/orgs/{t.org}/enterprises/{eid}/stats")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout} s")


# -- producing data --------------------------------------------------------------------------


class Producer:
    """Publishes measurepoints over MQTT (channel login) and waits for each reply."""

    def __init__(self, hub: HubProcess, t: Tenant):
        self.t = t
        self.c = MqttClient(hub, t.username, t.password)
        assert self.c.accepted
        self.c.subscribe(f"/sys/{t.pk}/integration/#")

    def measurepoints(
        self,
        records: list[tuple[str, dict[str, Any]]],
        *,
        realtime: bool = True,
        ts: int | None = None,
    ) -> None:
        """``records``: (deviceKey, measurepoints); ``realtime`` sets isRealtimeIntegration."""
        now = int(time.time() * 1000) if ts is None else ts
        params = [
            {"deviceKey": dk, "time": now + i, "measurepoints": mp}
            for i, (dk, mp) in enumerate(records)
        ]
        self._request("integration.measurepoint.post", params, realtime)

    def attributes(self, dk: str, attrs: dict[str, Any], *, realtime: bool = True) -> None:
        self._request(
            "integration.attribute.post", [{"deviceKey": dk, "attributes": attrs}], realtime
        )

    def _request(self, method: str, params: list[dict[str, Any]], realtime: bool) -> None:
        rid = uuid.uuid4().hex[:8]
        body = {
            "id": rid,
            "version": "1.0",
            "method": method,
            "params": params,
            "isRealtimeIntegration": realtime,
        }
        kind = "measurepoint/post" if "measurepoint" in method else "attribute/post"
        reply = self.c.request(f"/sys/{self.t.pk}/integration/{kind}", json.dumps(body).encode())
        assert reply["code"] == 200, reply

    def close(self) -> None:
        self.c.close()


class HttpProducer:
    """Real-time integration over HTTP (drives online state)."""

    def __init__(self, hub: HubProcess, t: Tenant):
        self.t = t
        self.http = httpx.Client(base_url=hub.url, timeout=30)
        self.token = get_token(hub.url, t.app_key, t.app_secret)

    def measurepoints(self, dk: str, mp: dict[str, Any]) -> None:
        body = {
            "id": uuid.uuid4().hex[:8],
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": [{"productKey": self.t.pk, "deviceKey": dk, "measurepoints": mp}],
        }
        r = self.http.post(
            "/connect-service/v2.1/integration",
            params={"action": "postMeasurepoint", "orgId": self.t.org},
            content=json.dumps(body).encode(),
            headers={"apim-accesstoken": self.token, "content-type": "application/json"},
        )
        assert r.status_code == 200 and r.json()["code"] == 0, r.text

    def close(self) -> None:
        self.http.close()


# -- the noti client: ssl + json only --------------------------------------------------------


class ConnectionClosed(Exception):
    pass


class Noti:
    def __init__(self, hub: HubProcess, *, timeout: float = 10.0, rcvbuf: int | None = None):
        ctx = ssl.create_default_context(cafile=str(hub.data_dir / "tls" / "server-cert.pem"))
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", hub.noti_port))
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.timeout = timeout

    def send(self, msg: dict[str, Any] | bytes) -> None:
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
        self.sock.sendall(data)

    def login(
        self, eid: str, secret: str, prefetch: int = 5, *, check: bool = True
    ) -> dict[str, Any]:
        self.send(
            {
                "data": {  # a real client sends data before cmd
                    "enterprise_id": eid,
                    "enterprise_secret": secret,
                    "prefetch_count": prefetch,
                },
                "cmd": "enterprise_login_req",
            }
        )
        res = self.recv()
        if check:
            assert res == {
                "cmd": "enterprise_login_res",
                "data": {"result": True, "msg": "ok"},
            }, res
        return res

    def ack(self, delivery_id: int) -> None:
        self.send({"cmd": "enterprise_event_ack", "delivery_id": delivery_id})

    def ping(self) -> None:
        self.send({"cmd": "enterprise_ping"})

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message; raises ``TimeoutError`` or ``ConnectionClosed``."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError) as e:
                raise ConnectionClosed(str(e)) from None
            except TimeoutError:
                raise
            except OSError as e:
                if "timed out" in str(e):
                    raise TimeoutError from None
                raise ConnectionClosed(str(e)) from None
            if not chunk:
                raise ConnectionClosed("EOF")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))

    def pushes(self, n: int, timeout: float | None = None) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            msg = self.recv(timeout)
            assert msg["cmd"] == "enterprise_event_push", msg
            out.append(msg)
        return out

    def nothing(self, seconds: float = 0.5) -> None:
        """Assert that no message arrives within ``seconds``."""
        try:
            msg = self.recv(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {msg}")

    def closed_by_server(self, timeout: float | None = None) -> bool:
        try:
            while True:
                self.recv(timeout)
        except ConnectionClosed:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
