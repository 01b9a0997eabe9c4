"""A hostile parsing script on the debug endpoint: a regular expression that backtracks
catastrophically runs in C, where the script time limit cannot stop it, until the
sandbox watchdog kills its worker. Such debug runs count strikes like production calls
(refused at once after the third), and never stall other products' decoding."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client
from tests.e2e.test_raw_scripts import DECODER, ENCODER, MODEL, raw_reply, raw_topic, sample

# /^(a+)+$/ on "aaa...a!" backtracks 2^n times: hours for the 40 bytes sent here
REDOS = """
function rawDataToJsonStr(rawData) {
  var s = String.fromCharCode.apply(null, rawData);
  return JSON.stringify({id: "1", version: "1.0", method: "integration.measurepoint.post",
                         params: [], evil: /^(a+)+$/.test(s)});
}
"""
HOSTILE_SAMPLE = (b"a" * 40 + b"!").hex()
STRIKES = 3  # scripts/worker.py MAX_STRIKES


@dataclass
class Env:
    org: str
    victim: str  # a product whose raw data keeps flowing
    username: str
    password: str


def _product(api: httpx.Client, org: str) -> str:
    r = api.post(
        f"/api/v1/orgs/{org}/products",
        json={"name": "p", "modelId": "meter", "dataFormat": "custom"},
    )
    assert r.status_code == 201, r.text
    pk = str(r.json()["productKey"])
    r = api.post(f"/api/v1/orgs/{org}/products/{pk}/devices", json=[{"deviceKey": "dev1"}])
    assert r.status_code == 201, r.text
    return pk


@pytest.fixture(scope="module")
def env(shared_api: httpx.Client) -> Env:
    api = shared_api
    org = api.post("/api/v1/orgs", json={"name": "hostile " + uuid.uuid4().hex[:6]}).json()["orgId"]
    api.post(f"/api/v1/orgs/{org}/models", json=MODEL).raise_for_status()
    victim = _product(api, org)
    r = api.put(f"/api/v1/orgs/{org}/products/{victim}/script", content=DECODER + ENCODER)
    assert r.status_code == 200, r.text
    ch = api.post(f"/api/v1/orgs/{org}/channels", json={"name": "c", "products": [victim]}).json()
    return Env(org, victim, ch["username"], ch["password"])


class Traffic:
    """The victim product's raw requests, one after another, each reply timed."""

    def __init__(self, hub: HubProcess, env: Env):
        self.client = Client(hub, env.username, env.password)
        self.client.subscribe(f"/sys/{env.victim}/integration/#")
        self.topic = raw_topic(env.victim)
        self.latencies: list[float] = []
        self.replies: list[bytes] = []
        self._stop = threading.Event()
        self.request()  # its context is built before the clock matters
        self._thread = threading.Thread(target=self._run, daemon=True)

    def request(self) -> None:
        started = time.monotonic()
        self.client.publish(self.topic, sample(1, len(self.replies) % 200))
        self.replies.append(raw_reply(self.client, self.topic, timeout=20))
        self.latencies.append(time.monotonic() - started)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.request()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


@pytest.fixture
def traffic(shared_hub: HubProcess, env: Env) -> Iterator[Traffic]:
    with Traffic(shared_hub, env) as t:
        yield t


def debug(api: httpx.Client, org: str, pk: str, source: str | None) -> tuple[dict, float]:
    body = {"hex": HOSTILE_SAMPLE, **({"source": source} if source is not None else {})}
    started = time.monotonic()
    r = api.post(f"/api/v1/orgs/{org}/products/{pk}/script/debug", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic() - started


def strike_out(api: httpx.Client, org: str, pk: str, source: str | None) -> None:
    """Debug runs until refused: each of the first STRIKES hangs (and is reported as
    such), then the script is refused without running."""
    for _ in range(STRIKES):
        out, _ = debug(api, org, pk, source)
        assert out["ok"] is False and out["kind"] == "time", out
        assert "restarted" in out["error"]
    for _ in range(3):
        out, took = debug(api, org, pk, source)
        assert out["ok"] is False and out["kind"] == "time", out
        assert out["error"].startswith("script refused"), out
        assert took < 0.5, took


def test_hostile_debug_runs_are_refused_and_do_not_stall_other_products(
    shared_api: httpx.Client, env: Env, traffic: Traffic
) -> None:
    pk = _product(shared_api, env.org)
    strike_out(shared_api, env.org, pk, REDOS)
    # the product's other scripts are debugged as usual
    out, _ = debug(shared_api, env.org, pk, DECODER)
    assert out["ok"] is True, out
    # the victim's requests kept being decoded all along, none waiting for a hung worker
    assert len(traffic.latencies) > 10
    assert max(traffic.latencies) < 1.0, sorted(traffic.latencies)[-5:]
    assert set(traffic.replies) == {bytes([1, 0, 200])}


def test_debug_of_the_current_script_counts_strikes_too(
    shared_api: httpx.Client, env: Env, traffic: Traffic
) -> None:
    pk = _product(shared_api, env.org)
    r = shared_api.put(f"/api/v1/orgs/{env.org}/products/{pk}/script", content=REDOS)
    assert r.status_code == 200, r.text  # its top level is harmless
    strike_out(shared_api, env.org, pk, None)
    assert max(traffic.latencies) < 1.0, sorted(traffic.latencies)[-5:]
