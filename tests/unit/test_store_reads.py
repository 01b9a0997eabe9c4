"""Reads never queue behind the writer (issue 11, defect 6): while the writer thread holds
a transaction open, every read the admin and query APIs make answers from what was
committed before it, without waiting for it to end, and sees the new data after it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

from headrace.store.base import DeviceRow, WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore


async def test_reads_answer_while_a_write_transaction_is_open(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.start()
    try:
        (dev,) = await store.insert_devices([DeviceRow(0, "a1", "o1", "pk", "d1", b"{}")])
        committed = WriteBatch(
            source=1,
            measurepoints=point_records([(dev, "temp", 1_000, 1.5, None)]),
            attributes=[(dev, "color", "red", 1_000)],
            events=[(dev, "ev", 1_000, b"{}")],
            log=[("ch1", 1_000, "publish", b'{"ok":1}')],
        )
        await store.write_batch(committed)

        held = threading.Event()
        release = threading.Event()
        later = WriteBatch(
            source=1,
            measurepoints=point_records([(dev, "temp", 2_000, 9.5, None)]),
            attributes=[(dev, "color", "blue", 2_000)],
            log=[("ch1", 2_000, "publish", b'{"ok":2}')],
        )
        write_later = store.batch_writer(later)

        def slow_write(c: sqlite3.Connection) -> None:
            write_later(c)  # the rows are written, the transaction is still open
            held.set()
            release.wait(30)

        writing = asyncio.ensure_future(store.engine.write(slow_write))
        assert await asyncio.to_thread(held.wait, 30)

        async def reads() -> tuple[Any, ...]:
            return await asyncio.gather(
                store.query_samples(dev, ["temp"], 0, 10_000, 100, False, None),
                store.latest(dev, ["temp"]),
                store.attributes(dev),
                store.events(dev, 0, 10_000, 100),
                store.query_log("ch1", [], 0, 10_000, 100, None),
                store.list_devices("pk", "", 100),
            )

        try:
            samples, latest, attrs, events, log, devices = await asyncio.wait_for(reads(), 20)
            assert not writing.done()  # answered while the writer was still inside
            assert [(s.ts, s.value) for s in samples] == [(1_000, 1.5)]
            assert latest["temp"].value == 1.5
            assert attrs["color"][0] == "red"
            assert len(events) == 1 and len(log) == 1 and len(devices) == 1
        finally:
            release.set()
            await writing

        samples, latest, attrs, _events, log, _devices = await reads()
        assert [(s.ts, s.value) for s in samples] == [(1_000, 1.5), (2_000, 9.5)]
        assert latest["temp"].value == 9.5 and attrs["color"][0] == "blue" and len(log) == 2
    finally:
        store.close()
