"""``Outbox``: a durable local buffer for a system whose link to headrace may be down.

Records (one integration item each: measurepoint, attribute or event) are appended to a
SQLite file and committed before ``append`` returns, so they survive a crash or a kill of
the process. ``drain(client)`` / ``run(client)`` send them in batches of consecutive
records of the same product and kind, and delete a batch only after headrace replied
200, which it does only after storing it durably. A crash between the reply and the
delete resends that batch on the next run: harmless, since headrace stores samples
idempotently on (device, point, time).

Bound: at most ``max_records`` records are kept. When the outbox is full,
``when_full="refuse"`` (the default) makes ``append`` raise ``OutboxFull`` and keeps
everything already buffered; ``when_full="drop_oldest"`` deletes the oldest records to
make room and counts them in ``dropped``. Choose ``refuse`` when losing old data is
worse than refusing new data (the caller can slow down or keep its own copy), and
``drop_oldest`` for a device that must keep collecting whatever happens.

Records that headrace refuses for good (unknown device, model validation, no permission)
are moved to a ``rejected`` table with the reply code and message, so one bad record
never blocks the rest; ``rejected()`` lists them. Rate-limited batches (1274) are
retried after a pause; a batch over the message size limit (1008) is split.

Several processes may share one outbox file (SQLite WAL): e.g. a collector that only
appends and a sender that runs ``run(client)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from .connection import IntegrationClient, post_method
from .errors import (
    HeadraceClientError,
    IntegrationReplyError,
    OutboxFull,
    RateLimited,
    SubscribeRefused,
)

_encode = msgspec.json.Encoder().encode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    code INTEGER NOT NULL,
    message TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('count', 0), ('dropped', 0);
CREATE TRIGGER IF NOT EXISTS records_ins AFTER INSERT ON records
BEGIN UPDATE meta SET value = value + 1 WHERE key = 'count'; END;
CREATE TRIGGER IF NOT EXISTS records_del AFTER DELETE ON records
BEGIN UPDATE meta SET value = value - 1 WHERE key = 'count'; END;
"""

WhenFull = Literal["refuse", "drop_oldest"]


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    seq: int
    product_key: str
    kind: str
    item: dict[str, Any]
    code: int
    message: str
    created: float
    rejected_at: float


@dataclass(slots=True)
class _Batch:
    product: str
    kind: str
    seqs: list[int]
    bodies: list[bytes]


