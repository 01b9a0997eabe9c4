"""The outbound stream's part of the SQLite store (``store.base.StreamStore``).

``stream`` holds the records in blocks: a row is the ``n`` records of one organization
and kind that one write appended, seqs ``seq .. seq+n-1`` (the commit order), its
``doc`` the record's JSON when ``n`` is 1, else a msgpack array of the records' JSON,
deflated (zlib, level 1) from 1 KiB: the records of a write repeat their organization,
product, asset and point names, so a block of 100 measurepoint records shrinks ~30x
for ~0.5 us a record, in the writer thread without the GIL, and the commits' WAL writes
and checkpoints with it (one row per block instead of one per record: an import's write appends thousands of
records). Seqs are taken in the writer thread while the write that carries the records
runs, so they follow the order of commits; a rolled-back write leaves a gap, never a
reuse. Every read hands out records one by one, ``(seq, at, doc)``. ``store_meta``
keeps the highest seq ever pruned (key ``stream_pruned``), so that an emptied stream never restarts its seqs.
``stream_cursors`` holds the consumers' durable positions (everything up to a position
is done for that consumer).

After each commit that appended records, the writer thread calls ``stream_listener``
(set by ``stream.Stream``) with the new head and ``(seq, at, doc)`` of each record
appended, so readers wake on commits instead of polling, and consumers that follow the
head (noti) take the committed records from memory instead of reading them back.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
import time
import zlib
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import msgspec

from ..base import StreamRow
from .engine import connect

if TYPE_CHECKING:
    from .engine import SQLiteEngine

StreamListener = Callable[[int, list[tuple[int, int, bytes]]], None]
Entry = tuple[int, int, bytes]  # (seq, at, record JSON)

BLOCK_MAX = 4096
"""Most records in one row (a read after a seq inside a block decodes it whole)."""

_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(list[bytes]).decode
_COLUMNS = "seq, n, at, doc"
_COMPRESS_FROM = 1024  # a block of at least this many bytes is stored deflated
_ZLIB = b"x"  # a deflated block's first byte (a msgpack array never starts with it)
_doc_of = operator.itemgetter(2)
_org_kind = operator.itemgetter(0, 1)


def _entries(rows: list[tuple[int, int, int, bytes]], after: int) -> list[Entry]:
    """The records of rows (seq, n, at, doc) in seq order, those after ``after``."""
    out: list[Entry] = []
    for seq, n, at, doc in rows:
        if n == 1:
            if seq > after:
                out.append((seq, at, doc))
            continue
        skip = max(0, after + 1 - seq)
        if doc[:1] == _ZLIB:
            doc = zlib.decompress(doc)
        out.extend((seq + i, at, d) for i, d in enumerate(_unpack(doc)[skip:], skip))
    return out


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
        """Append records inside the current write (writer thread): one row per run of
        records of one organization and kind (at most ``BLOCK_MAX``)."""
        at = int(time.time() * 1000)
        first = seq = self._stream_next
        txn = self._stream_txn
        txn.extend(zip(range(seq, seq + len(rows)), itertools.repeat(at), map(_doc_of, rows)))
        args = []
        i = 0
        for (org, kind), group in itertools.groupby(rows, _org_kind):
            docs = list(map(_doc_of, group))
            for k in range(0, len(docs), BLOCK_MAX):
                part = docs[k : k + BLOCK_MAX] if len(docs) > BLOCK_MAX else docs
                if len(part) == 1:
                    args.append((first + i, 1, at, org, kind, part[0]))
                else:
                    block = _pack(part)
                    if len(block) >= _COMPRESS_FROM:
                        block = zlib.compress(block, 1)
                    args.append((first + i, len(part), at, org, kind, block))
                i += len(part)
        self._stream_next = seq + len(rows)
        c.executemany("INSERT INTO stream(seq, n, at, org, kind, doc) VALUES (?,?,?,?,?,?)", args)

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
        self._stream_txn = _entries(
            c.execute(
                f"SELECT {_COLUMNS} FROM stream WHERE seq > ? ORDER BY seq", (self._stream_head,)
            ).fetchall(),
            self._stream_head,
        )
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
        return await self.engine.read(lambda c: read_entries(c, after, limit, orgs))

    def stream_source(self) -> str:
        """Where another process reads the stream from (``StreamReader``)."""
        return str(self.engine.path)

    async def stream_count(self, after: int, through: int) -> int:
        """Records with seqs in (after, through]."""
        return await self.engine.read(
            lambda c: c.execute(
                "SELECT COALESCE(SUM(MIN(seq + n - 1, ?2) - MAX(seq, ?1 + 1) + 1), 0) "
                "FROM stream WHERE seq <= ?2 AND seq > ?1 - ?3 AND seq + n - 1 > ?1",
                (after, through, BLOCK_MAX),
            ).fetchone()[0]
        )

    async def stream_prune(self, through: int) -> int:
        """Delete the records up to seq ``through`` (a block holding later ones too stays
        until they are pruned: reads skip what is at or below the high-water mark, as
        they skip what is at or below their cursor); returns how many were deleted."""

        def fn(c: sqlite3.Connection) -> int:
            where = "WHERE seq <= ?1 AND seq + n - 1 <= ?1"  # a range of the key, then n
            n = c.execute(f"SELECT COALESCE(SUM(n), 0) FROM stream {where}", (through,))
            n = n.fetchone()[0]
            c.execute(f"DELETE FROM stream {where}", (through,))
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
                "SELECT MIN(seq), MAX(seq + n - 1), MIN(at), MAX(at), SUM(length(doc)) "
                "FROM stream "
                "GROUP BY at / 100 ORDER BY 1"
            ).fetchall()
            return cursors, index

        return self.engine.read_sync(fn)


def read_entries(
    c: sqlite3.Connection, after: int, limit: int, orgs: Collection[str] | None = None
) -> list[Entry]:
    """Up to ``limit`` records after ``after`` in seq order (of ``orgs`` only)."""
    where, args = "", []
    if orgs:
        where = f" AND org IN ({','.join('?' * len(orgs))})"
        args = list(orgs)
    # the block holding ``after + 1`` starts at or before it, then the blocks after
    rows = c.execute(
        f"SELECT {_COLUMNS} FROM stream WHERE seq <= ? AND seq > ?{where} "
        "ORDER BY seq DESC LIMIT 1",
        (after, after - BLOCK_MAX, *args),
    ).fetchall()
    n = sum(max(0, seq + k - 1 - after) for seq, k, _at, _doc in rows)  # records after
    if n < limit:  # rows are blocks: step until they hold ``limit`` records
        for row in c.execute(
            f"SELECT {_COLUMNS} FROM stream WHERE seq > ?{where} ORDER BY seq LIMIT ?",
            (after, *args, limit),
        ):
            rows.append(row)
            n += row[1]
            if n >= limit:
                break
    return _entries(rows, after)[:limit]


class StreamReader:
    """The stream read from another process (the rules' delivery process): its own
    read-only connection to the database at ``source`` (``stream_source()``); what a
    commit wrote is visible to the next read once the commit's listener ran."""

    def __init__(self, source: str) -> None:
        self._conn = connect(source, readonly=True)

    def read(self, after: int, limit: int, orgs: Collection[str] | None = None) -> list[Entry]:
        return read_entries(self._conn, after, limit, orgs)

    def close(self) -> None:
        self._conn.close()


def _high_water(c: sqlite3.Connection) -> int:
    top = c.execute("SELECT seq + n - 1 FROM stream ORDER BY seq DESC LIMIT 1").fetchone()
    top = top[0] if top else 0
    row = c.execute("SELECT value FROM store_meta WHERE key='stream_pruned'").fetchone()
    return max(int(top), int(row[0]) if row else 0)
