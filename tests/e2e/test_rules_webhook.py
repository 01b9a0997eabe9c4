"""Webhook sinks against a real HTTP server in the test process, and transforms that
throw or loop (dead-lettered with their error, other rules and ingest unaffected)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.client_support import wait_for
from tests.e2e.rules_support import Org, make_org, realtime

T0 = 1_700_000_000_000


class Receiver:
    """An HTTP server: answers 500 to the first ``fail`` POSTs, 400 on /reject, else 200;
    keeps every request it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        self.fail = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    if self.path == "/reject":
                        status = 400
                    elif receiver.fail > 0:
                        receiver.fail -= 1
                        status = 500
                    else:
                        status = 200
                    receiver.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                reply = b'{"error":"no such device here"}' if status == 400 else b"{}"
                self.send_response(status)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def delivered(self, path: str = "/hook") -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b, s in self.requests if p == path and s == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def rule(api: httpx.Client, org: Org, **body: Any) -> dict[str, Any]:
    r = api.post(f"/api/v1/orgs/{org.id}/rules", json={"name": "hook", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def stats(api: httpx.Client, org: Org, rid: str) -> dict[str, Any]:
    return dict(api.get(f"/api/v1/orgs/{org.id}/rules/{rid}/stats").json())


def test_webhook_500_then_200_all_batches_arrive_signed(
    hub: HubProcess, api: httpx.Client, receiver: Receiver
) -> None:
    org = make_org(hub, api)
    receiver.fail = 4
    r = rule(
        api,
        org,
        select={"kinds": ["measurepoint"]},
        sink={"type": "webhook", "url": receiver.url + "/hook", "batchSize": 5},
    )
    secret = r["sink"]["secret"]
    assert len(secret) >= 24
    assert "secret" not in api.get(f"/api/v1/orgs/{org.id}/rules/{r['ruleId']}").json()["sink"]
    http = httpx.Client(base_url=hub.url, timeout=30)
    for i in range(12):
        realtime(http, org, [{"deviceKey": "dev0", "time": T0 + i, "measurepoints": {"temp": i}}])
    http.close()
    wait_for(lambda: stats(api, org, r["ruleId"])["delivered"] == 12, what="all delivered")
    got = receiver.delivered()
    times = []
    for headers, body in got:
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-headrace-signature"], want)
        assert headers["x-headrace-rule"] == r["ruleId"]
        batch = json.loads(body)
        assert 1 <= len(batch) <= 5
        times += [rec["time"] for rec in batch]
    assert times == [T0 + i for i in range(12)]  # every record, in order, once delivered
    st = stats(api, org, r["ruleId"])
    assert st["failed"] == 4 and st["deadLettered"] == 0
    assert "500" in st["lastError"] and st["lastErrorAt"] > 0


def test_webhook_4xx_dead_letters_the_batch_with_the_response(
    hub: HubProcess, api: httpx.Client, receiver: Receiver
) -> None:
    org = make_org(hub, api)
    r = rule(
        api,
        org,
        select={"kinds": ["measurepoint"]},
        sink={"type": "webhook", "url": receiver.url + "/reject", "secret": "s3cret"},
    )
    http = httpx.Client(base_url=hub.url, timeout=30)
    realtime(http, org, [{"deviceKey": "dev1", "time": T0, "measurepoints": {"temp": 1.0}}])
    http.close()
    wait_for(lambda: stats(api, org, r["ruleId"])["deadLettered"] == 1, what="dead-lettered")
    st = stats(api, org, r["ruleId"])
    assert st["delivered"] == 0 and st["failed"] == 0 and st["lagRecords"] == 0
    dl = api.get(f"/api/v1/orgs/{org.id}/rules/{r['ruleId']}/dead-letters").json()["items"]
    assert len(dl) == 1
    assert dl[0]["response"] == {"status": 400, "body": '{"error":"no such device here"}'}
    assert dl[0]["messages"][0]["value"]["content"] == {"measurepoints": {"temp": 1.0}}
    assert "400" in dl[0]["error"]


def test_transform_throwing_or_looping_is_dead_lettered_alone(
    hub: HubProcess, api: httpx.Client, receiver: Receiver
) -> None:
    org = make_org(hub, api)
    source = """
    function transform(r) {
      var t = r.content.measurepoints.temp;
      if (t === 13) throw new Error("unlucky " + r.assetId);
      if (t === 42) { while (true) {} }
      if (t < 0) return null;                       // dropped
      if (t === 7) return [{n: 1}, {n: 2}];          // fanned out
      return {asset: r.assetId, double: t * 2};
    }
    """
    tr = rule(
        api,
        org,
        select={"kinds": ["measurepoint"]},
        transform=source,
        sink={"type": "webhook", "url": receiver.url + "/hook", "batchSize": 100},
    )
    plain = rule(
        api,
        org,
        select={"kinds": ["measurepoint"]},
        sink={"type": "webhook", "url": receiver.url + "/plain"},
    )
    http = httpx.Client(base_url=hub.url, timeout=30)
    values = [1, 13, 2, 42, -5, 7, 3]
    started = time.monotonic()
    for i, v in enumerate(values):
        realtime(http, org, [{"deviceKey": "dev0", "time": T0 + i, "measurepoints": {"temp": v}}])
    assert time.monotonic() - started < 10  # ingest answered as usual
    http.close()
    wait_for(lambda: stats(api, org, tr["ruleId"])["deadLettered"] == 2, what="dead letters")
    wait_for(lambda: stats(api, org, plain["ruleId"])["delivered"] == len(values))
    # the records after the dead-lettered ones may still be on their way
    wait_for(lambda: stats(api, org, tr["ruleId"])["delivered"] == 5)
    sent = [rec for _h, b in receiver.delivered("/hook") for rec in json.loads(b)]
    assert sent == [
        {"asset": org.assets["dev0"], "double": 2},
        {"asset": org.assets["dev0"], "double": 4},
        {"n": 1},
        {"n": 2},
        {"asset": org.assets["dev0"], "double": 6},
    ]
    plain_sent = [
        rec["content"]["measurepoints"]["temp"]
        for _h, b in receiver.delivered("/plain")
        for rec in json.loads(b)
    ]
    assert plain_sent == values
    dl = api.get(f"/api/v1/orgs/{org.id}/rules/{tr['ruleId']}/dead-letters").json()["items"]
    errors = {d["records"][0]["content"]["measurepoints"]["temp"]: d["error"] for d in dl}
    assert set(errors) == {13, 42}
    assert "unlucky" in errors[13]
    assert "time" in errors[42]


def test_transform_that_does_not_compile_is_refused(hub: HubProcess, api: httpx.Client) -> None:
    org = make_org(hub, api)
    sink = {"type": "webhook", "url": "http://127.0.0.1:9/x"}
    for source in ("function transform(r) { return r", "var x = 1;"):
        r = api.post(
            f"/api/v1/orgs/{org.id}/rules", json={"name": "bad", "transform": source, "sink": sink}
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "transform"


def test_fault_changes_and_online_records_reach_a_rule(
    hub: HubProcess, api: httpx.Client, receiver: Receiver
) -> None:
    org = make_org(hub, api)
    r = rule(
        api,
        org,
        select={"kinds": ["fault", "alert", "online"]},
        sink={"type": "webhook", "url": receiver.url + "/hook"},
    )
    http = httpx.Client(base_url=hub.url, timeout=30)
    for i, v in enumerate([False, True, True, False]):
        realtime(
            http, org, [{"deviceKey": "dev2", "time": T0 + i, "measurepoints": {"fan_fault": v}}]
        )
    http.close()
    wait_for(lambda: stats(api, org, r["ruleId"])["delivered"] == 3, what="3 records")
    recs = [rec for _h, b in receiver.delivered() for rec in json.loads(b)]
    assert [x["kind"] for x in recs] == ["online", "fault", "fault"]
    on, raised, cleared = recs
    assert on["assetId"] == org.assets["dev2"] and on["content"] == {"ip": "127.0.0.1"}
    assert raised["time"] == T0 + 1 and cleared["time"] == T0 + 3
    assert raised["content"]["point"] == "fan_fault" and raised["content"]["name"] == "Fan fault"
    assert (raised["content"]["value"], cleared["content"]["value"]) == (1, 0)
    assert raised["content"]["eventId"] == cleared["content"]["eventId"] != ""