class Outbox:
    """A durable, bounded buffer of integration items in a SQLite file at ``path``.

    ``max_records``: the bound; ``when_full``: ``"refuse"`` (``append`` raises
    ``OutboxFull``) or ``"drop_oldest"``. ``synchronous``: SQLite's ``full`` (each append
    survives power loss) or ``normal`` (survives a process crash; faster).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_records: int = 1_000_000,
        when_full: WhenFull = "refuse",
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if when_full not in ("refuse", "drop_oldest"):
            raise ValueError("when_full must be 'refuse' or 'drop_oldest'")
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        self.path = Path(path)
        self.max_records = max_records
        self.when_full = when_full
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)  # idempotent: IF NOT EXISTS / OR IGNORE
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.sent = 0  # records stored by headrace through this object

    # -- appending ---------------------------------------------------------------------

    def append(
        self, product_key: str, item: Mapping[str, Any], *, kind: str = "measurepoint"
    ) -> int:
        """Buffer one item durably; returns its sequence number."""
        seqs = self.extend(product_key, [item], kind=kind)
        return seqs[0]

    def extend(
        self, product_key: str, items: Iterable[Mapping[str, Any]], *, kind: str = "measurepoint"
    ) -> list[int]:
        """Buffer several items in one transaction (all or none); returns their sequence
        numbers. Much faster than one ``append`` per item with ``synchronous="full"``."""
        post_method(kind)  # ValueError for a kind that cannot be posted
        bodies = [_encode(item) for item in items]
        if not bodies:
            return []
        if len(bodies) > self.max_records:
            raise OutboxFull(f"{len(bodies)} records exceed the bound of {self.max_records}")
        now = time.time()
        with self._lock, self._tx():
            count = self._count()
            room = self.max_records - count
            if room < len(bodies):
                if self.when_full == "refuse":
                    raise OutboxFull(f"outbox full: {count} of {self.max_records} records buffered")
                excess = len(bodies) - room
                self._db.execute(
                    "DELETE FROM records WHERE seq IN "
                    "(SELECT seq FROM records ORDER BY seq LIMIT ?)",
                    (excess,),
                )
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,)
                )
            self._db.executemany(
                "INSERT INTO records (product, kind, body, created) VALUES (?, ?, ?, ?)",
                [(product_key, kind, body, now) for body in bodies],
            )
            # one write transaction: AUTOINCREMENT gave them consecutive numbers
            last = self._db.execute("SELECT max(seq) FROM records").fetchone()[0]
        seqs = list(range(last - len(bodies) + 1, last + 1))
        self._wake()
        return seqs

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    @property
    def dropped(self) -> int:
        """Records deleted unsent by the ``drop_oldest`` policy (ever, in this file)."""
        with self._lock:
            return int(
                self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
            )

    def peek(self, limit: int = 100) -> list[tuple[int, str, str, dict[str, Any]]]:
        """The oldest buffered records as ``(seq, product_key, kind, item)``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, product, kind, body FROM records ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(s, p, k, msgspec.json.decode(b)) for s, p, k, b in rows]

    def rejected(self, limit: int = 1000) -> list[RejectedRecord]:
        """Records headrace refused for good, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, product, kind, body, code, message, created, rejected_at "
                "FROM rejected ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            RejectedRecord(s, p, k, msgspec.json.decode(b), c, m, cr, ra)
            for s, p, k, b, c, m, cr, ra in rows
        ]

    def clear_rejected(self) -> int:
        with self._lock, self._tx():
            return self._db.execute("DELETE FROM rejected").rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------

    async def drain(self, client: IntegrationClient, *, batch: int = 100, inflight: int = 4) -> int:
        """Send everything buffered (and whatever is appended meanwhile) until the outbox
        is empty; returns the number of records headrace stored. Errors of the link
        (``ConnectionLost``, ``ClientClosed``, ``RequestTimeout``) propagate; what was
        not acknowledged stays buffered."""
        if batch < 1 or inflight < 1:
            raise ValueError("batch and inflight must be at least 1")
        stored = 0
        after = 0  # highest seq handed to a sender in this drain
        tasks: set[asyncio.Task[int]] = set()
        try:
            while True:
                while len(tasks) < inflight:
                    b = self._take(after, batch)
                    if b is None:
                        break
                    after = b.seqs[-1]
                    tasks.add(asyncio.ensure_future(self._send(client, b)))
                if not tasks:
                    return stored
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    tasks.discard(t)
                    stored += t.result()
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def run(
        self,
        client: IntegrationClient,
        *,
        batch: int = 100,
        inflight: int = 4,
        poll: float = 1.0,
    ) -> None:
        """Send forever: drain, then wait for an ``append`` of this object (or ``poll``
        seconds, for records appended by another process). Link errors are waited out:
        the client reconnects by itself. Cancel the task to stop."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        entry = (loop, wake)
        self._wakers.append(entry)
        try:
            while True:
                wake.clear()
                try:
                    await self.drain(client, batch=batch, inflight=inflight)
                except HeadraceClientError:
                    await asyncio.sleep(poll)
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll):
                        await wake.wait()
        finally:
            self._wakers.remove(entry)

    # -- internals ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _count(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()[0])

    def _wake(self) -> None:
        for loop, event in list(self._wakers):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def _take(self, after: int, limit: int) -> _Batch | None:
        """The next run of consecutive records of one product and kind after ``after``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, product, kind, body FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        if not rows:
            return None
        product, kind = rows[0][1], rows[0][2]
        b = _Batch(product, kind, [], [])
        for seq, p, k, body in rows:
            if p != product or k != kind:
                break
            b.seqs.append(seq)
            b.bodies.append(body)
        return b

    def _delete(self, seqs: list[int]) -> None:
        with self._lock, self._tx():
            self._db.executemany("DELETE FROM records WHERE seq = ?", [(s,) for s in seqs])

    def _reject(self, b: _Batch, indexes: dict[int, tuple[int, str]]) -> None:
        now = time.time()
        with self._lock, self._tx():
            for i, (code, message) in indexes.items():
                seq = b.seqs[i]
                moved = self._db.execute(
                    "INSERT OR REPLACE INTO rejected "
                    "SELECT seq, product, kind, body, created, ?, ?, ? FROM records WHERE seq = ?",
                    (code, message, now, seq),
                ).rowcount
                if moved:
                    self._db.execute("DELETE FROM records WHERE seq = ?", (seq,))

    async def _send(self, client: IntegrationClient, b: _Batch) -> int:
        """Send one batch until it is stored or rejected; returns records stored."""
        pause = 0.5
        while True:
            try:
                await client.post(b.product, b.kind, [msgspec.Raw(x) for x in b.bodies])
            except RateLimited:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            except SubscribeRefused as e:
                self._reject(b, dict.fromkeys(range(len(b.seqs)), (e.code, str(e))))
                return 0
            except IntegrationReplyError as e:
                bad: dict[int, tuple[int, str]] = {}
                for err in e.errors:
                    index = err.get("index")
                    if isinstance(index, int) and 0 <= index < len(b.seqs):
                        bad[index] = (int(err.get("code", e.code)), str(err.get("message", "")))
                if not bad and len(b.seqs) == 1:
                    bad[0] = (e.code, e.message)
                if bad:
                    self._reject(b, bad)
                    keep = [i for i in range(len(b.seqs)) if i not in bad]
                    if not keep:
                        return 0
                    b = _Batch(
                        b.product, b.kind, [b.seqs[i] for i in keep], [b.bodies[i] for i in keep]
                    )
                    continue
                # refused as a whole with no item named (e.g. too large): split it
                half = len(b.seqs) // 2
                first = _Batch(b.product, b.kind, b.seqs[:half], b.bodies[:half])
                second = _Batch(b.product, b.kind, b.seqs[half:], b.bodies[half:])
                return await self._send(client, first) + await self._send(client, second)
            self._delete(b.seqs)
            self.sent += len(b.seqs)
            return len(b.seqs)
