"""noti as a consumer of the outbound stream: events of committed data whose queue write
never happened (a crash between the two) are queued from the stream at the next start."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from tests.conftest import HubProcess
from tests.e2e.noti_support import Noti, Producer, enterprise, stats, tenant, wait_for


def test_queue_rows_lost_in_a_crash_are_made_again_from_the_stream(tmp_path: Path) -> None:
    # records stay in the stream for an hour after every consumer is done with them
    hub = HubProcess(tmp_path / "data", ["--set", "stream.replay_seconds=3600"])
    hub.start()
    try:
        with hub.client() as api:
            t = tenant(api)
            producer = Producer(hub, t)
            producer.measurepoints([("d0", {"seq": i}) for i in range(3)])  # no enterprise yet
            eid, secret = enterprise(api, t, types=["device_status_kv"])
            producer.measurepoints([("d1", {"seq": 10 + i}) for i in range(5)])
            producer.close()
            wait_for(lambda: stats(api, t, eid)["stored"] == 5)
        hub.stop()
        db = sqlite3.connect(hub.data_dir / "headrace.db")
        try:
            # the 5 events came from the 5 records (those before the enterprise were not
            # written: the fault state of the model's flagged points needs no stream row)
            blocks = db.execute("SELECT seq, n, kind FROM stream ORDER BY seq").fetchall()
            records = [(seq + i, k) for seq, n, k in blocks for i in range(n)][-5:]
            assert [k for _, k in records] == ["measurepoint"] * 5
            (cursor,) = db.execute(
                "SELECT position FROM stream_cursors WHERE name='noti'"
            ).fetchone()
            assert cursor == records[-1][0]
            # what a crash after the data's commit and before the queue's write leaves
            db.execute("DELETE FROM push_queue")
            db.execute(
                "UPDATE stream_cursors SET position=? WHERE name='noti'", (records[0][0] - 1,)
            )
            db.commit()
        finally:
            db.close()
        hub.start()
        n = Noti(hub)
        try:
            n.login(eid, secret, 10)
            got = n.pushes(5)
            assert [p["data"]["seq"] for p in got] == [10, 11, 12, 13, 14]
            n.nothing(0.3)
        finally:
            n.close()
        assert "noti events queued from the stream after a restart" in hub.log()
    finally:
        hub.stop()


def test_fault_state_follows_data_no_consumer_wants_without_stream_rows(tmp_path: Path) -> None:
    """A product whose model flags fault/alert points, and no consumer that wants its
    measurepoint records: the fault state follows its data (made in memory) and nothing
    is written to the stream for it; an enterprise wanting only attr_fault gets its
    events from those in-memory records too."""
    hub = HubProcess(tmp_path / "data", ["--set", "stream.replay_seconds=3600"])
    hub.start()
    try:
        with hub.client() as api:
            t = tenant(api)
            producer = Producer(hub, t)
            now = int(time.time() * 1000)
            # no enterprise yet: the fault starts, nobody is told
            producer.measurepoints([("d0", {"burner_fault": True, "temp": 1.0})], ts=now)
            eid, secret = enterprise(api, t, types=["attr_fault"])
            n = Noti(hub)
            try:
                n.login(eid, secret, 10)
                n.nothing(0.3)
                producer.measurepoints([("d0", {"burner_fault": False})], ts=now + 10)
                (cleared,) = n.pushes(1)  # the end of the fault seen with no enterprise
                assert cleared["event_type"] == "attr_fault", cleared
                assert cleared["data"]["value"] == 0 and cleared["event_id"], cleared
                producer.measurepoints([("d0", {"burner_fault": True})], ts=now + 20)
                (again,) = n.pushes(1)
                assert again["data"]["value"] == 1 and again["event_id"] != cleared["event_id"]
                n.ack(cleared["delivery_id"])
                n.ack(again["delivery_id"])
            finally:
                n.close()
            producer.close()
        hub.stop()
        db = sqlite3.connect(hub.data_dir / "headrace.db")
        try:
            # nothing in the stream (kept an hour): no consumer wanted any of it
            assert db.execute("SELECT count(*) FROM stream").fetchone()[0] == 0
            state = db.execute(
                "SELECT value, event_id FROM push_fault_state WHERE point='burner_fault'"
            ).fetchall()
            assert state == [(1, again["event_id"])]
        finally:
            db.close()
    finally:
        hub.stop()


def _metric(api: httpx.Client, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_events_acked_within_the_write_delay_are_never_written(tmp_path: Path) -> None:
    # a long write delay: acked events are never written; unacked ones are once it is
    # over, and survive a crash
    hub = HubProcess(tmp_path / "data", ["--set", "push.write_delay_ms=1500"])
    hub.start()
    try:
        with hub.client() as api:
            t = tenant(api)
            eid, secret = enterprise(api, t, types=["device_status_kv"])
            n = Noti(hub)
            n.login(eid, secret, 100)
            producer = Producer(hub, t)
            producer.measurepoints([("d0", {"seq": i}) for i in range(5)])
            got = n.pushes(5)
            for p in got:
                n.ack(p["delivery_id"])
            wait_for(lambda: stats(api, t, eid)["acked"] == 5)
            st = stats(api, t, eid)
            assert (st["stored"], st["enqueued"]) == (0, 5), st
            assert _metric(api, "headrace_push_unwritten_events_total") == 5
            db = sqlite3.connect(hub.data_dir / "headrace.db")
            try:
                assert db.execute("SELECT count(*) FROM push_queue").fetchone() == (0,)
                # not acked: written once the delay is over
                producer.measurepoints([("d1", {"seq": 10 + i}) for i in range(3)])
                more = n.pushes(3)
                assert [p["data"]["seq"] for p in more] == [10, 11, 12]
                wait_for(
                    lambda: db.execute("SELECT count(*) FROM push_queue").fetchone() == (3,),
                    what="the unacked rows written",
                )
            finally:
                db.close()
            assert _metric(api, "headrace_push_unwritten_events_total") == 5
            producer.close()
            n.close()
        hub.kill()
        hub.start()
        n = Noti(hub)
        try:
            n.login(eid, secret, 100)
            again = n.pushes(3)
            assert [p["data"]["seq"] for p in again] == [10, 11, 12]
            n.nothing(0.3)
        finally:
            n.close()
    finally:
        hub.stop()
