"""The push service: enterprises, their durable queues, and the events that fill them.

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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..config import Settings
from ..errors import Conflict, LoginRefused, NotFound, ValidationFailed
from ..ingest.pipeline import Origin, Result
from ..state.common import check_name, hash_password, now_ms, verify_password
from ..state.online import OnlineTracker
from ..state.registry import DeviceEntry, Registry
from ..store.base import FaultRow, Store
from .enterprises import (
    AllowList,
    Enterprise,
    EnterpriseCreate,
    EnterpriseUpdate,
    check_allow_list,
    check_credential,
    check_event_types,
    check_limits,
    new_enterprise_id,
    new_secret,
)
from .events import KV_DOC_LIMIT, OFFLINE, ONLINE, Derived, Deriver, Event
from .queue import EnterpriseQueue, Entry, to_ranges

log = logging.getLogger("headrace.push")

KIND = "enterprise"
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Enterprise)
# verified against when the enterprise id is unknown, so both failures take as long
_DUMMY_HASH = hash_password(new_secret())

EnterpriseListener = Callable[[Enterprise, str], None]
"""(enterprise, what) with what in "updated", "secret", "deleted" (the noti server drops
connections that may no longer stay)."""


@dataclass(slots=True)
class _Append:
    """The events of one request (or online change) waiting to be written."""

    appends: list[tuple[EnterpriseQueue, list[Entry]]]
    faults: list[FaultRow]
    derived: Derived | None
    future: asyncio.Future[None]


async def _nothing() -> None:
    return None


def _done() -> Awaitable[None]:
    return _nothing()


class PushService:
    def __init__(
        self, settings: Settings, *, store: Store, registry: Registry, online: OnlineTracker
    ) -> None:
        self.store = store
        self.registry = registry
        self.online = online
        s = settings
        self.default_retention: int = s["push.retention_seconds"]
        self.default_max_queue: int = s["push.max_queue"]
        self.memory_events: int = s["push.memory_events"]
        self.memory_bytes: int = s["push.memory_bytes"]
        self.enterprises: dict[str, Enterprise] = {}
        self.queues: dict[str, EnterpriseQueue] = {}
        self._allow: dict[str, AllowList] = {}
        self._types: dict[str, frozenset[str]] = {}
        self._by_product: dict[str, list[Enterprise]] = {}
        self._wants: dict[tuple[str, bool], frozenset[str]] = {}
        self._announced: set[str] = set()  # assetIds announced online ahead of the tracker
        self.deriver = Deriver(registry)
        self.listeners: list[EnterpriseListener] = []
        self.oversize = 0  # events whose push line passes 8 KiB (raw data)
        self._task: asyncio.Task[None] | None = None
        self._pending: list[_Append] = []
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._writing = False
        self._ack_queues: set[EnterpriseQueue] = set()
        self._orphans: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def load(self) -> None:
        infos, faults = self.store.push_load()
        self.deriver.load(faults, self.store.attribute_values("mac"))
        for doc in self.store.load_objects(KIND):
            ent = _dec.decode(doc)
            self._cache(ent, infos.pop(ent.enterpriseId, None))
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
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
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

    # -- cache ---------------------------------------------------------------------------------

    def _cache(self, ent: Enterprise, info: Any = None) -> None:
        eid = ent.enterpriseId
        self.enterprises[eid] = ent
        self._allow[eid] = AllowList(ent.ipAllowList)
        self._types[eid] = frozenset(ent.eventTypes)
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
        self._reindex()

    def _reindex(self) -> None:
        by_product: dict[str, list[Enterprise]] = {}
        for ent in self.enterprises.values():
            for pk in ent.products:
                by_product.setdefault(pk, []).append(ent)
        self._by_product = by_product
        self._wants = {}

    def wants(self, product_key: str, realtime: bool) -> frozenset[str]:
        """The event types some enterprise wants for this product (from real-time data or
        from history)."""
        key = (product_key, realtime)
        w = self._wants.get(key)
        if w is None:
            types: set[str] = set()
            for ent in self._by_product.get(product_key, ()):
                if realtime or ent.historyEvents:
                    types |= self._types[ent.enterpriseId]
            w = self._wants[key] = frozenset(types)
        return w

    # -- events --------------------------------------------------------------------------------

    def referring(self, kind: str, key: str) -> list[str]:
        """Enterprises that refer to an organization or product the registry would delete."""
        if kind == "organization":
            return [
                f"enterprise {e.enterpriseId}" for e in self.enterprises.values() if e.orgId == key
            ]
        if kind == "product":
            return [
                f"enterprise {e.enterpriseId}"
                for e in self.enterprises.values()
                if key in e.products
            ]
        return []

    def on_stored(self, result: Result, origin: Origin, product_key: str) -> Awaitable[None] | None:
        batch = result.batch
        if batch is None or not result.devices:
            return None
        realtime = batch.source == 1
        announce = realtime and origin.realtime
        if not announce and not self._interested(result.devices, realtime):
            self.deriver.remember_macs(batch)
            return None
        now = now_ms()
        derived = self.deriver.derive(
            batch, result.devices, result.raw, now, lambda pk: self.wants(pk, realtime)
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
                if ONLINE in self.wants(pk, True):
                    doc = self.deriver.online_doc(entry, True, now, origin.address)
                    ahead.append(Event(pk, ONLINE, doc))
            if ahead:
                events = ahead + events
        if not events and not derived.faults:
            return None
        return self._append(events, realtime, derived)

    def _interested(self, devices: list[DeviceEntry], realtime: bool) -> bool:
        """Whether a request for these devices can produce events or fault states."""
        seen: set[str] = set()
        for entry in devices:
            pk = entry.device.productKey
            if pk not in seen:
                seen.add(pk)
                if self.wants(pk, realtime) or self.deriver.flagged(pk):
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
        if event_type not in self.wants(pk, True):
            return None
        doc = self.deriver.online_doc(entry, online, ts, ip)
        return self._append([Event(pk, event_type, doc)], True, None)

    def _append(
        self, events: list[Event], realtime: bool, derived: Derived | None
    ) -> Awaitable[None]:
        per_queue: dict[str, list[bytes]] = {}
        for ev in events:
            if len(ev.doc) > KV_DOC_LIMIT:
                self.oversize += 1
            for ent in self._by_product.get(ev.product_key, ()):
                eid = ent.enterpriseId
                if ev.event_type in self._types[eid] and (realtime or ent.historyEvents):
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
        self._pending.append(_Append(appends, faults, derived, fut))
        self._wake.set()
        return fut

    def _acked(self, q: EnterpriseQueue) -> None:
        self._ack_queues.add(q)
        self._wake.set()

    def _work(self) -> bool:
        return bool(self._pending) or any(q.has_acks for q in self._ack_queues)

    async def _writer(self) -> None:
        """The push service's only writer of appends and acks: one store write at a time
        with everything pending (appends of many requests, acks of every queue). Seqs
        were taken in order, so appends commit in seq order; a delete always follows the
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
        deletes = []
        for q, seqs in acks:
            if q in acked_now:
                # this write's rows of q (seqs from `first` on, contiguous) are not in the
                # store yet: those acked are skipped above, not deleted
                first = min(es[0][0] for item in batch for qq, es in item.appends if qq is q)
                seqs = [seq for seq in seqs if seq < first]
            deletes.append((q.id, to_ranges(seqs)))
        try:
            deleted = await self.store.push_write(rows, faults, deletes)
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

    # -- logins --------------------------------------------------------------------------------

    def authenticate(self, enterprise_id: str, secret: str, address: str) -> EnterpriseQueue:
        """The queue a noti login may consume; raises ``LoginRefused`` with the message."""
        ent = self.enterprises.get(enterprise_id)
        if ent is None or ent.orgId not in self.registry.orgs:
            verify_password(secret, _DUMMY_HASH)
            raise LoginRefused("enterprise_id or enterprise_secret is wrong")
        if not verify_password(secret, ent.secretHash):
            raise LoginRefused("enterprise_id or enterprise_secret is wrong")
        if not self._allow[enterprise_id].allows(address):
            raise LoginRefused(f"ip {address} is not allowed for this enterprise")
        return self.queues[enterprise_id]

    def allows(self, enterprise_id: str, address: str) -> bool:
        allow = self._allow.get(enterprise_id)
        return allow is not None and allow.allows(address)

    # -- admin ---------------------------------------------------------------------------------

    def get(self, org_id: str, enterprise_id: str) -> Enterprise:
        self.registry.org(org_id)
        ent = self.enterprises.get(enterprise_id)
        if ent is None or ent.orgId != org_id:
            raise NotFound(f"enterprise {enterprise_id!r} not found in organization {org_id!r}")
        return ent

    def _check_products(self, org_id: str, products: list[str]) -> list[str]:
        if not products:
            raise ValidationFailed("an enterprise needs at least one product", field="products")
        for i, pk in enumerate(products):
            p = self.registry.products.get(pk)
            if p is None or p.orgId != org_id:
                raise ValidationFailed(
                    f"product {pk!r} not found in organization {org_id!r}", field=f"products[{i}]"
                )
        return sorted(set(products))

    async def create(self, org_id: str, body: EnterpriseCreate) -> tuple[Enterprise, str]:
        """Create an enterprise; returns it with its secret (shown this once)."""
        self.registry.org(org_id)
        name = check_name(body.name)
        products = self._check_products(org_id, body.products)
        types = check_event_types(body.eventTypes)
        allow = check_allow_list(body.ipAllowList)
        check_limits(body.retentionSeconds, body.maxQueue)
        if body.enterpriseId:
            eid = check_credential(body.enterpriseId, "enterpriseId")
        else:
            eid = new_enterprise_id()
        if eid in self.enterprises:
            raise Conflict(f"enterprise {eid!r} already exists", field="enterpriseId")
        if body.enterpriseSecret:
            secret = check_credential(body.enterpriseSecret, "enterpriseSecret")
        else:
            secret = new_secret()
        ent = Enterprise(
            orgId=org_id,
            enterpriseId=eid,
            name=name,
            products=products,
            eventTypes=types,
            ipAllowList=allow,
            historyEvents=body.historyEvents,
            retentionSeconds=body.retentionSeconds,
            maxQueue=body.maxQueue,
            secretHash=hash_password(secret),
            createdAt=now_ms(),
        )
        # rows a deleted namesake may have left (appends that were under way) go first
        await self.store.push_clear(eid)
        await self.store.insert_objects([(KIND, eid, org_id, _enc.encode(ent))])
        self._cache(ent)
        log.info("enterprise created", extra={"enterprise": eid, "org": org_id})
        return ent, secret

    async def update(self, org_id: str, enterprise_id: str, body: EnterpriseUpdate) -> Enterprise:
        ent = self.get(org_id, enterprise_id)
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = check_name(body.name)
        if body.products is not None:
            changes["products"] = self._check_products(org_id, body.products)
        if body.eventTypes is not None:
            changes["eventTypes"] = check_event_types(body.eventTypes)
        if body.ipAllowList is not None:
            changes["ipAllowList"] = check_allow_list(body.ipAllowList)
        if body.historyEvents is not None:
            changes["historyEvents"] = body.historyEvents
        if body.retentionSeconds is not None:
            changes["retentionSeconds"] = body.retentionSeconds
        if body.maxQueue is not None:
            changes["maxQueue"] = body.maxQueue
        ent = msgspec.structs.replace(ent, **changes)
        check_limits(ent.retentionSeconds, ent.maxQueue)
        await self.store.update_object(KIND, enterprise_id, _enc.encode(ent))
        self._cache(ent)
        self._notify(ent, "updated")
        return ent

    async def reset_secret(
        self, org_id: str, enterprise_id: str, secret: str | None
    ) -> tuple[Enterprise, str]:
        ent = self.get(org_id, enterprise_id)
        secret = check_credential(secret, "enterpriseSecret") if secret else new_secret()
        ent = msgspec.structs.replace(ent, secretHash=hash_password(secret))
        await self.store.update_object(KIND, enterprise_id, _enc.encode(ent))
        self._cache(ent)
        self._notify(ent, "secret")
        return ent, secret

    async def delete(self, org_id: str, enterprise_id: str) -> None:
        ent = self.get(org_id, enterprise_id)
        q = self.queues.pop(enterprise_id, None)
        if q is not None:
            q.close()
            self._ack_queues.discard(q)
        self._notify(ent, "deleted")
        del self.enterprises[enterprise_id]
        self._allow.pop(enterprise_id, None)
        self._types.pop(enterprise_id, None)
        self._reindex()
        await self.store.push_clear(enterprise_id)
        await self.store.delete_object(KIND, enterprise_id)
        log.info("enterprise deleted", extra={"enterprise": enterprise_id, "org": org_id})

    async def list(self, org_id: str, after: str, limit: int) -> list[Enterprise]:
        self.registry.org(org_id)
        docs = await self.store.list_objects(KIND, org_id, after, limit)
        return [_dec.decode(d) for d in docs]

    def stats(self, org_id: str, enterprise_id: str) -> dict[str, int]:
        self.get(org_id, enterprise_id)
        return self.queues[enterprise_id].stats()

    def _notify(self, ent: Enterprise, what: str) -> None:
        for fn in list(self.listeners):
            try:
                fn(ent, what)
            except Exception:
                log.exception("enterprise listener failed")
