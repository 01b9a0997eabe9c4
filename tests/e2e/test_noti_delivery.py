"""Delivery semantics of the enterprise queues against a real hub (protocols.md C.4):
round-robin over an enterprise's connections, redelivery of unacked pushes, a client that
never reads, retention, history events, per-device order; the admin API and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.noti_support import (
    ALL_TYPES,
    Noti,
    Producer,
    Tenant,
    enterprise,
    stats,
    tenant,
    wait_for,
)

KV = ["device_status_kv"]


@pytest.fixture(scope="module")
def t(shared_api: httpx.Client) -> Tenant:
    return tenant(shared_api)


@pytest.fixture(scope="module")
def producer(shared_hub: HubProcess, t: Tenant) -> Iterator[Producer]:
    p = Producer(shared_hub, t)
    yield p
    p.close()


@pytest.fixture
def clients(shared_hub: HubProcess) -> Iterator[list[Noti]]:
    made: list[Noti] = []
    yield made
    for n in made:
        n.close()


def connect(hub: HubProcess, made: list[Noti], **kw: Any) -> Noti:
    n = Noti(hub, **kw)
    made.append(n)
    return n


def seqs(pushes: list[dict[str, Any]]) -> list[int]:
    return [p["data"]["seq"] for p in pushes]


def test_two_connections_share_the_queue_round_robin(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV)
    a, b = connect(shared_hub, clients), connect(shared_hub, clients)
    a.login(eid, secret, 100)
    b.login(eid, secret, 100)
    wait_for(lambda: stats(shared_api, t, eid)["connections"] == 2)
    producer.measurepoints([("d0", {"seq": i}) for i in range(10)])
    got_a, got_b = a.pushes(5), b.pushes(5)
    a.nothing(0.3)
    b.nothing(0.1)
    # alternating: one connection has the even seqs, the other the odd ones
    assert sorted([seqs(got_a), seqs(got_b)]) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    # each connection numbers its own deliveries from 1
    assert [p["delivery_id"] for p in got_a] == [1, 2, 3, 4, 5]
    assert [p["delivery_id"] for p in got_b] == [1, 2, 3, 4, 5]
    for n, got in ((a, got_a), (b, got_b)):
        for p in got:
            n.ack(p["delivery_id"])
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 10)


def test_unacked_pushes_go_to_the_other_connection_when_one_drops(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV)
    a = connect(shared_hub, clients)
    a.login(eid, secret, 4)
    producer.measurepoints([("d1", {"seq": i}) for i in range(6)])
    first = a.pushes(4)
    assert seqs(first) == [0, 1, 2, 3]
    a.ack(first[0]["delivery_id"])  # seq 0 done
    assert seqs(a.pushes(1)) == [4]
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 1)
    b = connect(shared_hub, clients)
    b.login(eid, secret, 10)
    assert seqs(b.pushes(1)) == [5]  # the only event not held by a
    b.nothing(0.3)
    a.close()  # drops seqs 1..4 unacked
    again = b.pushes(4)
    # back at the head of the queue, in their order, with b's next delivery ids
    assert seqs(again) == [1, 2, 3, 4]
    assert [p["delivery_id"] for p in again] == [2, 3, 4, 5]
    b.nothing(0.3)
    for d in range(1, 6):
        b.ack(d)
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 6)
    st = stats(shared_api, t, eid)
    assert st["redelivered"] == 4 and st["delivered"] == 10 and st["stored"] == 0


def test_a_client_that_never_reads_does_not_block_others(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV)
    stuck = connect(shared_hub, clients, rcvbuf=4096)
    stuck.login(eid, secret, 32767)  # then never reads again
    reader = connect(shared_hub, clients)
    reader.login(eid, secret, 50)
    note = "n" * 7000  # ~7 KiB lines
    total = 0
    received: list[int] = []
    for batch in range(30):
        producer.measurepoints([("d2", {"seq": batch * 50 + i, "note": note}) for i in range(50)])
        total += 50
        # the reader keeps receiving while the stuck client's socket is full
        while True:
            try:
                msg = reader.recv(0.05)
            except TimeoutError:
                break
            received.append(msg["data"]["seq"])
            reader.ack(msg["delivery_id"])
    while True:  # the rest, until nothing more comes
        try:
            msg = reader.recv(1.0)
        except TimeoutError:
            break
        received.append(msg["data"]["seq"])
        reader.ack(msg["delivery_id"])
    # once the reader's acks are in, what is unacked is what the stuck connection holds:
    # only what fitted in its socket and transport buffers (Linux: at most a 4 MiB send
    # buffer plus the transport's 256 KiB, i.e. ~630 of these 7 KiB pushes)
    wait_for(lambda: stats(shared_api, t, eid)["unacked"] == total - len(received), what="acks")
    st = stats(shared_api, t, eid)
    assert st["depth"] == 0 and 0 < st["unacked"] < 1000, st
    assert len(set(received)) == len(received)
    # closing it hands its pushes to the reader: every event arrives exactly once overall
    stuck.close()
    while len(received) < total:
        msg = reader.recv(10)
        received.append(msg["data"]["seq"])
        reader.ack(msg["delivery_id"])
    assert sorted(received) == list(range(total))
    wait_for(lambda: stats(shared_api, t, eid)["stored"] == 0)


def test_retention_by_time(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV, retentionSeconds=1)
    producer.measurepoints([("d0", {"seq": i}) for i in range(5)])
    wait_for(lambda: stats(shared_api, t, eid)["expired"] == 5, timeout=10)
    st = stats(shared_api, t, eid)
    assert st["depth"] == 0 and st["stored"] == 0 and st["retentionSeconds"] == 1
    n = connect(shared_hub, clients)
    n.login(eid, secret)
    n.nothing(0.5)
    producer.measurepoints([("d0", {"seq": 99})])
    (p,) = n.pushes(1)
    assert p["data"]["seq"] == 99
    # a push a connection holds does not expire while it holds it
    n.nothing(2.2)
    assert stats(shared_api, t, eid)["unacked"] == 1
    n.ack(p["delivery_id"])
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 1)


def test_retention_by_size_drops_the_oldest(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV, maxQueue=3)
    producer.measurepoints([("d0", {"seq": i}) for i in range(5)])
    producer.measurepoints([("d0", {"seq": 5})])
    wait_for(lambda: stats(shared_api, t, eid)["expired"] == 3)
    n = connect(shared_hub, clients)
    n.login(eid, secret, 10)
    assert seqs(n.pushes(3)) == [3, 4, 5]
    n.nothing(0.3)


def test_history_events_only_when_enabled(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    live_only, s1 = enterprise(shared_api, t, types=KV)
    with_history, s2 = enterprise(shared_api, t, types=KV, historyEvents=True)
    a, b = connect(shared_hub, clients), connect(shared_hub, clients)
    a.login(live_only, s1)
    b.login(with_history, s2)
    producer.measurepoints([("d1", {"seq": 1})], realtime=False)
    producer.measurepoints([("d1", {"seq": 2})], realtime=True)
    assert seqs(a.pushes(1)) == [2]
    assert seqs(b.pushes(2)) == [1, 2]
    a.nothing(0.3)


def test_per_device_order_across_requests(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV)
    n = connect(shared_hub, clients)
    n.login(eid, secret, 1000)
    for r in range(10):
        producer.measurepoints([(dk, {"seq": r * 10 + i}) for i in range(5) for dk in ("d0", "d1")])
    got = n.pushes(100)
    by_device: dict[str, list[int]] = {}
    for p in got:
        by_device.setdefault(p["did"], []).append(p["data"]["seq"])
    assert set(by_device) == {t.assets["d0"], t.assets["d1"]}
    for values in by_device.values():
        assert values == sorted(values) and len(values) == 50


def test_event_type_and_product_filters(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    faults, s1 = enterprise(shared_api, t, types=["attr_fault"])
    other = tenant(shared_api)  # an enterprise of another organization and product
    foreign, s2 = enterprise(shared_api, other, types=ALL_TYPES)
    a, b = connect(shared_hub, clients), connect(shared_hub, clients)
    a.login(faults, s1)
    b.login(foreign, s2)
    producer.measurepoints([("d2", {"seq": 1, "burner_fault": True})])
    (p,) = a.pushes(1)
    assert p["event_type"] == "attr_fault" and p["data"]["value"] == 1
    a.nothing(0.3)
    b.nothing(0.1)
    producer.measurepoints([("d2", {"seq": 2, "burner_fault": False})])
    (p2,) = a.pushes(1)
    assert p2["data"]["value"] == 0 and p2["event_id"] == p["event_id"]


def test_admin_api(shared_api: httpx.Client, t: Tenant, shared_hub: HubProcess) -> None:
    base = f"/api/v1/orgs/{t.org}/enterprises"
    body = {
        "name": "Migrated app",
        "products": [t.pk],
        "eventTypes": ["device_status_kv", "attr_fault"],
        "enterpriseId": "8fb23e6dbf06438b8200cf4588e",
        "enterpriseSecret": "c7c9e01549004b96a8612a0ed6",
        "ipAllowList": ["192.168.1.0/24", "127.0.0.1"],
    }
    r = shared_api.post(base, json=body)
    assert r.status_code == 201, r.text
    e = r.json()
    assert e["enterpriseId"] == body["enterpriseId"]
    assert e["enterpriseSecret"] == body["enterpriseSecret"]  # given credentials are kept
    assert e["ipAllowList"] == ["192.168.1.0/24", "127.0.0.1/32"]
    assert e["historyEvents"] is False and e["endpoint"].startswith("ssl://")
    eid = e["enterpriseId"]
    assert shared_api.post(base, json=body).status_code == 409
    got = shared_api.get(f"{base}/{eid}").json()
    assert "enterpriseSecret" not in got and "secretHash" not in got
    listed = shared_api.get(base).json()["items"]
    assert eid in [x["enterpriseId"] for x in listed]
    assert all("enterpriseSecret" not in x for x in listed)
    r = shared_api.patch(f"{base}/{eid}", json={"eventTypes": ["attr_alert"], "maxQueue": 10})
    assert r.status_code == 200 and r.json()["eventTypes"] == ["attr_alert"]
    assert stats(shared_api, t, eid)["maxQueue"] == 10
    # validation
    bad = [
        ({**body, "enterpriseId": None, "eventTypes": ["device_reboot"]}, "eventTypes[0]"),
        ({**body, "enterpriseId": None, "eventTypes": []}, "eventTypes"),
        ({**body, "enterpriseId": None, "products": ["nope"]}, "products[0]"),
        ({**body, "enterpriseId": None, "ipAllowList": ["300.1.1.1"]}, "ipAllowList[0]"),
        ({**body, "enterpriseId": "has space"}, "enterpriseId"),
        ({**body, "enterpriseId": None, "retentionSeconds": -1}, "retentionSeconds"),
    ]
    for b, field in bad:
        b = {k: v for k, v in b.items() if v is not None}
        r = shared_api.post(base, json=b)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert shared_api.post(base, json={**body, "extra": 1}).status_code == 422
    assert shared_api.get(f"/api/v1/orgs/{t.org}/enterprises/nope").status_code == 404
    # generated credentials
    r = shared_api.post(
        base, json={"name": "gen", "products": [t.pk], "eventTypes": ["device_online"]}
    )
    gen = r.json()
    assert len(gen["enterpriseId"]) == 32 and len(gen["enterpriseSecret"]) == 32
    # reset-secret closes connections logged in with the old secret
    n = Noti(shared_hub)
    try:
        n.login(eid, body["enterpriseSecret"])
        r = shared_api.post(f"{base}/{eid}/reset-secret")
        assert r.status_code == 200
        new_secret = r.json()["enterpriseSecret"]
        assert new_secret and new_secret != body["enterpriseSecret"]
        assert n.closed_by_server(5)
    finally:
        n.close()
    n = Noti(shared_hub)
    try:
        assert n.login(eid, body["enterpriseSecret"], check=False)["data"]["result"] is False
    finally:
        n.close()
    # narrowing the allow-list drops connections from addresses no longer allowed
    n = Noti(shared_hub)
    try:
        n.login(eid, new_secret)
        r = shared_api.patch(f"{base}/{eid}", json={"ipAllowList": ["10.0.0.0/8"]})
        assert r.status_code == 200
        assert n.closed_by_server(5)
    finally:
        n.close()
    shared_api.patch(f"{base}/{eid}", json={"ipAllowList": []}).raise_for_status()
    n = Noti(shared_hub)
    try:
        n.login(eid, new_secret)
        assert shared_api.delete(f"{base}/{eid}").status_code == 204
        assert n.closed_by_server(5)  # deleting the enterprise drops its connections
    finally:
        n.close()
    assert shared_api.get(f"{base}/{eid}").status_code == 404
    assert shared_api.get(f"{base}/{eid}/stats").status_code == 404
    # other organizations cannot see it
    assert shared_api.get(f"/api/v1/orgs/nope/enterprises/{gen['enterpriseId']}").status_code == 404


def test_stats_and_metrics(
    shared_hub: HubProcess,
    shared_api: httpx.Client,
    t: Tenant,
    producer: Producer,
    clients: list[Noti],
) -> None:
    eid, secret = enterprise(shared_api, t, types=KV)
    producer.measurepoints([("d0", {"seq": i}) for i in range(4)])
    n = connect(shared_hub, clients)
    n.login(eid, secret, 3)
    got = n.pushes(3)
    n.ack(got[0]["delivery_id"])
    n.pushes(1)
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 1)
    st = stats(shared_api, t, eid)
    assert st == {
        **st,
        "depth": 0,
        "unacked": 3,
        "stored": 3,
        "connections": 1,
        "enqueued": 4,
        "delivered": 4,
        "acked": 1,
        "expired": 0,
    }
    text = shared_api.get("/metrics").text
    assert f'headrace_push_unacked{{enterprise="{eid}"}} 3.0' in text
    assert f'headrace_push_acked_total{{enterprise="{eid}"}} 1.0' in text
    assert f'headrace_push_connections{{enterprise="{eid}"}} 1.0' in text
    assert f'headrace_push_queue_depth{{enterprise="{eid}"}} 0.0' in text
    assert "headrace_noti_logins_total" in text
    assert httpx.get(shared_hub.url + "/metrics").status_code == 401
