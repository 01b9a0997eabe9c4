"""The embedded store: the storage protocol on SQLite (see ``engine`` for threading)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ...errors import Conflict, NotFound, Unstorable
from ..base import DeviceRow, LogRow, Sample, StreamRow, WriteBatch
from . import chunks as ck
from .audit import AuditMixin
from .engine import SQLiteEngine
from .push import PushQueueMixin
from .schema import MIGRATIONS
from .series import Run, SeriesMixin, runs_of
from .stream import StreamMixin

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def encode_value(v: Any) -> Any:
    """Scalars are stored natively; arrays and structs as JSON in a BLOB."""
    if isinstance(v, (list, dict)):
        return _json_encode(v)
    if v is True:
        return 1
    if v is False:
        return 0
    return v


def decode_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return _json_decode(v)
    return v


class SQLiteStore(SeriesMixin, PushQueueMixin, StreamMixin, AuditMixin):
    def __init__(
        self, path: str | Path, *, synchronous: str = "full", max_batch: int = 512, readers: int = 4
    ):
        self.engine = SQLiteEngine(
            path,
            migrations=MIGRATIONS,
            synchronous=synchronous,
            max_batch=max_batch,
            readers=readers,
        )
        # point name -> id; touched by the writer thread only (readers query the table)
        self._point_ids: dict[str, int] = {}
        # (device, point) -> an upper bound of its last stored time; writer thread only
        self._tails: dict[tuple[int, int], int] = {}
        # (device, point) written small chunks since the last compact(); writer thread only
        self._small: set[tuple[int, int]] = set()
        self._compacted: dict[tuple[int, int], int] = {}
        # (device, point) with plain rows (series.py): [min ts, max ts, rows, first
        # written (monotonic)], over-estimates; writer thread only
        self._live: dict[tuple[int, int], list[Any]] = {}
        self.engine.on_rollback.append(self._reload_point_ids)
        self.engine.on_rollback.append(self._reload_live)
        # called with every committed message-log write's records, ids assigned (the
        # live tail of the channel logs); only app.py appends to it
        self.log_listeners: list[Callable[[list[LogRow]], None]] = []

    def start(self) -> None:
        self.engine.start()
        rows = self.engine.read_sync(
            lambda c: c.execute("SELECT name, id FROM point_names").fetchall()
        )
        self._point_ids = dict(rows)
        self.engine.write_sync(self._reload_live)
        self._migrate_samples()
        self._stream_open()

    def close(self) -> None:
        self.engine.close()

    def _reload_point_ids(self, conn: sqlite3.Connection) -> None:
        self._point_ids = dict(conn.execute("SELECT name, id FROM point_names").fetchall())

    PRUNE_CHUNKS = 2000
    """Most chunks one write of ``prune_before`` drops."""
    COMPACT_ROWS = 2000
    """Most chunks one write of ``compact`` reads."""

    def stats(self) -> dict[str, Any]:
        return {"commits": self.engine.commits, "writes": self.engine.writes}

    # -- registry objects ------------------------------------------------------------

    async def insert_objects(
        self, rows: list[tuple[str, str, str, bytes]], *, stream: list[StreamRow] | None = None
    ) -> None:
        def fn(c: sqlite3.Connection) -> None:
            for kind, key, _scope, _doc in rows:
                if c.execute(
                    "SELECT 1 FROM objects WHERE kind=? AND key=?", (kind, key)
                ).fetchone():
                    raise Conflict(f"{kind} {key!r} already exists")
            c.executemany("INSERT INTO objects(kind, key, scope, doc) VALUES (?,?,?,?)", rows)
            if stream:
                self._stream_append(c, stream)

        await self.engine.write(fn)

    async def update_object(self, kind: str, key: str, doc: bytes) -> None:
        def fn(c: sqlite3.Connection) -> None:
            if (
                c.execute(
                    "UPDATE objects SET doc=? WHERE kind=? AND key=?", (doc, kind, key)
                ).rowcount
                == 0
            ):
                raise NotFound(f"{kind} {key!r} not found")

        await self.engine.write(fn)

    async def delete_object(
        self, kind: str, key: str, *, stream: list[StreamRow] | None = None
    ) -> bool:
        def fn(c: sqlite3.Connection) -> bool:
            gone = c.execute("DELETE FROM objects WHERE kind=? AND key=?", (kind, key)).rowcount
            if gone and stream:
                self._stream_append(c, stream)
            return bool(gone)

        return await self.engine.write(fn)

    async def list_objects(self, kind: str, scope: str, after: str, limit: int) -> list[bytes]:
        return await self.engine.read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT doc FROM objects WHERE kind=? AND scope=? AND key>? ORDER BY key LIMIT ?",
                    (kind, scope, after, limit),
                )
            ]
        )

    def load_objects(self, kind: str) -> list[bytes]:
        return self.engine.read_sync(
            lambda c: [
                r[0]
                for r in c.execute("SELECT doc FROM objects WHERE kind=? ORDER BY key", (kind,))
            ]
        )

    # -- devices ---------------------------------------------------------------------

    async def insert_devices(self, rows: list[DeviceRow]) -> list[int]:
        def fn(c: sqlite3.Connection) -> list[int]:
            ids = []
            for r in rows:
                try:
                    cur = c.execute(
                        "INSERT INTO devices(asset_id, org_id, product_key, device_key, doc) VALUES (?,?,?,?,?)",
                        (r.asset_id, r.org_id, r.product_key, r.device_key, r.doc),
                    )
                except sqlite3.IntegrityError as e:
                    what = "assetId" if "asset_id" in str(e) else "deviceKey"
                    value = r.asset_id if what == "assetId" else r.device_key
                    raise Conflict(
                        f"device with {what} {value!r} already exists", field=what
                    ) from e
                ids.append(int(cur.lastrowid or 0))
            return ids

        return await self.engine.write(fn)

    async def update_device(self, device_id: int, doc: bytes) -> None:
        await self.engine.write(
            lambda c: c.execute("UPDATE devices SET doc=? WHERE id=?", (doc, device_id))
        )

    async def delete_device(self, device_id: int) -> None:
        def fn(c: sqlite3.Connection) -> None:
            for table in (
                "chunks_sorted",
                "chunks_recent",
                "live",
                "latest",
                "attributes",
                "events",
            ):
                c.execute(f"DELETE FROM {table} WHERE device=?", (device_id,))
            c.execute("DELETE FROM devices WHERE id=?", (device_id,))
            # a new device may get this id again: compact() must not skip its first
            # chunks, and its first plain row must write a latest row
            self._compacted.clear()
            for key in [k for k in self._live if k[0] == device_id]:
                del self._live[key]

        await self.engine.write(fn)

    async def list_devices(self, product_key: str, after: str, limit: int) -> list[bytes]:
        return await self.engine.read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT doc FROM devices WHERE product_key=? AND device_key>? ORDER BY device_key LIMIT ?",
                    (product_key, after, limit),
                )
            ]
        )

    def load_devices(self) -> list[DeviceRow]:
        return self.engine.read_sync(
            lambda c: [
                DeviceRow(*r)
                for r in c.execute(
                    "SELECT id, asset_id, org_id, product_key, device_key, doc FROM devices"
                )
            ]
        )

    # -- ingest ----------------------------------------------------------------------

    async def write_batch(self, batch: WriteBatch) -> None:
        try:
            last_id = await self.engine.write(self.batch_writer(batch))
        except (sqlite3.OperationalError, OSError):
            raise  # the disk or the database: a retry may pass
        except Exception as e:  # the batch's own content: every retry would fail too
            raise Unstorable(f"the store cannot hold this request ({type(e).__name__}: {e})") from e
        self._log_committed(batch.log, last_id)

    def batch_writer(self, batch: WriteBatch) -> Any:
        """The write function for one batch (also used by the bare-store benchmark)."""

        runs = runs_of(batch.measurepoints) if batch.measurepoints else None
        ahead = None if runs is None else self._encode_ahead(runs, batch.source)

        def fn(c: sqlite3.Connection) -> int:
            if runs:
                self._write_runs(c, runs, batch.source, ahead)
            if batch.attributes:
                c.executemany(
                    "INSERT INTO attributes(device, name, value, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(device, name) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                    [(d, n, encode_value(v), t) for d, n, v, t in batch.attributes],
                )
            if batch.events:
                c.executemany(
                    "INSERT OR REPLACE INTO events(device, event, ts, outputs, source) VALUES (?,?,?,?,?)",
                    [(d, e, t, o, batch.source) for d, e, t, o in batch.events],
                )
            last_log_id = 0
            if batch.log:
                c.executemany(
                    "INSERT INTO channel_log(channel, ts, kind, doc) VALUES (?,?,?,?)",
                    batch.log,
                )
                last_log_id = _last_rowid(c)  # before the stream's rows (a rowid table too)
            if batch.stream:  # the outbound stream, in the same transaction as the data
                self._stream_append(c, batch.stream)
            return last_log_id

        return fn

    def runs_writer(self, runs: list[Run], source: int = 0) -> Any:
        """The write function storing ``runs`` (device id, point name, times, values,
        qualities), the columns of many samples of each (device, point) at once: the bulk
        write API (no sample tuple is built; bench/store_reads.py fills with it). The same
        guarantees as ``write_batch``: sorted and merged with what is stored, a later value
        of an equal time replacing an earlier one, ``latest`` by the highest time."""
        return lambda c: self._write_runs(c, runs, source)

    # -- queries ---------------------------------------------------------------------

    async def query_samples(
        self,
        device: int,
        points: list[str],
        start: int,
        end: int,
        limit: int,
        desc: bool,
        after: tuple[int, str] | None,
    ) -> list[Sample]:
        return await self.engine.read(
            lambda c: self._query_samples(c, device, points, start, end, limit, desc, after),
            snapshot=True,  # the chunks and the plain rows as of one moment
        )

    async def aggregate(
        self, device: int, points: list[str], start: int, end: int, interval: int, fn: str
    ) -> dict[str, list[tuple[int, Any]]]:
        return await self.engine.read(
            lambda c: self._aggregate(c, device, points, start, end, interval, fn),
            snapshot=True,  # the chunks and the plain rows as of one moment
        )

    async def latest(self, device: int, points: list[str]) -> dict[str, Sample]:
        if not points:
            return {}
        got = await self.engine.read(lambda c: self._latest_many(c, [device], points))
        return got.get(device, {})

    async def latest_many(
        self, devices: list[int], points: list[str] | None
    ) -> dict[int, dict[str, Sample]]:
        """The latest sample of each point (``None``: every point) of many devices."""
        return await self.engine.read(lambda c: self._latest_many(c, devices, points))

    async def prune_before(self, device: int, points: list[str] | None, before_ts: int) -> int:
        """Drop the samples of ``device`` (of ``points``, ``None``: all) older than
        ``before_ts``: whole chunks, and the older part of the chunk it falls in. Runs as
        writes of at most ``PRUNE_CHUNKS`` chunks each, so ingest writes go between.
        Returns the samples dropped."""

        def pids(c: sqlite3.Connection) -> list[int]:
            if points is not None:
                return list(self._point_map(c, points))
            out: set[int] = set()
            for table in ("chunks", "live"):
                last = -1  # skip-scan of the key: one seek per point
                while True:
                    r = c.execute(
                        f"SELECT point FROM {table} WHERE device=? AND point>? "
                        "ORDER BY point LIMIT 1",
                        (device, last),
                    ).fetchone()
                    if r is None:
                        break
                    last = r[0]
                    out.add(last)
            return sorted(out)

        dropped = 0
        for pid in await self.engine.read(pids):
            done = False
            step = functools.partial(
                self._prune_step,
                device=device,
                pid=pid,
                before=before_ts,
                max_chunks=self.PRUNE_CHUNKS,
            )
            while not done:
                n, done = await self.engine.write(step)
                dropped += n
        return dropped

    async def fold(self, everything: bool = False) -> int:
        """Move plain rows (short runs, see series.py) into chunks: those of the points
        with ``FOLD_ROWS`` rows or a first row ``FOLD_AGE`` seconds old (``everything``:
        all), in writes of at most ``FOLD_STEP`` rows, each one transaction, so ingest
        writes go between them; then, once there are ``SETTLE_ROWS`` of them
        (``everything``: any), the recent chunks into chunks_sorted, in writes of about
        ``SETTLE_STEP``. Returns the plain rows moved."""
        due = await self.engine.write(functools.partial(self._fold_due, everything=everything))
        moved = 0
        while due:
            moved += await self.engine.write(functools.partial(self._fold_step, due=due))
        if everything or await self.engine.read(self._recent_rows) >= self.SETTLE_ROWS:
            start: tuple[int, int] | None = (ck.INT64_MIN, ck.INT64_MIN)
            while start is not None:
                start = await self.engine.write(functools.partial(self._settle_step, start=start))
        return moved

    async def compact(self) -> int:
        """Fold the plain rows that are due (``fold``), then merge the small chunks
        written since the last call (live data folded early, small requests) with their
        small neighbours, one write per (device, point) of at most ``COMPACT_ROWS``
        chunks. Returns the chunks merged away."""
        await self.fold()
        merged = 0
        for d, pid in await self.engine.write(self._take_small):
            merged += await self.engine.write(
                functools.partial(self._compact_key, d=d, pid=pid, max_rows=self.COMPACT_ROWS)
            )
        return merged

    async def attributes(self, device: int) -> dict[str, tuple[Any, int]]:
        return await self.engine.read(
            lambda c: {
                r[0]: (decode_value(r[1]), r[2])
                for r in c.execute(
                    "SELECT name, value, updated_at FROM attributes WHERE device=?", (device,)
                )
            }
        )

    async def events(
        self, device: int, start: int, end: int, limit: int
    ) -> list[tuple[str, int, bytes]]:
        return await self.engine.read(
            lambda c: c.execute(
                "SELECT event, ts, outputs FROM events WHERE device=? AND ts >= ? AND ts < ? ORDER BY ts, event LIMIT ?",
                (device, start, end, limit),
            ).fetchall()
        )

    # -- message log -----------------------------------------------------------------

    async def append_log(self, records: list[tuple[str, int, str, bytes]]) -> None:
        def fn(c: sqlite3.Connection) -> int:
            c.executemany(
                "INSERT INTO channel_log(channel, ts, kind, doc) VALUES (?,?,?,?)", records
            )
            return _last_rowid(c)

        self._log_committed(records, await self.engine.write(fn))

    def _log_committed(self, records: list[tuple[str, int, str, bytes]], last_id: int) -> None:
        """One write's records, committed: their ids are consecutive (one statement in
        one transaction of the one writer; a rowid is the table's largest + 1)."""
        if self.log_listeners and records:
            first = last_id - len(records) + 1
            rows = [(first + i, *r) for i, r in enumerate(records)]
            for listener in self.log_listeners:
                listener(rows)

    async def query_log(
        self,
        channel: str,
        kinds: list[str],
        start: int,
        end: int,
        limit: int,
        before_id: int | None,
    ) -> list[tuple[int, int, str, bytes]]:
        def fn(c: sqlite3.Connection) -> list[tuple[int, int, str, bytes]]:
            sql = "SELECT id, ts, kind, doc FROM channel_log WHERE channel=? AND ts >= ? AND ts < ?"
            args: list[Any] = [channel, start, end]
            if kinds:
                sql += f" AND kind IN ({','.join('?' * len(kinds))})"
                args += kinds
            if before_id is not None:
                sql += " AND id < ?"
                args.append(before_id)
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit)
            return c.execute(sql, args).fetchall()

        return await self.engine.read(fn)

    async def prune_log(self, older_than: int) -> int:
        return await self.engine.write(
            lambda c: c.execute("DELETE FROM channel_log WHERE ts < ?", (older_than,)).rowcount
        )


def _last_rowid(c: sqlite3.Connection) -> int:
    return int(c.execute("SELECT last_insert_rowid()").fetchone()[0])
