"""noti against hubs of their own: idle timeout, and a hub killed with SIGKILL and
restarted (nothing acked is pushed again, nothing unacked is lost)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HubProcess, from_template
from tests.e2e.noti_support import Noti, Producer, enterprise, stats, tenant, wait_for


@pytest.fixture
def quick_idle_hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(from_template(hub_template, tmp_path / "data"), ["--set", "noti.idle_timeout=1"])
    h.start()
    yield h
    h.stop()


def test_idle_connections_are_closed(quick_idle_hub: HubProcess) -> None:
    hub = quick_idle_hub
    with hub.client() as api:
        t = tenant(api)
        eid, secret = enterprise(api, t)
    silent = Noti(hub)
    pinging = Noti(hub)
    try:
        pinging.login(eid, secret)
        started = time.monotonic()
        # a client that keeps pinging stays; one that says nothing is closed
        while time.monotonic() - started < 2.5:
            pinging.ping()
            assert pinging.recv() == {"cmd": "enterprise_pong"}
            time.sleep(0.3)
        assert silent.closed_by_server(0.1)
        pinging.ping()
        assert pinging.recv() == {"cmd": "enterprise_pong"}
        # a logged-in client that stops talking is closed too
        assert pinging.closed_by_server(3)
    finally:
        silent.close()
        pinging.close()
    assert "noti connection idle; closing" in hub.log()


def test_sigkill_restart_keeps_unacked_and_drops_acked(hub: HubProcess) -> None:
    with hub.client() as api:
        t = tenant(api)
        eid, secret = enterprise(api, t, types=["device_status_kv"])
        producer = Producer(hub, t)
        producer.measurepoints([("d0", {"seq": i}) for i in range(20)])
        producer.close()
        n = Noti(hub)
        n.login(eid, secret, 20)
        got = n.pushes(20)
        assert [p["data"]["seq"] for p in got] == list(range(20))
        acked = {p["data"]["seq"] for p in got[::3]}  # 7 of them, not in a row
        for p in got[::3]:
            n.ack(p["delivery_id"])
        # an ack counts once its delete is committed (the stats say so)
        wait_for(lambda: stats(api, t, eid)["acked"] == len(acked))
        hub.kill()
        n.close()
    hub.start()
    with hub.client() as api:
        st = stats(api, t, eid)
        assert st["stored"] == 20 - len(acked) and st["depth"] == 20 - len(acked)
        n = Noti(hub)
        try:
            n.login(eid, secret, 100)
            again = n.pushes(20 - len(acked))
            n.nothing(0.5)
            values = [p["data"]["seq"] for p in again]
            assert values == sorted(set(range(20)) - acked)  # in order, each once
            assert [p["delivery_id"] for p in again] == list(range(1, len(again) + 1))
            for p in again:
                n.ack(p["delivery_id"])
            wait_for(lambda: stats(api, t, eid)["stored"] == 0)
            # the queue goes on after the restart with new events
            producer = Producer(hub, t)
            producer.measurepoints([("d1", {"seq": 100})])
            producer.close()
            (p,) = n.pushes(1)
            assert p["data"]["seq"] == 100
        finally:
            n.close()


def test_fault_event_id_survives_a_crash(hub: HubProcess) -> None:
    with hub.client() as api:
        t = tenant(api)
        eid, secret = enterprise(api, t, types=["attr_fault"])
    producer = Producer(hub, t)
    producer.measurepoints([("d1", {"burner_fault": True})])
    producer.close()
    n = Noti(hub)
    try:
        n.login(eid, secret)
        (on,) = n.pushes(1)
        n.ack(on["delivery_id"])
        with hub.client() as api:
            wait_for(lambda: stats(api, t, eid)["acked"] == 1)
    finally:
        n.close()
    hub.kill()
    hub.start()
    producer = Producer(hub, t)
    producer.measurepoints([("d1", {"burner_fault": False})])
    producer.close()
    n = Noti(hub)
    try:
        n.login(eid, secret)
        (off,) = n.pushes(1)
        assert off["data"]["value"] == 0 and off["event_id"] == on["event_id"]
        n.nothing(0.3)
    finally:
        n.close()
