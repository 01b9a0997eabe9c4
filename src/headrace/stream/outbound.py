"""The outbound stream and its consumers (see the package docstring for the API)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import operator
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..state.registry import DeviceEntry, Registry
from ..store.base import StreamRow, StreamStore
from ..tasks import cancel, every
from .records import (
    ATTRIBUTE,
    EVENT,
    FILE_DELETED,
    FILE_STORED,
    MEASUREPOINT,
    OFFLINE,
    ONLINE,
    RAW,
    Builder,
    Filter,
    Retention,
    decode,
    decode_lean,
)

if TYPE_CHECKING:  # the pipeline imports the registry: no cycle at run time
    from ..ingest.pipeline import Origin, Result
    from ..state.files import FileRecord

log = logging.getLogger("headrace.stream")

_BUCKET_MS = 100  # the time index's resolution


_seq_of = operator.itemgetter(0)
_at_of = operator.itemgetter(1)
_doc_of = operator.itemgetter(2)


def select(
    rows: list[tuple[int, int, bytes]],
    after: int,
    head: int,
    limit: int,
    filter: Filter | None,
    lean: bool,
) -> tuple[list[Any], int]:
    """The records of ``rows`` (read after ``after`` when the head was ``head``, up to
    ``limit``) that match ``filter``, and the position the scan reached."""
    dec = decode_lean if lean and not (filter and filter.points) else decode
    if filter is None:
        records = [dec(seq, at, doc) for seq, at, doc in rows]
    else:
        match = filter.match
        records = [r for seq, at, doc in rows if match(r := dec(seq, at, doc))]
    upto = rows[-1][0] if rows else after
    if len(rows) < limit:
        upto = max(upto, head)
    return records, upto


class _Bucket:
    """The records committed within one 100 ms of commit time."""

    __slots__ = ("bytes", "first", "first_at", "last", "last_at")

    def __init__(self, first: int, last: int, first_at: int, last_at: int, nbytes: int):
        self.first = first
        self.last = last
        self.first_at = first_at
        self.last_at = last_at
        self.bytes = nbytes


class Consumer:
    """A named, durable reader of the stream with its filter and retention.

    ``position``: every record up to it is done (durable once ``commit`` returns);
    ``read_position``: where the next ``read`` continues (ahead of ``position`` while
    records are being delivered).
    """

    def __init__(
        self, stream: Stream, name: str, filter: Filter, retention: Retention, position: int
    ) -> None:
        self.stream = stream
        self.name = name
        self.filter = filter
        self.retention = retention
        self.position = position
        self.read_position = position
        self.saved = -1  # the position last written to the store
        self.dropped = 0  # records that fell out of retention before this consumer was done
        self.closed = False

    async def read(self, limit: int = 1000, *, lean: bool = False) -> list[Any]:
        """The next records (up to ``limit`` scanned) that match the filter; moves
        ``read_position`` past every record scanned, matching or not. ``lean``: as
        ``Lean`` records (content not decoded; not with a ``points`` filter)."""
        start = self.read_position
        records, upto = await self.stream.read(start, limit, self.filter, lean=lean)
        if self.read_position == start:  # not moved by a seek meanwhile
            self.read_position = upto
        return records

    async def wait(self, timeout: float | None = None) -> bool:
        """Until a commit appends after ``read_position`` (True) or ``timeout`` (False)."""
        return await self.stream.wait(self.read_position, timeout)

    async def commit(self, position: int | None = None) -> None:
        """Everything up to ``position`` (default ``read_position``) is done: durable
        when this returns."""
        pos = self.read_position if position is None else position
        self.position = pos
        await self.stream.store.stream_save_cursors([(self.name, pos)])
        self.saved = pos

    def seek(self, position: int) -> int:
        """Read again after ``position`` (a replay); clamped to what the stream still
        holds and to its head. Returns the position set (durable with ``commit``)."""
        pos = max(self.stream.pruned, min(position, self.stream.head))
        self.position = pos
        self.read_position = pos
        return pos

    def refilter(self, filter: Filter, retention: Retention | None = None) -> None:
        self.filter = filter
        if retention is not None:
            self.retention = retention
        self.stream.invalidate()

    @property
    def lag_records(self) -> int:
        """Records of the stream after ``position`` (matching the filter or not)."""
        return max(0, self.stream.head - self.position)

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest record after ``position`` (0 when none)."""
        return self.stream.age_after(self.position)

    def stats(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "lagRecords": self.lag_records,
            "lagSeconds": round(self.lag_seconds, 3),
            "dropped": self.dropped,
        }


