"""The push queue part of the SQLite store (``store.base.PushStore``).

One table holds every enterprise's queue, keyed by (enterprise, seq); the push service
assigns seqs, increasing per enterprise, and keeps the head of each queue in memory.
The push service writes appends (of many requests) and acks in one write at a time, with
its cursor on the outbound stream (the records the appends were made from); acks are
deleted as seq ranges, so a client acking in order costs one statement per write.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..base import FaultRow, QueueInfo, QueueRow, StreamRow

if TYPE_CHECKING:
    from .engine import SQLiteEngine


class PushQueueMixin:
    engine: SQLiteEngine

    async def push_write(
        self,
        rows: list[QueueRow],
        faults: list[FaultRow],
        deletes: list[tuple[str, list[tuple[int, int]]]],
        *,
        stream: list[StreamRow] | None = None,
        cursor: tuple[str, int] | None = None,
    ) -> list[int]:
        def fn(c: sqlite3.Connection) -> list[int]:
            if cursor is not None:  # how far into the stream these rows come from
                c.execute(
                    "INSERT INTO stream_cursors(name, position) VALUES (?,?) "
                    "ON CONFLICT(name) DO UPDATE SET position=excluded.position",
                    cursor,
                )
            if stream:  # fault/alert records, with the fault states they describe
                self._stream_append(c, stream)  # type: ignore[attr-defined]
            if rows:
                c.executemany(
                    "INSERT INTO push_queue(enterprise, seq, ts, doc) VALUES (?,?,?,?)", rows
                )
            if faults:
                c.executemany(
                    "INSERT OR REPLACE INTO push_fault_state(asset_id, point, value, event_id, ts) "
                    "VALUES (?,?,?,?,?)",
                    faults,
                )
            return [_delete_ranges(c, enterprise, ranges) for enterprise, ranges in deletes]

        return await self.engine.write(fn)

    async def push_read(
        self, enterprise: str, after: int, limit: int, max_bytes: int
    ) -> list[tuple[int, int, bytes]]:
        """Up to ``limit`` rows after seq ``after``, oldest first, stopping once their
        documents pass ``max_bytes`` (at least one row is returned if any exists)."""

        def fn(c: sqlite3.Connection) -> list[tuple[int, int, bytes]]:
            out: list[tuple[int, int, bytes]] = []
            size = 0
            cur = c.execute(
                "SELECT seq, ts, doc FROM push_queue WHERE enterprise=? AND seq>? "
                "ORDER BY seq LIMIT ?",
                (enterprise, after, limit),
            )
            for row in cur:
                out.append(row)
                size += len(row[2])
                if size >= max_bytes:
                    break
            cur.close()
            return out

        return await self.engine.read(fn)

    async def push_delete(self, enterprise: str, ranges: list[tuple[int, int]]) -> int:
        """Delete the rows with seq in each inclusive range; returns how many."""
        return await self.engine.write(lambda c: _delete_ranges(c, enterprise, ranges))

    async def push_expire(
        self, enterprise: str, after: int, before_ts: int | None, count: int
    ) -> int:
        """Among the rows after seq ``after``: delete those enqueued before ``before_ts``
        (ms), then the ``count`` oldest. Enqueue times grow with seq, so the first part is
        a binary search over the primary key, never a scan."""

        def first_ts(c: sqlite3.Connection, seq: int) -> tuple[int, int] | None:
            r = c.execute(
                "SELECT seq, ts FROM push_queue WHERE enterprise=? AND seq>=? ORDER BY seq LIMIT 1",
                (enterprise, seq),
            ).fetchone()
            return (r[0], r[1]) if r else None

        def fn(c: sqlite3.Connection) -> int:
            n = 0
            if before_ts is not None:
                last = c.execute(
                    "SELECT MAX(seq) FROM push_queue WHERE enterprise=?", (enterprise,)
                ).fetchone()[0]
                if last is not None and last > after:
                    # find the first row (seq > after) enqueued at or after before_ts
                    lo, hi = after + 1, last + 1  # answer in [lo, hi]; hi: none is young
                    while lo < hi:
                        mid = (lo + hi) // 2
                        row = first_ts(c, mid)
                        if row is None or row[1] >= before_ts:
                            hi = mid
                        else:
                            lo = row[0] + 1
                    if lo > after + 1:
                        n += c.execute(
                            "DELETE FROM push_queue WHERE enterprise=? AND seq>? AND seq<?",
                            (enterprise, after, lo),
                        ).rowcount
            if count > 0:
                r = c.execute(
                    "SELECT seq FROM push_queue WHERE enterprise=? AND seq>? "
                    "ORDER BY seq LIMIT 1 OFFSET ?",
                    (enterprise, after, count - 1),
                ).fetchone()
                if r is None:
                    n += c.execute(
                        "DELETE FROM push_queue WHERE enterprise=? AND seq>?", (enterprise, after)
                    ).rowcount
                else:
                    n += c.execute(
                        "DELETE FROM push_queue WHERE enterprise=? AND seq>? AND seq<=?",
                        (enterprise, after, r[0]),
                    ).rowcount
            return n

        return await self.engine.write(fn)

    async def push_clear(self, enterprise: str) -> int:
        return await self.engine.write(
            lambda c: c.execute("DELETE FROM push_queue WHERE enterprise=?", (enterprise,)).rowcount
        )

    def push_load(self) -> tuple[dict[str, QueueInfo], list[FaultRow]]:
        def fn(c: sqlite3.Connection) -> tuple[dict[str, QueueInfo], list[FaultRow]]:
            queues = {
                r[0]: QueueInfo(r[1], r[2], r[3])
                for r in c.execute(
                    "SELECT enterprise, COUNT(*), MIN(seq), MAX(seq) FROM push_queue "
                    "GROUP BY enterprise"
                )
            }
            faults = c.execute(
                "SELECT asset_id, point, value, event_id, ts FROM push_fault_state"
            ).fetchall()
            return queues, faults

        return self.engine.read_sync(fn)

    def attribute_values(self, name: str) -> list[tuple[int, Any]]:
        """(device id, stored value) of one attribute across all devices."""
        return self.engine.read_sync(
            lambda c: c.execute(
                "SELECT device, value FROM attributes WHERE name=?", (name,)
            ).fetchall()
        )


def _delete_ranges(c: sqlite3.Connection, enterprise: str, ranges: list[tuple[int, int]]) -> int:
    n = 0
    for lo, hi in ranges:
        if lo == hi:
            n += c.execute(
                "DELETE FROM push_queue WHERE enterprise=? AND seq=?", (enterprise, lo)
            ).rowcount
        else:
            n += c.execute(
                "DELETE FROM push_queue WHERE enterprise=? AND seq BETWEEN ? AND ?",
                (enterprise, lo, hi),
            ).rowcount
    return n
