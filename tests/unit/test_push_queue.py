"""EnterpriseQueue against the real SQLite store: dispatch round-robin within prefetch
windows, paused connections skipped, redelivery at the head, refills from the store when
the head in memory is small, expiry, acks deleted after their appends."""

from __future__ import annotations

import asyncio
import time

from headrace.push.queue import EnterpriseQueue, Entry, to_ranges
from headrace.store.sqlite.store import SQLiteStore


class Conn:
    """A connection as the queue sees it: a window, what it was sent, flushes."""

    def __init__(self, window: int) -> None:
        self.prefetch = window
        self.unacked: list[Entry] = []
        self.got: list[int] = []
        self.paused = False
        self.flushes = 0

    def window(self) -> int:
        return 0 if self.paused else self.prefetch - len(self.unacked)

    def send(self, entry: Entry) -> None:
        assert self.window() > 0
        self.unacked.append(entry)
        self.got.append(entry[0])

    def flush(self) -> None:
        self.flushes += 1

    def ack_all(self, q: EnterpriseQueue) -> None:
        for e in self.unacked:
            q.ack(e)
        self.unacked = []


# store: the SQLite store fixture of tests/unit/conftest.py


def queue(store: SQLiteStore, **kw: int) -> EnterpriseQueue:
    args = {
        "retention_ms": 3_600_000,
        "max_queue": 1000,
        "memory_events": 1000,
        "memory_bytes": 10**7,
    }
    args.update(kw)
    return EnterpriseQueue("e", store, **args)  # type: ignore[arg-type]


async def append(store: SQLiteStore, q: EnterpriseQueue, n: int, ts: int = 0) -> list[Entry]:
    """What the push service does for one request's events."""
    entries, _early = q.add([b'{"n":%d}' % i for i in range(n)], ts or 10**13)
    q.mark_queued(entries[-1][0])
    await store.push_write([("e", s, t, d) for s, t, d in entries], [], [])
    q.appended(entries, True)
    return entries


async def flush_acks(store: SQLiteStore, q: EnterpriseQueue) -> None:
    seqs = q.take_acks()
    if seqs:
        (n,) = await store.push_write([], [], [("e", to_ranges(seqs))])
        q.acks_done(len(seqs), n, True)


async def on_disk(store: SQLiteStore) -> list[int]:
    return [r[0] for r in await store.push_read("e", 0, 10**6, 10**9)]


async def test_round_robin_within_windows(store: SQLiteStore) -> None:
    q = queue(store)
    a, b, c = Conn(3), Conn(3), Conn(1)
    for conn in (a, b, c):
        q.attach(conn)
    await append(store, q, 10)
    assert a.got == [1, 4, 6] and b.got == [2, 5, 7] and c.got == [3]
    assert q.stats()["unacked"] == 7 and q.stats()["depth"] == 3
    b.ack_all(q)
    q.pump()
    assert b.got == [2, 5, 7, 8, 9, 10]
    await flush_acks(store, q)
    assert q.stats()["acked"] == 3
    assert await on_disk(store) == [1, 3, 4, 6, 8, 9, 10]


async def test_paused_connection_is_skipped(store: SQLiteStore) -> None:
    q = queue(store)
    slow, fast = Conn(100), Conn(2)
    q.attach(slow)
    q.attach(fast)
    slow.paused = True  # transport write buffer full
    await append(store, q, 6)
    assert slow.got == [] and fast.got == [1, 2]
    fast.ack_all(q)
    q.pump()
    assert fast.got == [1, 2, 3, 4]
    slow.paused = False
    q.pump()
    assert slow.got == [5, 6]


async def test_redelivery_goes_to_the_head_in_order(store: SQLiteStore) -> None:
    q = queue(store)
    a = Conn(3)
    q.attach(a)
    await append(store, q, 5)
    assert a.got == [1, 2, 3]
    q.ack(a.unacked.pop(1))  # 2 acked
    q.detach(a, a.unacked)  # 1 and 3 back
    b = Conn(10)
    q.attach(b)
    assert b.got == [1, 3, 4, 5]
    st = q.stats()
    assert st["redelivered"] == 2 and st["delivered"] == 7 and st["unacked"] == 4