class Stream:
    def __init__(
        self,
        store: StreamStore,
        registry: Registry,
        *,
        prune_interval: float = 1.0,
        replay_seconds: float = 0.0,
        memory_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.builder = Builder(registry)
        self.prune_interval = prune_interval
        self.replay_seconds = replay_seconds
        self.clock = clock
        self.consumers: dict[str, Consumer] = {}
        self.head = 0  # last committed seq
        self.pruned = 0  # every seq up to here is gone
        self.bytes = 0  # bytes of records retained (as of the index)
        self.appended = 0  # records appended since start
        self.dropped = 0  # records that fell out of a consumer's retention
        self._cursors: dict[str, int] = {}
        self._index: deque[_Bucket] = deque()
        self._commit_times: dict[int, float] = {}  # records' at (ms) -> commit time (s)
        self._wants: dict[tuple[str, str, str, str, str], bool] = {}
        # the last commits' records (seq, at, doc), one list per commit, oldest first,
        # at most ``memory_bytes`` of docs: reads that keep up are served from here
        self.memory_bytes = memory_bytes
        self._recent: deque[list[tuple[int, int, bytes]]] = deque()
        self._recent_bytes = 0
        self.memory_reads = 0  # reads served from memory (and from the store: store_reads)
        self.store_reads = 0
        self._event = asyncio.Event()
        # called on the loop right after each commit with its records ``(seq, at, doc)``:
        # consumers that follow the head (noti) take them from memory, not from the store
        self.tails: list[Callable[[list[tuple[int, int, bytes]]], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def load(self) -> None:
        """Read the head, the cursors and the time index (after the store started)."""
        self.head = self.store.stream_head()
        cursors, index = self.store.stream_load()
        self._cursors = cursors
        for first, last, first_at, last_at, nbytes in index:
            self._index.append(_Bucket(first, last, first_at, last_at, nbytes))
            self.bytes += nbytes
        self.pruned = (self._index[0].first - 1) if self._index else self.head
        self.store.stream_listener = self._from_writer

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = every(self.prune_interval, self.prune, "pruning the stream", log)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        dirty = [(c.name, c.position) for c in self.consumers.values() if c.saved != c.position]
        if dirty:
            try:
                await self.store.stream_save_cursors(dirty)
            except Exception:
                log.exception("saving stream cursors failed")
        self._loop = None

    # -- consumers -----------------------------------------------------------------------

    def open(
        self,
        name: str,
        filter: Filter,
        retention: Retention,
        position: int | None = None,
    ) -> Consumer:
        """The consumer ``name``: its stored cursor if it has one, else a new one at
        ``position`` (default the head: what is committed from now on). A new cursor is
        durable once ``commit`` returned (or the next prune, within a second)."""
        old = self.consumers.get(name)
        if old is not None:
            old.refilter(filter, retention)
            return old
        stored = self._cursors.get(name)
        pos = stored if stored is not None else (self.head if position is None else position)
        c = Consumer(self, name, filter, retention, max(pos, 0))
        if stored is not None:
            c.saved = stored
        self.consumers[name] = c
        self.invalidate()
        return c

    async def drop(self, name: str) -> None:
        """Remove a consumer and its durable cursor (the stream no longer keeps records
        for it)."""
        c = self.consumers.pop(name, None)
        if c is not None:
            c.closed = True
        self._cursors.pop(name, None)
        self.invalidate()
        await self.store.stream_drop_cursor(name)

    def stored_cursors(self) -> dict[str, int]:
        """The cursors in the store at load (to find those of consumers that are gone)."""
        return dict(self._cursors)

    def invalidate(self) -> None:
        self._wants.clear()

    def wants(self, org: str, product: str, model: str, source: str, kind: str) -> bool:
        """Whether some consumer may want a record of this shape (else none is written)."""
        key = (org, product, model, source, kind)
        w = self._wants.get(key)
        if w is None:
            w = self._wants[key] = any(
                c.filter.coarse(org, product, model, source, kind) for c in self.consumers.values()
            )
        return w

    # -- writing (the producers' hooks) ----------------------------------------------------

    def on_batch(self, result: Result, origin: Origin) -> None:
        """The pipeline's hook before the write: the request's records go into its
        batch, to be appended in the same transaction."""
        batch = result.batch
        if not self.consumers or batch is None or not self._may_want(result):
            return
        rows = self.builder.batch_rows(
            batch, result.devices, result.raw, int(self.clock() * 1000), self.wants
        )
        if rows:
            batch.stream.extend(rows)

    def _may_want(self, result: Result) -> bool:
        """Whether some consumer may want a record of the request (its products and the
        kinds it carries), before looking at its items one by one."""
        batch = result.batch
        assert batch is not None
        kinds = []
        if batch.measurepoints:
            kinds.append(MEASUREPOINT)
        if batch.attributes:
            kinds.append(ATTRIBUTE)
        if batch.events:
            kinds.append(EVENT)
        if result.raw is not None:
            kinds.append(RAW)
        source = "realtime" if batch.source == 1 else "offline"
        seen: set[str] = set()
        model_of = self.builder.model_of
        for entry in result.devices:
            d = entry.device
            if d.productKey in seen:
                continue
            seen.add(d.productKey)
            model = model_of(d.productKey)
            for kind in kinds:
                if self.wants(d.orgId, d.productKey, model, source, kind):
                    return True
        return False

    def online_rows(self, entry: DeviceEntry, online: bool, ts: int, ip: str) -> list[StreamRow]:
        """The record of an online state change (written with the change)."""
        if not self.consumers:
            return []
        d = entry.device
        kind = ONLINE if online else OFFLINE
        content: dict[str, Any] = {"ip": ip} if online else {}
        row = self.builder.change_row(
            d.orgId, d.productKey, d.assetId, d.deviceKey, kind, ts, content, self.wants
        )
        return [row] if row is not None else []

    def fault_rows(
        self,
        entry: DeviceEntry,
        flag: str,
        point: str,
        name: str,
        value: int,
        event_id: str,
        ts: int,
        source: str = "realtime",
    ) -> list[StreamRow]:
        """The record of a fault/alert point changing (written with the fault state)."""
        if not self.consumers:
            return []
        d = entry.device
        content = {"point": point, "name": name, "value": value, "eventId": event_id}
        row = self.builder.change_row(
            d.orgId, d.productKey, d.assetId, d.deviceKey, flag, ts, content, self.wants, source
        )
        return [row] if row is not None else []

    def file_rows(self, stored: bool, records: Iterable[FileRecord]) -> list[StreamRow]:
        """The records of files stored or deleted (written with the file records)."""
        if not self.consumers:
            return []
        kind = FILE_STORED if stored else FILE_DELETED
        out = []
        for r in records:
            row = self.builder.change_row(
                r.orgId,
                r.productKey,
                r.assetId,
                r.deviceKey,
                kind,
                r.createTime if stored else int(self.clock() * 1000),
                r.info(),
                self.wants,
            )
            if row is not None:
                out.append(row)
        return out

    # -- commits (from the store's writer thread) ----------------------------------------

    def _from_writer(self, head: int, entries: list[tuple[int, int, bytes]]) -> None:
        t = time.time()  # the write just committed (records' ``at`` is from before it)
        loop = self._loop
        if loop is None:  # not started: nobody waits yet
            self._committed(head, entries, t)
            return
        try:
            loop.call_soon_threadsafe(self._committed, head, entries, t)
        except RuntimeError:  # the loop is closed
            pass

    def _committed(self, head: int, entries: list[tuple[int, int, bytes]], t: float) -> None:
        index = self._index
        last = index[-1] if index else None
        times = self._commit_times
        if len(times) > 20_000:  # the oldest half forgotten
            for k in list(itertools.islice(times, 10_000)):
                del times[k]
        total = 0
        # one pass per write (its records share their at): commit times, the time index
        for at, group in itertools.groupby(entries, _at_of):
            g = list(group)
            times[at] = t
            nbytes = sum(map(len, map(_doc_of, g)))
            total += nbytes
            if last is not None and at // _BUCKET_MS == last.first_at // _BUCKET_MS:
                last.last = g[-1][0]
                last.last_at = max(last.last_at, at)
                last.bytes += nbytes
            else:
                last = _Bucket(g[0][0], g[-1][0], at, at, nbytes)
                index.append(last)
        self.bytes += total
        self.appended += len(entries)
        if entries and self.memory_bytes > 0:
            recent = self._recent
            recent.append(entries)
            self._recent_bytes += total
            while self._recent_bytes > self.memory_bytes and len(recent) > 1:
                self._recent_bytes -= sum(map(len, map(_doc_of, recent.popleft())))
        if head > self.head:
            self.head = head
        for tail in self.tails:  # the committed records, from memory, in commit order
            try:
                tail(entries)
            except Exception:
                log.exception("a stream tail failed")
        ev = self._event
        self._event = asyncio.Event()
        ev.set()

    # -- reading -------------------------------------------------------------------------

    async def read(
        self,
        after: int,
        limit: int = 1000,
        filter: Filter | None = None,
        *,
        lean: bool = False,
    ) -> tuple[list[Any], int]:
        """Records after position ``after`` in commit order (up to ``limit`` scanned),
        those matching ``filter`` only; and the position the scan reached (read on from
        there: it passes records that did not match)."""
        head = self.head  # committed before the query starts: the query sees it all
        rows = self._from_memory(after, limit)
        if rows is None:
            self.store_reads += 1
            rows = await self.store.stream_read(after, limit, filter.orgs if filter else None)
        else:
            self.memory_reads += 1
        return select(rows, after, head, limit, filter, lean)

    def _from_memory(self, after: int, limit: int) -> list[tuple[int, int, bytes]] | None:
        """Up to ``limit`` records after ``after`` from the recent commits, or None when
        memory does not hold everything after ``after`` (then the store answers)."""
        recent = self._recent
        if not recent:
            return None
        if after + 1 < recent[0][0][0] and not self._holds_all_after(after):
            return None
        out: list[tuple[int, int, bytes]] = []
        # the commit holding the first record after ``after``: from the newest backwards
        i = len(recent) - 1
        while i > 0 and recent[i][0][0] > after + 1:
            i -= 1
        while i < len(recent) and len(out) < limit:
            entries = recent[i]
            if entries[-1][0] > after:
                if entries[0][0] > after:
                    out.extend(entries[: limit - len(out)])
                else:
                    start = bisect.bisect_right(entries, after, key=_seq_of)
                    out.extend(entries[start : start + limit - len(out)])
            i += 1
        return out

    def _holds_all_after(self, after: int) -> bool:
        """Whether no committed record after ``after`` is older than what memory holds:
        every seq between ``after`` and the first kept is pruned or was never committed."""
        first = self._recent[0][0][0]
        # the time index knows every committed seq range: a bucket ending after ``after``
        # and starting before ``first`` holds records memory has not
        for b in self._index:
            if b.last > after and b.first < first:
                return False
            if b.first >= first:
                break
        return True

    async def wait(self, after: int, timeout: float | None = None) -> bool:
        """Until the head passes ``after`` (True), or ``timeout`` seconds (False). Woken
        by commits, never by polling."""
        while self.head <= after:
            ev = self._event
            try:
                await asyncio.wait_for(ev.wait(), timeout)
            except TimeoutError:
                return self.head > after
        return True

    def committed_at(self, at: int) -> float:
        """When the write that appended records stamped ``at`` (ms) committed, seconds
        (``at`` itself once forgotten: it is stamped in the write, before the commit)."""
        return self._commit_times.get(at, at / 1000)

    def position_at(self, time_ms: int) -> int:
        """The position to read after to get the records committed at or after
        ``time_ms`` (to 100 ms; from the oldest retained when that is later)."""
        for b in self._index:
            if b.last_at >= time_ms:
                return max(b.first - 1, self.pruned)
        return self.head

    def age_after(self, position: int) -> float:
        """Seconds since the oldest record after ``position`` was committed (0: none)."""
        if position >= self.head:
            return 0.0
        for b in self._index:
            if b.last > position:
                return max(0.0, self.clock() - b.first_at / 1000)
        return 0.0

    # -- pruning -------------------------------------------------------------------------

    def _floor(self, retention: Retention, now_ms: int) -> int:
        """The last seq that is out of this retention (0: none)."""
        floor = 0
        if retention.seconds is not None:
            cutoff = now_ms - int(retention.seconds * 1000)
            for b in self._index:
                if b.last_at >= cutoff:
                    break
                floor = b.last
        if retention.bytes is not None and self.bytes > retention.bytes:
            remaining = self.bytes
            for b in self._index:
                if remaining <= retention.bytes:
                    break
                remaining -= b.bytes
                floor = max(floor, b.last)
        return floor

    async def prune(self) -> int:
        """Apply the consumers' retention, then delete what every consumer is done with
        (keeping ``replay_seconds`` of history). Returns how many records were deleted."""
        now = int(self.clock() * 1000)
        positions = []
        for c in list(self.consumers.values()):
            floor = self._floor(c.retention, now)
            if floor > c.position:
                lost = await self.store.stream_count(c.position, floor)
                c.dropped += lost
                self.dropped += lost
                log.warning(
                    "stream records fell out of a consumer's retention",
                    extra={"consumer": c.name, "records": lost, "through": floor},
                )
                c.position = floor
                c.read_position = max(c.read_position, floor)
            positions.append(c.position)
        dirty = [(c.name, c.position) for c in self.consumers.values() if c.saved != c.position]
        if dirty:
            await self.store.stream_save_cursors(dirty)
            for name, pos in dirty:
                c2 = self.consumers.get(name)
                if c2 is not None:
                    c2.saved = pos
        # cursors stored by consumers not opened (yet) in this run still hold records
        positions.extend(p for n, p in self._cursors.items() if n not in self.consumers)
        through = min(positions) if positions else self.head
        if self.replay_seconds > 0:
            through = min(through, self._floor(Retention(seconds=self.replay_seconds), now))
        if through <= self.pruned:
            return 0
        removed = await self.store.stream_prune(through)
        self.pruned = through
        while self._index and self._index[0].last <= through:
            self.bytes -= self._index.popleft().bytes
        return removed

    def stats(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "pruned": self.pruned,
            "bytes": self.bytes,
            "appended": self.appended,
            "dropped": self.dropped,
            "consumers": {n: c.stats() for n, c in self.consumers.items()},
        }
