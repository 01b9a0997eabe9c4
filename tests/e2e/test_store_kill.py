"""A SIGKILL while the store writes chunks: every acknowledged request is there after the
restart, and no request is there in part (appends, and rewrites merged with stored chunks)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headrace.store.sqlite.store import SQLiteStore

WRITER = r"""
import asyncio, sys
from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    settle = sys.argv[2:] == ["settle"]
    if settle:  # recent chunks settled one point per transaction, all the time
        store.SETTLE_ROWS = store.SETTLE_STEP = 1
    store.start()
    sem = asyncio.Semaphore(8)  # several requests in flight: group commits

    async def folds():
        while True:
            await store.fold()
            await asyncio.sleep(0)

    if settle:
        asyncio.create_task(folds())

    async def one(k):
        # device 1: an append of 50 new samples; device 2: all of [0, 50) rewritten, merged
        # with what is stored
        samples = [(1, "p", k * 50 + i, float(k), None) for i in range(50)]
        samples += [(2, "p", i, k, None) for i in range(50)]
        await store.write_batch(WriteBatch(measurepoints=point_records(samples)))
        print(k, flush=True)
        sem.release()

    k = 0
    tasks = set()
    while True:
        await sem.acquire()
        t = asyncio.create_task(one(k))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        k += 1

asyncio.run(main())
"""


def run_and_kill(script: list[str], acks: int) -> list[int]:
    """Run ``python -c SCRIPT ARGS...``, read the numbers it prints (what it had
    acknowledged) until ``acks`` of them (or 60 s), then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", *script],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acked: list[int] = []
    deadline = time.monotonic() + 60
    while len(acked) < acks and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return acked


@pytest.mark.parametrize("settle", [False, True], ids=["writes", "writes-and-settles"])
def test_sigkill_during_writes_loses_no_acked_request_and_leaves_none_in_part(
    tmp_path: Path, settle: bool
) -> None:
    """With ``settle``, the fold moves the recent chunks into the keyed table, a point per
    transaction, beside the writes: the kill lands in a settle step too."""
    db = tmp_path / "k.db"
    for round_ in range(3):
        acked = run_and_kill([WRITER, str(db), *(["settle"] if settle else [])], 40 + round_ * 17)
        assert len(acked) >= 40, "the writer did not get going"
        store = SQLiteStore(db)
        store.start()
        try:
            rows = asyncio.run(store.query_samples(1, ["p"], 0, 10**9, 10**6, False, None))
            by_k: dict[int, list[int]] = {}
            for r in rows:
                by_k.setdefault(r.ts // 50, []).append(r.ts)
                assert r.value == float(r.ts // 50)
            for k in acked:
                assert len(by_k.get(k, [])) == 50, f"acked request {k} lost"
            for k, ts in by_k.items():
                assert ts == list(range(k * 50, k * 50 + 50)), f"request {k} stored in part"
            rewritten = asyncio.run(store.query_samples(2, ["p"], 0, 10**9, 10**6, False, None))
            assert [r.ts for r in rewritten] == list(range(50))
            assert len({r.value for r in rewritten}) == 1  # one request's values, whole
            assert rewritten[0].value >= max(acked)
            # every sample in one table of the two, once: a step moves chunks (inserted
            # into the keyed table, deleted from the recent one) in one transaction
            stored = store.engine.read_sync(
                lambda c: c.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0]
            )
            assert stored == len(rows) + len(rewritten)
            if settle:
                assert store.engine.read_sync(
                    lambda c: c.execute("SELECT count(*) FROM chunks_sorted").fetchone()[0]
                )
        finally:
            store.close()
        # the next round's k restart at 0: move this round's device 1 data out of the way
        store = SQLiteStore(db)
        store.start()
        asyncio.run(store.prune_before(1, None, 10**12))
        store.close()


MIGRATOR = r"""
import sys
from headrace.store.sqlite.store import SQLiteStore

class Loud(SQLiteStore):
    def _migrate_step(self, c):
        n = super()._migrate_step(c)
        print(n, flush=True)  # before the step's commit: the kill lands anywhere
        return n

store = Loud(sys.argv[1])
store.MIGRATE_STEP = 7
store.start()
print("done", flush=True)
"""


def test_sigkill_during_the_migration_of_an_old_database(tmp_path: Path) -> None:
    from tests.unit.test_store_series import check_migrated, old_database

    db = tmp_path / "old.db"
    old_database(db)
    for kill_after in (5, 40, 90):
        proc = subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, str(db)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        for _ in range(kill_after):
            if proc.stdout.readline() in (b"", b"done\n"):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    store = SQLiteStore(db)
    store.start()  # goes on from the last committed step
    try:
        check_migrated(store)
    finally:
        store.close()


FOLDER = r"""
import asyncio, sys
from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    store.FOLD_STEP = 5  # many fold transactions, the kill lands inside one or between
    store.start()
    k0 = int(sys.argv[2])
    sem = asyncio.Semaphore(8)

    async def one(k):
        # one short request of two points (plain rows); every 10th a run over the last
        # ones (a chunk write taking plain rows into it)
        samples = [(1, "p", k, float(k), None), (1, "q", k, k, 1)]
        if k % 10 == 9:
            samples = [(1, p, t, float(t) if p == "p" else t, None if p == "p" else 1)
                       for t in range(k - 9, k + 1) for p in ("p", "q")]
        await store.write_batch(WriteBatch(measurepoints=point_records(samples)))
        print(k, flush=True)
        sem.release()

    async def folds():
        while True:
            await store.fold(everything=True)
            await asyncio.sleep(0)

    asyncio.create_task(folds())
    k = k0
    tasks = set()
    while True:
        await sem.acquire()
        t = asyncio.create_task(one(k))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        k += 1

asyncio.run(main())
"""


def test_sigkill_during_folds_of_plain_rows(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    k0 = 0
    for round_ in range(3):
        acked = run_and_kill([FOLDER, str(db), str(k0)], 60 + round_ * 23)
        assert len(acked) >= 60, "the writer did not get going"
        store = SQLiteStore(db)
        store.start()
        try:
            rows = asyncio.run(store.query_samples(1, ["p", "q"], 0, 10**9, 10**6, False, None))
            by_t: dict[int, dict[str, tuple[object, object]]] = {}
            for r in rows:
                by_t.setdefault(r.ts, {})[r.point] = (r.value, r.quality)
            for k in acked:
                assert k in by_t, f"acked request {k} lost"
            for t, pts in by_t.items():  # both points of a request, or none: never in part
                assert pts == {"p": (float(t), None), "q": (t, 1)}, (t, pts)
            # every sample once: a fold moves rows (chunk written, rows deleted) in one
            # transaction, so the chunks and the plain rows hold distinct times
            chunked, plain = store.engine.read_sync(
                lambda c: c.execute(
                    "SELECT (SELECT coalesce(sum(n), 0) FROM chunks), (SELECT count(*) FROM live)"
                ).fetchone()
            )
            assert chunked + plain == len(rows) and chunked > 0
            asyncio.run(store.fold(everything=True))  # what the kill left is folded whole
            assert (
                asyncio.run(store.query_samples(1, ["p", "q"], 0, 10**9, 10**6, False, None))
                == rows
            )
        finally:
            store.close()
        k0 = max(by_t) + 1
