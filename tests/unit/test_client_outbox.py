"""Outbox without a server: durability across reopen, bound policies, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from headrace.client import Outbox, OutboxFull


def item(i: int) -> dict[str, object]:
    return {"deviceKey": "d1", "time": i, "measurepoints": {"temp": i * 0.5}}


def test_records_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as o:
        assert o.append("pk", item(1)) == 1
        assert o.extend("pk", [item(2), item(3)]) == [2, 3]
        o.append("pk", {"deviceKey": "d1", "attributes": {"mac": "x"}}, kind="attribute")
        assert len(o) == 4
    with Outbox(path) as o:
        assert len(o) == 4
        assert [(s, p, k, i["deviceKey"]) for s, p, k, i in o.peek()] == [
            (1, "pk", "measurepoint", "d1"),
            (2, "pk", "measurepoint", "d1"),
            (3, "pk", "measurepoint", "d1"),
            (4, "pk", "attribute", "d1"),
        ]
        assert o.peek()[1][3] == item(2)


def test_refuse_when_full(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_records=3) as o:
        o.extend("pk", [item(i) for i in range(3)])
        with pytest.raises(OutboxFull):
            o.append("pk", item(9))
        with pytest.raises(OutboxFull):
            o.extend("pk", [item(i) for i in range(4)])
        assert len(o) == 3
        assert [i["time"] for _, _, _, i in o.peek()] == [0, 1, 2]
        assert o.dropped == 0


def test_drop_oldest_when_full(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_records=3, when_full="drop_oldest") as o:
        o.extend("pk", [item(i) for i in range(3)])
        o.append("pk", item(3))
        o.extend("pk", [item(4), item(5)])
        assert len(o) == 3
        assert [i["time"] for _, _, _, i in o.peek()] == [3, 4, 5]
        assert o.dropped == 3
    with Outbox(path, max_records=3, when_full="drop_oldest") as o:
        assert o.dropped == 3 and len(o) == 3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(tmp_path / "a.db", max_records=0)
    with pytest.raises(ValueError):
        Outbox(tmp_path / "b.db", when_full="panic")  # type: ignore[arg-type]
    with Outbox(tmp_path / "c.db") as o, pytest.raises(ValueError):
        o.append("pk", item(1), kind="telemetry")


def test_appends_from_threads_and_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, synchronous="normal") as o:

        def work(k: int) -> None:
            for i in range(50):
                o.append("pk", item(k * 1000 + i))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        with Outbox(path, synchronous="normal") as other:
            other.extend("pk", [item(i) for i in range(100)])
        for t in threads:
            t.join()
        assert len(o) == 300
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 300
    db.close()
