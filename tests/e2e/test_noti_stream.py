"""noti as a consumer of the outbound stream: events of committed data whose queue write
never happened (a crash between the two) are queued from the stream at the next start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
            # the 5 events came from the last 5 records (the model's fault points make the
            # fan-out want every measurepoint record of the product: the fault state)
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