async def test_requeue_merges_with_what_is_ready(store: SQLiteStore) -> None:
    q = queue(store)
    a, b = Conn(2), Conn(2)
    q.attach(a)
    q.attach(b)
    await append(store, q, 8)
    assert a.got == [1, 3] and b.got == [2, 4]
    q.detach(b, b.unacked)
    c = Conn(100)
    q.attach(c)
    assert c.got == [2, 4, 5, 6, 7, 8]


async def test_refill_from_the_store_with_a_small_memory(store: SQLiteStore) -> None:
    q = queue(store, memory_events=4)
    for _ in range(5):
        await append(store, q, 5)  # 25 events: only the head stays in memory
    assert len(q.ready) <= 5 and q.loaded_upto < q.committed_upto
    conn = Conn(3)
    q.attach(conn)
    for _ in range(200):
        conn.ack_all(q)
        await flush_acks(store, q)
        q.pump()
        await asyncio.sleep(0.005)
        if len(conn.got) == 25:
            break
    assert conn.got == list(range(1, 26))


async def test_queue_resumes_from_the_store_after_a_restart(store: SQLiteStore) -> None:
    q = queue(store)
    await append(store, q, 6)
    conn = Conn(2)
    q.attach(conn)
    conn.ack_all(q)
    await flush_acks(store, q)
    infos, _ = store.push_load()
    q2 = queue(store)
    q2 = EnterpriseQueue(
        "e",
        store,
        retention_ms=10**7,
        max_queue=100,
        memory_events=100,
        memory_bytes=10**7,
        info=infos["e"],
    )
    assert q2.next_seq == 7 and q2.stats()["stored"] == 4
    conn2 = Conn(10)
    q2.attach(conn2)  # triggers a refill
    for _ in range(100):
        await asyncio.sleep(0.005)
        if conn2.got:
            break
    assert conn2.got == [3, 4, 5, 6]
    more = await append(store, q2, 1)
    assert more[0][0] == 7 and conn2.got[-1] == 7


async def test_expiry_by_time_and_size(store: SQLiteStore) -> None:
    base = int(time.time() * 1000)
    q = queue(store, retention_ms=60_000, max_queue=5)
    conn = Conn(1)
    q.attach(conn)
    await append(store, q, 4, ts=base)  # seq 1 goes to the connection
    await append(store, q, 4, ts=base + 4000)
    await asyncio.sleep(0.05)
    # size: 8 stored, max 5 -> the 3 oldest that nobody holds
    assert q.stats()["expired"] == 3 and await on_disk(store) == [1, 5, 6, 7, 8]
    # time: seq 1 is over the retention but a connection holds it
    assert await q.expire(base + 60_500) == 0
    assert await q.expire(base + 64_500) == 4
    assert await on_disk(store) == [1]
    conn.ack_all(q)
    await flush_acks(store, q)
    assert q.stats()["stored"] == 0 and q.stats()["expired"] == 7


async def test_expiry_reaches_rows_only_in_the_store(store: SQLiteStore) -> None:
    q = queue(store, memory_events=2, retention_ms=1000)
    await append(store, q, 2, ts=1000)
    await append(store, q, 3, ts=1500)  # memory full: these stay in the store
    await append(store, q, 3, ts=9000)
    assert [e[0] for e in q.ready] == [1, 2]
    assert await q.expire(9500) == 5
    assert await on_disk(store) == [6, 7, 8]


async def test_acks_wait_for_their_append_to_be_queued(store: SQLiteStore) -> None:
    q = queue(store)
    conn = Conn(10)
    q.attach(conn)
    entries, early = q.add([b"{}", b"{}"], 10**13)
    assert early
    q.pump()  # pushed before its append is even queued
    assert conn.got == [1, 2]
    conn.ack_all(q)
    assert q.take_acks() == []  # held: a delete must come after the insert
    q.mark_queued(2)
    await store.push_write([("e", s, t, d) for s, t, d in entries], [], [])
    q.appended(entries, True)
    await flush_acks(store, q)
    assert q.stats()["acked"] == 2 and await on_disk(store) == []


async def test_closed_queue_stops(store: SQLiteStore) -> None:
    q = queue(store)
    conn = Conn(10)
    q.attach(conn)
    q.close()
    await append(store, q, 3)
    assert conn.got == []
    q.detach(conn, [])
    assert q.stats()["connections"] == 0
