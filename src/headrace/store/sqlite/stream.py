"""The outbound stream's part of the SQLite store (``store.base.StreamStore``).

``stream`` holds one row per record, keyed by ``seq``: the commit order. Seqs are taken
in the writer thread while the write that carries the records runs, so they follow the
order of commits; a rolled-back write leaves a gap, never a reuse. ``store_meta``
keeps the highest seq ever pruned (key ``stream_pruned``), so that an emptied stream never restarts its seqs.
``stream_cursors`` holds the consumers' durable positions (everything up to a position
is done for that consumer).

After each commit that appended records, the writer thread calls ``stream_listener``
(set by ``stream.Stream``) with the new head and ``(seq, at, doc)`` of each record
appended, so readers wake on commits instead of polling, and consumers that follow the
head (noti) take the committed records from memory instead of reading them back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..base import StreamRow

if TYPE_CHECKING:
    from .engine import SQLiteEngine

StreamListener = Callable[[int, list[tuple[int, int, bytes]]], None]


class StreamMixin:
    engine: SQLiteEngine
    stream_listener: StreamListener | None = None

    # -- writer-thread state -----------------------------------------------------------

    def _stream_open(self) -> None:
        """Load the head (after the engine started, before any write)."""
        self._stream_head = self.engine.read_sync(_high_water)
        self._stream_next = self._stream_head + 1
        self._stream_txn: list[tuple[int, int, bytes]] = []
        self.engine.on_commit.append(self._stream_committed)
        self.engine.on_rollback.append(self._stream_rolled_back)

    def _stream_append(self, c: sqlite3.Connection, rows: list[StreamRow]) -> None:
        """Append records inside the current write (writer thread)."""
        at = int(time.time() * 1000)
        seq = self._stream_next
        args = []
        txn = self._stream_txn
        for org, kind, doc in rows:
            args.append((seq, at, org, kind, doc))
            txn.append((seq, at, doc))
            seq += 1
        self._stream_next = seq
        c.executemany("INSERT INTO stream(seq, at, org, kind, doc) VALUES (?,?,?,?,?)", args)

    def _stream_committed(self) -> None:
        txn = self._stream_txn
        if not txn:
            return
        self._stream_txn = []
        self._stream_head = txn[-1][0]
        listener = self.stream_listener
        if listener is not None:
            listener(self._stream_head, txn)

    def _stream_rolled_back(self, c: sqlite3.Connection) -> None:
        # what the transaction still holds after a (partial) rollback
        self._stream_txn = [
            (r[0], r[1], r[2])
            for r in c.execute(
                "SELECT seq, at, doc FROM stream WHERE seq > ? ORDER BY seq",
                (self._stream_head,),
            )
        ]
        self._stream_next = max(_high_water(c), self._stream_head) + 1

    # -- the protocol ------------------------------------------------------------------

    def stream_head(self) -> int:
        return self._stream_head

    async def stream_append(self, rows: list[StreamRow]) -> None:
        """Records on their own (derived changes whose data is written elsewhere)."""
        if rows:
            await self.engine.write(lambda c: self._stream_append(c, rows))

    async def stream_read(
        self, after: int, limit: int, orgs: Collection[str] | None = None
    ) -> list[tuple[int, int, bytes]]:
        """Up to ``limit`` (seq, at, doc) after ``after`` in seq order, of ``orgs`` only
        when given."""

        def fn(c: sqlite3.Connection) -> list[tuple[int, int, bytes]]:
            if orgs:
                marks = ",".join("?" * len(orgs))
                return c.execute(
                    f"SELECT seq, at, doc FROM stream WHERE seq > ? AND org IN ({marks}) "
                    "ORDER BY seq LIMIT ?",
                    (after, *orgs, limit),
                ).fetchall()
            return c.execute(
                "SELECT seq, at, doc FROM stream WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()

        return await self.engine.read(fn)

    async def stream_count(self, after: int, through: int) -> int:
        return await self.engine.read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM stream WHERE seq > ? AND seq <= ?", (after, through)
            ).fetchone()[0]
        )

    async def stream_prune(self, through: int) -> int:
        """Delete the records up to seq ``through``; returns how many."""

        def fn(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM stream WHERE seq <= ?", (through,)).rowcount
            c.execute(
                "INSERT INTO store_meta(key, value) VALUES ('stream_pruned', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=MAX(value, excluded.value)",
                (through,),
            )
            return int(n)

        return await self.engine.write(fn)

    async def stream_save_cursors(self, cursors: list[tuple[str, int]]) -> None:
        await self.engine.write(
            lambda c: c.executemany(
                "INSERT INTO stream_cursors(name, position) VALUES (?,?) "
                "ON CONFLICT(name) DO UPDATE SET position=excluded.position",
                cursors,
            )
        )

    async def stream_drop_cursor(self, name: str) -> None:
        await self.engine.write(
            lambda c: c.execute("DELETE FROM stream_cursors WHERE name=?", (name,))
        )

    def stream_load(self) -> tuple[dict[str, int], list[tuple[int, int, int, int, int]]]:
        """The cursors, and the stream's time index: per 100 ms of commit time, (first
        seq, last seq, first at, last at, bytes), in seq order."""

        def fn(c: sqlite3.Connection) -> tuple[dict[str, int], list[Any]]:
            cursors = dict(c.execute("SELECT name, position FROM stream_cursors").fetchall())
            index = c.execute(
                "SELECT MIN(seq), MAX(seq), MIN(at), MAX(at), SUM(length(doc)) FROM stream "
                "GROUP BY at / 100 ORDER BY 1"
            ).fetchall()
            return cursors, index

        return self.engine.read_sync(fn)


def _high_water(c: sqlite3.Connection) -> int:
    top = c.execute("SELECT MAX(seq) FROM stream").fetchone()[0] or 0
    row = c.execute("SELECT value FROM store_meta WHERE key='stream_pruned'").fetchone()
    return max(int(top), int(row[0]) if row else 0)
