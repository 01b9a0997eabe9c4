"""The fan-out: outbound stream records into the enterprises' durable queues.

The fan-out is one consumer of the outbound stream (``stream.Stream``, cursor ``noti``)
whose filter is what the enterprises want: the products they subscribe to, the record
kinds their event types come from (measurepoint and attribute: ``device_status_kv``; raw;
online; offline), real-time records, and history for enterprises with ``historyEvents``.
Records are written only when such a consumer wants them: with no enterprise nothing is
written for noti.

The fault/alert state follows the flagged points of every product whoever subscribes,
but needs no stream rows of its own: measurepoint records that no enterprise wants as
``device_status_kv`` (a product whose model flags points; none, or only attr_fault /
attr_alert wanted) are made in memory before the request's write (``before_write``,
with the stream's own record builder) and mapped after its commit (``on_stored``) like
the stream's; a request whose records changed a fault state, or made events, is
answered once the fan-out's write of those (fault states, queue rows, fault/alert
records) has committed. A crash before it leaves the request unanswered: its sender
sends it again and the change is derived again (what the stream's cursor does for the
records it holds).

It follows the head: right after each commit the stream hands it the committed records
from memory (``Stream.tails``), in commit order. It maps each record to its events
(``push.events.Deriver.record_events``; a measurepoint record of a product without
fault points straight to its device_status_kv, its values spliced from the record's
JSON: ``Deriver.kv_spliced``), puts them at the head of every queue that
wants them (pushed at once: the data is committed), and writes them to the queues'
rows in ONE store write at a time with the fault states they changed, the acks (deleted
rows) and its stream cursor (``push_write``), ``push.write_delay_ms`` after the push: the
rows of events acked by then are never written (nor deleted). A request is answered once its data and
its stream records are committed; it does not wait for that queue write: a crash before
it leaves the cursor behind, and at the next start the fan-out reads the stream from its
cursor (``_recover``) and queues those events then (at-least-once).

A real-time record of a device that is offline announces ``device_online`` ahead of it
(with the ip the request came from, noted before its write); the online tracker's own
record of that change is then skipped.

Why per-enterprise queues and not one cursor per enterprise on the stream: measured in
docs/benchmarks.md (noti section): pre-encoded event documents read from the queue
table, acks deleted as ranges (every acked event stays acked across a restart, in any
order, which a cursor cannot hold), and the queue's own bounds (retention, maxQueue).
The stream stays the one source: the queue rows are made from its records.

History (records with source "offline") produces events only for enterprises with
``historyEvents`` and never changes online state. Queues are filled whether or not a
client is connected and bounded by retention time and size (``EnterpriseQueue.expire``,
run every second).

The queues (``queues``, by enterprise id) live here: everything that writes them is
here (seqs taken as events are appended, the one writer of appends and acks that an ack
wakes, expiry, the rows cleared when an enterprise comes or goes, the store's queue
state read at load). The directory (``push.directory``) only says which enterprises
there are and what they want; ``enterprise_changed``, one of its listeners, opens,
retunes and closes the queues to follow it. Noti connections get their queue from
``queues`` after the directory has accepted their login.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..config import Settings
from ..ingest.pipeline import Origin, Result
from ..state.common import now_ms
from ..state.online import OnlineTracker
from ..state.registry import DeviceEntry, Registry
from ..store.base import FaultRow, QueueInfo, Store, StreamRow
from ..stream import records as R
from ..stream.outbound import Consumer, Stream
from ..tasks import cancel
from .directory import EnterpriseDirectory
from .enterprises import Enterprise
from .events import KV, KV_DOC_LIMIT, OFFLINE, ONLINE, RAW, Derived, Deriver, Event
from .queue import EnterpriseQueue, Entry, to_ranges

log = logging.getLogger("headrace.push")

CONSUMER = "noti"  # the fan-out's cursor on the outbound stream
BACKLOG = 100_000  # records taken but not yet written to the queues: requests wait beyond
_decode_content = msgspec.json.Decoder(dict[str, Any]).decode


class NotiFilter(R.Filter, kw_only=True):
    """The fan-out's filter: asks the fan-out (``fn(product, source, kind)``), which
    follows the enterprises, instead of fixed lists."""

    fn: Any = None

    def coarse(self, org: str, product: str, model: str, source: str, kind: str) -> bool:
        return self.fn is not None and self.fn(product, source, kind) is not None


@dataclass(slots=True)
class _Append:
    """The events made from committed records, waiting to be written."""

    appends: list[tuple[EnterpriseQueue, list[Entry]]]
    faults: list[FaultRow]
    upto: int  # the stream position these records reach (0: records made in memory)
    stream: list[StreamRow] = field(default_factory=list)  # fault/alert records
    records: int = 0
    done: asyncio.Future[None] | None = None  # set once written (a request waits for it)


MEMORY_PENDING = 10_000  # requests whose in-memory records wait for their commit


class Fanout:
    def __init__(
        self,
        settings: Settings,
        *,
        directory: EnterpriseDirectory,
        store: Store,
        registry: Registry,
        online: OnlineTracker,
        stream: Stream,
    ) -> None:
        self.directory = directory
        self.store = store
        self.registry = registry
        self.online = online
        self.stream = stream
        s = settings
        self.default_retention: int = s["push.retention_seconds"]
        self.default_max_queue: int = s["push.max_queue"]
        self.memory_events: int = s["push.memory_events"]
        self.memory_bytes: int = s["push.memory_bytes"]
        self.write_delay: float = s["push.write_delay_ms"] / 1000
        self.queues: dict[str, EnterpriseQueue] = {}  # by enterprise id; never rebound
        self._announced: set[str] = set()  # assetIds announced online ahead of the tracker
        self._ips: dict[str, str] = {}  # assetId -> ip of its last real-time request
        self.deriver = Deriver(registry)
        self.oversize = 0  # events whose push line passes 8 KiB (raw data)
        self.unwritten = 0  # events acked before their queue rows were written: never written
        self.consumer: Consumer | None = None
        self._shapes: dict[tuple[str, str, str], frozenset[str] | None] = {}
        self._nothing: bool | None = None  # _wants_nothing, until _invalidate
        self._memory_shapes: dict[tuple[str, str], bool] = {}
        # request -> its measurepoint records made in memory (fault state only), by id
        self._memory: dict[int, tuple[Result, list[StreamRow]]] = {}
        self._recovering = True  # until the records after the cursor are queued
        self._held: list[list[tuple[int, int, bytes]]] = []
        self._task: asyncio.Task[None] | None = None
        self._pending: list[_Append] = []
        self._backlog = 0  # records in _pending
        self._drained: asyncio.Event | None = None
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()  # a request waits for the pending write
        self._writer_task: asyncio.Task[None] | None = None
        self._writing = False
        self._ack_queues: set[EnterpriseQueue] = set()
        self._orphans: list[str] = []
        # the outbound stream's records of fault/alert changes, written with the fault
        # states: fn(entry, "fault"|"alert", point, name, value, event_id, ts, source); app.py
        self.outbound: list[
            Callable[[DeviceEntry, str, str, str, int, str, int, str], list[StreamRow]]
        ] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def load(self) -> None:
        """Open the queues of the enterprises the directory has loaded, and the fan-out's
        consumer of the stream (after the stream loaded, before anything is stored)."""
        infos, faults = self.store.push_load()
        self.deriver.load(faults, self.store.attribute_values("mac"))
        for eid, ent in self.directory.enterprises.items():
            self._open(ent, infos.pop(eid, None))
        self._orphans = list(infos)  # queues left by enterprises deleted mid-way
        self.consumer = self.stream.open(CONSUMER, NotiFilter(fn=self._stored), R.Retention())
        self.stream.tails.append(self._tail)

    async def start(self) -> None:
        for eid in self._orphans:
            await self.store.push_clear(eid)
        self._orphans = []
        self._writer_task = asyncio.create_task(self._writer())
        await self._recover()
        self._task = asyncio.create_task(self._expiry_loop())

    async def _recover(self) -> None:
        """Queue the events of the records after the cursor (committed before a crash
        whose queue write did not happen), then follow the head."""
        assert self.consumer is not None
        pos = self.consumer.position
        n = 0
        try:
            while pos < self.stream.head:
                rows = await self.store.stream_read(pos, 1000)
                if not rows:
                    break
                self._records(rows)
                n += len(rows)
                pos = rows[-1][0]
        finally:
            held, self._held = self._held, []
            self._recovering = False
            for entries in held:
                rest = [e for e in entries if e[0] > pos]
                if rest:
                    self._records(rest)
        if n:
            log.info("noti events queued from the stream after a restart", extra={"records": n})

    async def stop(self) -> None:
        """Stop expiring and write what is pending. The writer keeps running: servers
        stopped later (MQTT) still finish requests whose events must be written."""
        await cancel(self._task)
        self._task = None
        deadline = time.monotonic() + 5
        while (self._work() or self._writing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for q in list(self.queues.values()):
            try:
                await q.drain()
            except Exception:
                log.exception("finishing the push queue failed", extra={"enterprise": q.id})

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = now_ms()
            for q in list(self.queues.values()):
                if q.needs_expiry(now):
                    q.schedule_expiry()
            # models may have gained or lost fault/alert points: ask again
            self._invalidate()

    def _invalidate(self) -> None:
        self._nothing = None
        self._shapes.clear()
        self._memory_shapes.clear()
        self.stream.invalidate()

    # -- queues --------------------------------------------------------------------------------

    def _open(self, ent: Enterprise, info: QueueInfo | None = None) -> None:
        """Open the enterprise's queue, or give it the enterprise's limits."""
        eid = ent.enterpriseId
        retention = (ent.retentionSeconds or self.default_retention) * 1000
        max_queue = ent.maxQueue or self.default_max_queue
        q = self.queues.get(eid)
        if q is None:
            q = self.queues[eid] = EnterpriseQueue(
                eid,
                self.store,
                retention_ms=retention,
                max_queue=max_queue,
                memory_events=self.memory_events,
                memory_bytes=self.memory_bytes,
                info=info,
            )
            q.on_ack = self._acked
        else:
            q.retention_ms = retention
            q.max_queue = max_queue

    def enterprise_changed(self, ent: Enterprise, what: str) -> Awaitable[None] | None:
        """The directory's listener: queues open, follow and close with their enterprise;
        the fan-out's filter on the stream follows what they want."""
        self._invalidate()
        if what == "created":
            return self._create(ent)
        if what == "deleted":
            q = self.queues.pop(ent.enterpriseId, None)
            if q is not None:
                q.close()
                self._ack_queues.discard(q)
            return self._clear(ent.enterpriseId)
        self._open(ent)
        return None

    async def _create(self, ent: Enterprise) -> None:
        # rows a deleted namesake may have left (appends that were under way) go first
        await self._clear(ent.enterpriseId)
        self._open(ent)

    async def _clear(self, enterprise_id: str) -> None:
        await self.store.push_clear(enterprise_id)

    # -- what the fan-out reads from the stream ------------------------------------------------

    def _shape(self, product: str, source: str, kind: str) -> frozenset[str] | None:
        """The event types wanted for records of this shape (None: the record is not
        wanted; an empty set: only for the fault state)."""
        key = (product, source, kind)
        try:
            return self._shapes[key]
        except KeyError:
            pass
        realtime = source == R.REALTIME
        w = self.directory.wants(product, realtime)
        want: bool
        if kind == R.MEASUREPOINT:
            want = KV in w or bool(self.deriver.flagged(product))
        elif kind == R.ATTRIBUTE:
            want = KV in w
        elif kind == R.RAW:
            want = RAW in w
        elif kind == R.ONLINE:
            want = realtime and ONLINE in w
        elif kind == R.OFFLINE:
            want = realtime and OFFLINE in w
        else:
            want = False
        out = w if want else None
        self._shapes[key] = out
        return out

    def _stored(self, product: str, source: str, kind: str) -> frozenset[str] | None:
        """What the fan-out wants written to the stream: the records of ``_shape`` but
        the measurepoints no enterprise wants as device_status_kv (those are made in
        memory for the fault state: ``_in_memory``)."""
        w = self._shape(product, source, kind)
        if w is None or (kind == R.MEASUREPOINT and KV not in w):
            return None
        return w

    def _in_memory(self, product: str, source: str) -> bool:
        """Whether this product's measurepoint records of ``source`` are made in memory
        only (its model flags fault/alert points and no enterprise wants them as kv)."""
        key = (product, source)
        v = self._memory_shapes.get(key)
        if v is None:
            w = self._shape(product, source, R.MEASUREPOINT)
            v = self._memory_shapes[key] = w is not None and KV not in w
        return v

    def _memory_wants(self, org: str, product: str, model: str, source: str, kind: str) -> bool:
        return kind == R.MEASUREPOINT and self._in_memory(product, source)

    # -- the pipeline's hooks -------------------------------------------------------------------

    def before_write(self, result: Result, origin: Origin) -> None:
        """Before a request's write: keep its "mac" attributes, and the ip of a real-time
        request for devices that are offline (their device_online carries it)."""
        batch = result.batch
        if batch is None:
            return
        source = R.REALTIME if batch.source == 1 else R.HISTORY
        in_memory = self._in_memory
        if any(in_memory(e.device.productKey, source) for e in result.devices):
            # records for the fault state only: made like the stream's, never written
            rows = self.stream.builder.batch_rows(
                batch, result.devices, None, now_ms(), self._memory_wants
            )
            if rows:
                mem = self._memory
                if len(mem) >= MEMORY_PENDING:  # requests whose write failed: forgotten
                    del mem[next(iter(mem))]
                mem[id(result)] = (result, rows)
        if batch.attributes:
            self.deriver.remember_macs(batch)
        if batch.source == 1:
            wants = self.directory.wants
            is_online = self.online.is_online
            for entry in result.devices:
                if ONLINE in wants(entry.device.productKey, True) and not is_online(entry):
                    self._ips[entry.device.assetId] = origin.ip

    def on_stored(self, result: Result, origin: Origin) -> Awaitable[None] | None:
        """After a request's commit: its records made in memory are mapped now, and it
        waits for the write of what they changed (fault states, events); else it waits
        only while the queue writes are far behind (BACKLOG records), so that a flood
        cannot outrun them without bound."""
        written: asyncio.Future[None] | None = None
        mem = self._memory.pop(id(result), None)
        if mem is not None and mem[0] is result:
            at = now_ms()
            item = self._records([(0, at, doc) for _org, _kind, doc in mem[1]])
            if item is not None and (item.appends or item.faults):
                written = item.done = asyncio.get_running_loop().create_future()
                self._hurry.set()
        if self._backlog > BACKLOG // 2:
            self._hurry.set()
        if self._backlog <= BACKLOG:
            return written
        if self._drained is None:
            self._drained = asyncio.Event()
        return self._wait_drained(self._drained, written)

    async def _wait_drained(
        self, ev: asyncio.Event, written: asyncio.Future[None] | None = None
    ) -> None:
        if written is not None:
            await written
        await ev.wait()

    # -- committed records -> events -> queues ------------------------------------------------

    def _tail(self, entries: list[tuple[int, int, bytes]]) -> None:
        """The stream's records of one commit, right after it (on the loop)."""
        if self._recovering:
            self._held.append(entries)
            return
        if self._wants_nothing():
            return  # (the records are other consumers')
        self._records(entries)

    def _wants_nothing(self) -> bool:
        """Whether no record can matter to the fan-out: no enterprise subscribes to a
        product and no product's model flags fault/alert points (then the records of a
        commit are not even decoded)."""
        v = self._nothing
        if v is None:
            flagged = self.deriver.flagged
            v = self._nothing = not self.directory.has_products() and not any(
                flagged(pk) for pk in self.registry.products
            )
        return v

    def _records(self, rows: list[tuple[int, int, bytes]]) -> _Append | None:
        """Map records (the stream's, or made in memory: seq 0) to events and queue
        them; returns what waits to be written (None: nothing)."""
        shape = self._shape
        find = self.registry.find_device
        out = Derived()
        sources: list[bool] = []  # per event: real-time or not
        events = out.events
        fault_of: list[tuple[DeviceEntry, str]] = []  # per fault change: its entry, source
        flagged: dict[str, bool] = {}  # product -> its model flags fault/alert points
        spliced = self.deriver.kv_spliced
        for seq, at, doc in rows:
            try:
                lean = R.decode_lean(seq, at, doc)
            except msgspec.DecodeError:
                continue
            product = lean.product
            w = shape(product, lean.source, lean.kind)
            if w is None:
                continue
            entry = find(lean.org, asset_id=lean.assetId)
            if entry is None:
                continue  # deleted since
            realtime = lean.source == R.REALTIME
            aid = lean.assetId
            kind = lean.kind
            if kind == R.ONLINE:
                if aid in self._announced:
                    self._announced.discard(aid)  # announced with its data already
                    continue
            elif kind == R.OFFLINE:
                self._announced.discard(aid)
            elif (
                realtime
                and aid not in self._announced
                and ONLINE in self.directory.wants(product, True)
                and not self.online.is_online(entry)
            ):
                # the online tracker marks it online after this commit (and its record of
                # that, wanted too, is skipped): announce it ahead of its data
                self._announced.add(aid)
                ip = self._ips.pop(aid, "")
                doc1 = self.deriver.online_doc(entry, True, now_ms(), ip)
                events.append(Event(product, ONLINE, doc1))
                sources.append(True)
            if kind == R.MEASUREPOINT and KV in w:
                f = flagged.get(product)
                if f is None:
                    f = flagged[product] = bool(self.deriver.flagged(product))
                if not f:  # no fault state to follow: the values go in as they are
                    kv = spliced(entry, lean.time, lean.content)
                    if kv is not None:
                        events.append(Event(product, KV, kv))
                        sources.append(realtime)
                        continue
            rec = R.Record(
                org=lean.org,
                product=product,
                model=lean.model,
                assetId=aid,
                deviceKey=lean.deviceKey,
                source=lean.source,
                kind=kind,
                time=lean.time,
                content=_decode_content(lean.content),
            )
            n_events, n_faults = len(events), len(out.faults)
            self.deriver.record_events(rec, entry, w, out)
            sources.extend([realtime] * (len(events) - n_events))
            fault_of.extend([(entry, rec.source)] * (len(out.faults) - n_faults))
        upto = rows[-1][0]
        return self._append(
            events, sources, out.faults, self._fault_records(out, fault_of), upto, rows
        )

    def _fault_records(
        self, derived: Derived, fault_of: list[tuple[DeviceEntry, str]]
    ) -> list[StreamRow]:
        if not derived.faults or not self.outbound:
            return []
        rows: list[StreamRow] = []
        for (_asset, point, value, event_id, ts), (entry, source) in zip(
            derived.faults, fault_of, strict=True
        ):
            fp = self.deriver.flagged(entry.device.productKey).get(point)
            if fp is None:
                continue
            for fn in self.outbound:
                rows += fn(entry, fp.flag, point, fp.name, value, event_id, ts, source)
        return rows

    def _append(
        self,
        events: list[Event],
        sources: list[bool],
        faults: list[FaultRow],
        stream: list[StreamRow],
        upto: int,
        rows: list[Any],
    ) -> _Append | None:
        per_queue: dict[str, list[bytes]] = {}
        recipients = self.directory.recipients
        for ev, realtime in zip(events, sources, strict=True):
            if len(ev.doc) > KV_DOC_LIMIT:
                self.oversize += 1
            for eid in recipients(ev.product_key, ev.event_type, realtime):
                docs = per_queue.get(eid)
                if docs is None:
                    per_queue[eid] = [ev.doc]
                else:
                    docs.append(ev.doc)
        now = now_ms()
        appends: list[tuple[EnterpriseQueue, list[Entry]]] = []
        for eid, docs in per_queue.items():
            q = self.queues.get(eid)
            if q is None:
                continue
            entries, early = q.add(docs, now)
            appends.append((q, entries))
            if early:
                q.pump()  # committed data: pushed at once
        if not appends and not faults and not self._pending and not self._writing:
            self._advance(upto)  # nothing to write: the cursor moves (saved by the stream)
            return None
        item = _Append(appends, faults, upto, stream, len(rows))
        self._pending.append(item)
        self._backlog += len(rows)
        self._wake.set()
        return item

    def _advance(self, upto: int) -> None:
        c = self.consumer
        if c is not None and upto > c.position:
            c.position = upto
            c.read_position = max(c.read_position, upto)

    # -- the writer ----------------------------------------------------------------------------

    def _acked(self, q: EnterpriseQueue) -> None:
        self._ack_queues.add(q)
        self._wake.set()

    def _work(self) -> bool:
        return bool(self._pending) or any(q.has_acks for q in self._ack_queues)

    async def _writer(self) -> None:
        """The fan-out's only writer of appends, acks and its stream cursor: one store
        write at a time with everything pending (appends made from many commits, acks of
        every queue). Seqs were taken in order, so appends commit in seq order; a delete
        always follows the append of its row; the cursor moves with the rows made from
        the records before it. A failed write is tried again (a second later).

        Each write waits ``push.write_delay_ms`` first (the events are pushed already):
        a client that acks within it costs the store neither the rows nor their deletes,
        only the cursor. It waits not when a request waits for the write (fault states)
        or the backlog is far behind."""
        while True:
            await self._wake.wait()
            if self.write_delay > 0 and not self._urgent():
                self._hurry.clear()
                try:  # cut short when a request comes to wait for this write
                    await asyncio.wait_for(self._hurry.wait(), self.write_delay)
                except TimeoutError:
                    pass
            self._wake.clear()
            while self._work():
                batch, self._pending = self._pending, []
                self._writing = True
                try:
                    ok = await self._write(batch)
                finally:
                    self._writing = False
                if not ok:
                    self._pending[:0] = batch
                    await asyncio.sleep(1.0)
                    continue
                self._backlog -= sum(item.records for item in batch)
                for item in batch:
                    if item.done is not None and not item.done.done():
                        item.done.set_result(None)
                if self._drained is not None and self._backlog <= BACKLOG:
                    self._drained.set()
                    self._drained = None

    def _urgent(self) -> bool:
        """Whether the pending write must not wait: a request waits for it (fault
        states, events of records made in memory), or the backlog is far behind."""
        if self._backlog > BACKLOG // 2:
            return True
        return any(item.done is not None for item in self._pending)

    async def _write(self, batch: list[_Append]) -> bool:
        last: dict[EnterpriseQueue, int] = {}
        upto = 0
        for item in batch:
            upto = max(upto, item.upto)
            for q, entries in item.appends:
                if not q.closed:
                    last[q] = entries[-1][0]
        for q, seq in last.items():
            q.mark_queued(seq)  # the write is queued below, before anything else runs
        acks: list[tuple[EnterpriseQueue, list[int]]] = []
        acked_now: dict[EnterpriseQueue, set[int]] = {}
        for q in list(self._ack_queues):
            seqs = q.take_acks()
            if seqs:
                acks.append((q, seqs))
                if q in last:
                    acked_now[q] = set(seqs)
            if not q.acks_waiting:
                self._ack_queues.discard(q)
        # events acked before their append was written are neither written nor deleted
        rows: list[tuple[str, int, int, bytes]] = []
        faults: list[FaultRow] = []
        stream: list[StreamRow] = []
        skipped: dict[EnterpriseQueue, int] = {}
        for item in batch:
            for q, entries in item.appends:
                if q.closed:  # a deleted enterprise's rows are not written
                    continue
                done = acked_now.get(q)
                if done is None:
                    rows.extend((q.id, seq, ts, doc) for seq, ts, doc in entries)
                    continue
                for seq, ts, doc in entries:
                    if seq in done:
                        skipped[q] = skipped.get(q, 0) + 1
                    else:
                        rows.append((q.id, seq, ts, doc))
            faults.extend(item.faults)
            stream.extend(item.stream)
        deletes = []
        for q, seqs in acks:
            if q in acked_now:
                # this write's rows of q (seqs from `first` on, contiguous) are not in the
                # store yet: those acked are skipped above, not deleted
                first = min(es[0][0] for item in batch for qq, es in item.appends if qq is q)
                seqs = [seq for seq in seqs if seq < first]
            deletes.append((q.id, to_ranges(seqs)))
        cursor = (CONSUMER, upto) if upto else None
        try:
            deleted = await self.store.push_write(
                rows, faults, deletes, stream=stream, cursor=cursor
            )
        except Exception:
            for q, seqs in acks:
                q.acks_done(len(seqs), 0, False)
            log.exception(
                "writing push events failed; trying again",
                extra={"events": len(rows), "acks": len(acks)},
            )
            return False
        for (q, seqs), n in zip(acks, deleted, strict=True):
            q.acks_done(len(seqs), n + skipped.get(q, 0), True)
        self.unwritten += sum(skipped.values())
        for item in batch:
            for q, entries in item.appends:
                q.appended(entries, True)
        if upto and self.consumer is not None:
            self._advance(upto)
            self.consumer.saved = max(self.consumer.saved, upto)
        return True
