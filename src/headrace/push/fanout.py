"""The fan-out: device events into the enterprises' durable queues.

Events come from two places:
- ``Pipeline.on_stored``: after an integration request is committed, its events
  (``push.events``) are appended to the queue of every enterprise that subscribes to the
  device's product and wants that event type, in ONE store write with the fault states
  they changed. The hook is awaited before the request is answered, so an answered
  request has its events queued durably; a request whose events could not be queued is
  not answered and its sender resends it.
- ``OnlineTracker`` listeners: ``device_online``/``device_offline``. A real-time request
  for an offline device announces ``device_online`` itself, ahead of the device's data
  (the tracker only learns of the data after the request is stored); the tracker's own
  notification for that change is then skipped.

History (data stored with source "offline") produces events only for enterprises with
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

from ..config import Settings
from ..ingest.pipeline import Origin, Result
from ..state.common import now_ms
from ..state.online import OnlineTracker
from ..state.registry import DeviceEntry, Registry
from ..store.base import FaultRow, QueueInfo, Store, StreamRow
from ..tasks import cancel
from .directory import EnterpriseDirectory
from .enterprises import Enterprise
from .events import KV_DOC_LIMIT, OFFLINE, ONLINE, Derived, Deriver, Event
from .queue import EnterpriseQueue, Entry, to_ranges

log = logging.getLogger("headrace.push")


@dataclass(slots=True)
class _Append:
    """The events of one request (or online change) waiting to be written."""

    appends: list[tuple[EnterpriseQueue, list[Entry]]]
    faults: list[FaultRow]
    derived: Derived | None
    future: asyncio.Future[None]
    stream: list[StreamRow] = field(default_factory=list)  # fault/alert records


async def _nothing() -> None:
    return None


def _done() -> Awaitable[None]:
    return _nothing()


class Fanout:
    def __init__(
        self,
        settings: Settings,
        *,
        directory: EnterpriseDirectory,
        store: Store,
        registry: Registry,
        online: OnlineTracker,
    ) -> None:
        self.directory = directory
        self.store = store
        self.online = online
        s = settings
        self.default_retention: int = s["push.retention_seconds"]
        self.default_max_queue: int = s["push.max_queue"]
        self.memory_events: int = s["push.memory_events"]
        self.memory_bytes: int = s["push.memory_bytes"]
        self.queues: dict[str, EnterpriseQueue] = {}  # by enterprise id; never rebound
        self._announced: set[str] = set()  # assetIds announced online ahead of the tracker
        self.deriver = Deriver(registry)
        self.oversize = 0  # events whose push line passes 8 KiB (raw data)
        self._task: asyncio.Task[None] | None = None
        self._pending: list[_Append] = []
        self._wake = asyncio.Event()
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
        """Open the queues of the enterprises the directory has loaded."""
        infos, faults = self.store.push_load()
        self.deriver.load(faults, self.store.attribute_values("mac"))
        for eid, ent in self.directory.enterprises.items():
            self._open(ent, infos.pop(eid, None))
        self._orphans = list(infos)  # queues left by enterprises deleted mid-way

    async def start(self) -> None:
        for eid in self._orphans:
            await self.store.push_clear(eid)
        self._orphans = []
        self._task = asyncio.create_task(self._expiry_loop())
        self._writer_task = asyncio.create_task(self._writer())

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
        """The directory's listener: queues open, follow and close with their enterprise."""
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

    # -- events --------------------------------------------------------------------------------

    def on_stored(self, result: Result, origin: Origin) -> Awaitable[None] | None:
        batch = result.batch
        if batch is None or not result.devices:
            return None
        realtime = batch.source == 1
        announce = realtime  # the online tracker marks them online after this hook
        if not announce and not self._interested(result.devices, realtime):
            self.deriver.remember_macs(batch)
            return None
        now = now_ms()
        wants = self.directory.wants
        derived = self.deriver.derive(
            batch, result.devices, result.raw, now, lambda pk: wants(pk, realtime)
        )
        events = derived.events
        if announce:
            ahead: list[Event] = []
            for entry in result.devices:
                aid = entry.device.assetId
                if aid in self._announced or self.online.is_online(entry):
                    continue
                self._announced.add(aid)
                pk = entry.device.productKey
                if ONLINE in wants(pk, True):
                    doc = self.deriver.online_doc(entry, True, now, origin.ip)
                    ahead.append(Event(pk, ONLINE, doc))
            if ahead:
                events = ahead + events
        if not events and not derived.faults:
            return None
        return self._append(events, realtime, derived, self._fault_records(result, derived))

    def _fault_records(self, result: Result, derived: Derived) -> list[StreamRow]:
        if not derived.faults or not self.outbound:
            return []
        by_asset = {e.device.assetId: e for e in result.devices}
        source = "realtime" if result.batch is not None and result.batch.source == 1 else "offline"
        rows: list[StreamRow] = []
        for asset, point, value, event_id, ts in derived.faults:
            entry = by_asset.get(asset)
            if entry is None:
                continue
            fp = self.deriver.flagged(entry.device.productKey).get(point)
            if fp is None:
                continue
            for fn in self.outbound:
                rows += fn(entry, fp.flag, point, fp.name, value, event_id, ts, source)
        return rows

    def _interested(self, devices: list[DeviceEntry], realtime: bool) -> bool:
        """Whether a request for these devices can produce events or fault states."""
        seen: set[str] = set()
        for entry in devices:
            pk = entry.device.productKey
            if pk not in seen:
                seen.add(pk)
                if self.directory.wants(pk, realtime) or self.deriver.flagged(pk):
                    return True
        return False

    def on_online(
        self, entry: DeviceEntry, online: bool, ts: int, ip: str
    ) -> Awaitable[None] | None:
        aid = entry.device.assetId
        if online:
            if aid in self._announced:
                self._announced.discard(aid)  # announced with its data already
                return None
        else:
            self._announced.discard(aid)
        pk = entry.device.productKey
        event_type = ONLINE if online else OFFLINE
        if event_type not in self.directory.wants(pk, True):
            return None
        doc = self.deriver.online_doc(entry, online, ts, ip)
        return self._append([Event(pk, event_type, doc)], True, None)

    def _append(
        self,
        events: list[Event],
        realtime: bool,
        derived: Derived | None,
        stream: list[StreamRow] | None = None,
    ) -> Awaitable[None]:
        per_queue: dict[str, list[bytes]] = {}
        recipients = self.directory.recipients
        for ev in events:
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
        loop = asyncio.get_running_loop()
        for eid, docs in per_queue.items():
            q = self.queues[eid]
            entries, early = q.add(docs, now)
            appends.append((q, entries))
            if early:
                loop.call_soon(q.pump)
        faults = derived.faults if derived is not None else []
        if not appends and not faults:
            return _done()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append(appends, faults, derived, fut, stream or []))
        self._wake.set()
        return fut

    # -- the writer ----------------------------------------------------------------------------

    def _acked(self, q: EnterpriseQueue) -> None:
        self._ack_queues.add(q)
        self._wake.set()

    def _work(self) -> bool:
        return bool(self._pending) or any(q.has_acks for q in self._ack_queues)

    async def _writer(self) -> None:
        """The fan-out's only writer of appends and acks: one store write at a time with
        everything pending (appends of many requests, acks of every queue). Seqs were
        taken in order, so appends commit in seq order; a delete always follows the
        append of its row; and the store's writer gets one write per commit from here,
        not one per request and one per ack."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._work():
                batch, self._pending = self._pending, []
                self._writing = True
                try:
                    await self._write(batch)
                finally:
                    self._writing = False

    async def _write(self, batch: list[_Append]) -> None:
        last: dict[EnterpriseQueue, int] = {}
        for item in batch:
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
        try:
            deleted = await self.store.push_write(rows, faults, deletes, stream=stream)
        except BaseException as e:
            for q, seqs in acks:
                q.acks_done(len(seqs), 0, False)
            for item in batch:
                for q, entries in item.appends:
                    q.appended(entries, False)
                if item.derived is not None:
                    self.deriver.undo(item.derived)
                if not item.future.done():
                    if isinstance(e, Exception):
                        item.future.set_exception(e)
                    else:
                        item.future.cancel()
            if not isinstance(e, Exception):
                raise
            log.exception(
                "writing push events failed", extra={"events": len(rows), "acks": len(acks)}
            )
            return
        for (q, seqs), n in zip(acks, deleted, strict=True):
            q.acks_done(len(seqs), n + skipped.get(q, 0), True)
        for item in batch:
            for q, entries in item.appends:
                q.appended(entries, True)
            if not item.future.done():
                item.future.set_result(None)
