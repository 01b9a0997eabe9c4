"""The embedded store: the storage protocol on SQLite (see ``engine`` for threading)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ...errors import Conflict, NotFound, Unstorable
from ..base import DeviceRow, LogRow, Sample, WriteBatch
from .audit import AuditMixin
from .engine import SQLiteEngine
from .push import PushQueueMixin
from .schema import MIGRATIONS

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


_AGG_SQL = {
    "min": "MIN(value)",
    "max": "MAX(value)",
    "avg": "AVG(value)",
    "count": "COUNT(*)",
    "sum": "SUM(value)",
}


class SQLiteStore(PushQueueMixin, AuditMixin):
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
        self.engine.on_rollback.append(self._reload_point_ids)
        # called with every committed message-log write's records, ids assigned (the
        # live tail of the channel logs); only app.py appends to it
        self.log_listeners: list[Callable[[list[LogRow]], None]] = []

    def start(self) -> None:
        self.engine.start()
        rows = self.engine.read_sync(
            lambda c: c.execute("SELECT name, id FROM point_names").fetchall()
        )
        self._point_ids = dict(rows)

    def close(self) -> None:
        self.engine.close()

    def _reload_point_ids(self, conn: sqlite3.Connection) -> None:
        self._point_ids = dict(conn.execute("SELECT name, id FROM point_names").fetchall())

    def stats(self) -> dict[str, Any]:
        return {"commits": self.engine.commits, "writes": self.engine.writes}

    # -- registry objects ------------------------------------------------------------

    async def insert_objects(self, rows: list[tuple[str, str, str, bytes]]) -> None:
        def fn(c: sqlite3.Connection) -> None:
            for kind, key, _scope, _doc in rows:
                if c.execute(
                    "SELECT 1 FROM objects WHERE kind=? AND key=?", (kind, key)
                ).fetchone():
                    raise Conflict(f"{kind} {key!r} already exists")
            c.executemany("INSERT INTO objects(kind, key, scope, doc) VALUES (?,?,?,?)", rows)

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

    async def delete_object(self, kind: str, key: str) -> bool:
        return await self.engine.write(
            lambda c: (
                c.execute("DELETE FROM objects WHERE kind=? AND key=?", (kind, key)).rowcount > 0
            )
        )

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
            for table in ("samples", "latest", "attributes", "events"):
                c.execute(f"DELETE FROM {table} WHERE device=?", (device_id,))
            c.execute("DELETE FROM devices WHERE id=?", (device_id,))

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

    def _intern_points(self, c: sqlite3.Connection, names: set[str]) -> dict[str, int]:
        # A rollback that undoes these inserts makes the engine call _reload_point_ids.
        ids = self._point_ids
        for name in names:
            if name not in ids:
                c.execute("INSERT OR IGNORE INTO point_names(name) VALUES (?)", (name,))
                ids[name] = c.execute(
                    "SELECT id FROM point_names WHERE name=?", (name,)
                ).fetchone()[0]
        return ids

    async def write_batch(self, batch: WriteBatch) -> None:
        try:
            last_id = await self.engine.write(_with_log_id(self.batch_writer(batch), batch.log))
        except (sqlite3.OperationalError, OSError):
            raise  # the disk or the database: a retry may pass
        except Exception as e:  # the batch's own content: every retry would fail too
            raise Unstorable(f"the store cannot hold this request ({type(e).__name__}: {e})") from e
        self._log_committed(batch.log, last_id)

    def batch_writer(self, batch: WriteBatch) -> Any:
        """The write function for one batch (also used by the bare-store benchmark)."""

        def fn(c: sqlite3.Connection) -> None:
            if batch.samples:
                ids = self._intern_points(c, {s[1] for s in batch.samples})
                src = batch.source
                rows = [(d, ids[p], t, encode_value(v), q, src) for d, p, t, v, q in batch.samples]
                c.executemany(
                    "INSERT OR REPLACE INTO samples(device, point, ts, value, quality, source) VALUES (?,?,?,?,?,?)",
                    rows,
                )
                # the newest sample per (device, point) of this request; the table keeps the
                # highest timestamp ever stored, so backfilled history never replaces it
                newest: dict[tuple[int, int], tuple[int, int, int, Any, Any, int]] = {}
                for row in rows:
                    key = (row[0], row[1])
                    have = newest.get(key)
                    if have is None or row[2] >= have[2]:
                        newest[key] = row
                c.executemany(
                    "INSERT INTO latest(device, point, ts, value, quality, source) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT(device, point) DO UPDATE SET ts=excluded.ts, value=excluded.value, "
                    "quality=excluded.quality, source=excluded.source WHERE excluded.ts >= latest.ts",
                    newest.values(),
                )
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
            if batch.log:
                c.executemany(
                    "INSERT INTO channel_log(channel, ts, kind, doc) VALUES (?,?,?,?)",
                    batch.log,
                )

        return fn

    # -- queries ---------------------------------------------------------------------

    @staticmethod
    def _point_map(c: sqlite3.Connection, points: list[str]) -> dict[int, str]:
        if not points:
            return {}
        marks = ",".join("?" * len(points))
        return {
            r[0]: r[1]
            for r in c.execute(f"SELECT id, name FROM point_names WHERE name IN ({marks})", points)
        }

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
        def fn(c: sqlite3.Connection) -> list[Sample]:
            pmap = self._point_map(c, points)
            if not pmap:
                return []
            marks = ",".join("?" * len(pmap))
            order = "DESC" if desc else "ASC"
            args: list[Any] = [device, *pmap.keys(), start, end]
            cursor_sql = ""
            if after is not None:
                ts, name = after
                cursor_sql = f" AND (ts, point_name) {'<' if desc else '>'} (?, ?)"
                args += [ts, name]
            sql = (
                "SELECT * FROM (SELECT s.ts, p.name AS point_name, s.value, s.quality, s.source FROM samples s "
                f"JOIN point_names p ON p.id = s.point WHERE s.device=? AND s.point IN ({marks}) "
                f"AND s.ts >= ? AND s.ts < ?) WHERE 1{cursor_sql} ORDER BY ts {order}, point_name {order} LIMIT ?"
            )
            args.append(limit)
            return [
                Sample(r[1], r[0], decode_value(r[2]), r[3], r[4]) for r in c.execute(sql, args)
            ]

        return await self.engine.read(fn)

    async def aggregate(
        self, device: int, points: list[str], start: int, end: int, interval: int, fn: str
    ) -> dict[str, list[tuple[int, Any]]]:
        def run(c: sqlite3.Connection) -> dict[str, list[tuple[int, Any]]]:
            pmap = self._point_map(c, points)
            out: dict[str, list[tuple[int, Any]]] = {p: [] for p in points}
            if not pmap:
                return out
            marks = ",".join("?" * len(pmap))
            if fn in ("first", "last"):
                expr = f"value, {'MIN' if fn == 'first' else 'MAX'}(ts)"
            else:
                expr = _AGG_SQL[fn]
            sql = (
                f"SELECT point, (ts - ?) / ? AS bucket, {expr} FROM samples "
                f"WHERE device=? AND point IN ({marks}) AND ts >= ? AND ts < ? "
                "GROUP BY point, bucket ORDER BY point, bucket"
            )
            for r in c.execute(sql, [start, interval, device, *pmap.keys(), start, end]):
                out[pmap[r[0]]].append((start + r[1] * interval, decode_value(r[2])))
            return out

        return await self.engine.read(run)

    async def latest(self, device: int, points: list[str]) -> dict[str, Sample]:
        def fn(c: sqlite3.Connection) -> dict[str, Sample]:
            out = {}
            for pid, name in self._point_map(c, points).items():
                r = c.execute(
                    "SELECT ts, value, quality, source FROM latest WHERE device=? AND point=?",
                    (device, pid),
                ).fetchone()
                if r:
                    out[name] = Sample(name, r[0], decode_value(r[1]), r[2], r[3])
            return out

        return await self.engine.read(fn)

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


def _with_log_id(fn: Callable[[sqlite3.Connection], None], log: list[Any]) -> Any:
    """``fn``, then the rowid of its last message-log record (its only insert into a rowid
    table: the time-series tables are WITHOUT ROWID), 0 without one."""

    def run(c: sqlite3.Connection) -> int:
        fn(c)
        return _last_rowid(c) if log else 0

    return run
