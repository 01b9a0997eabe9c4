"""The audit part of the SQLite store (``store.base.AuditStore``): one append-only table
of the changes made through the admin API, newest read first, filtered by organization,
user and time."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..base import AuditRow

if TYPE_CHECKING:
    from .engine import SQLiteEngine


class AuditMixin:
    engine: SQLiteEngine

    async def audit_append(self, rows: list[tuple[int, str | None, str | None, bytes]]) -> int:
        """Append (ts ms, user or None, org or None, doc) rows; returns the last id."""

        def fn(c: sqlite3.Connection) -> int:
            c.executemany("INSERT INTO audit(ts, user, org, doc) VALUES (?,?,?,?)", rows)
            return int(c.execute("SELECT last_insert_rowid()").fetchone()[0])

        return await self.engine.write(fn)

    async def audit_query(
        self,
        orgs: list[str] | None,
        user: str | None,
        start: int,
        end: int,
        limit: int,
        before_id: int | None,
    ) -> list[AuditRow]:
        """Records newest first; ``orgs`` None: every record, else those of these orgs."""

        def fn(c: sqlite3.Connection) -> list[AuditRow]:
            sql = "SELECT id, ts, user, org, doc FROM audit WHERE ts >= ? AND ts < ?"
            args: list[Any] = [start, end]
            if orgs is not None:
                sql += f" AND org IN ({','.join('?' * len(orgs))})"
                args += orgs
            if user is not None:
                sql += " AND user = ?"
                args.append(user)
            if before_id is not None:
                sql += " AND id < ?"
                args.append(before_id)
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit)
            return c.execute(sql, args).fetchall()

        return await self.engine.read(fn)
