"""Online state of devices, driven by real-time data (docs/protocols.md C.3).

A device goes online with its first real-time data after being offline (or unknown) and
offline when no real-time data came for its product's ``inactivityTimeout``. History
(offline integration) never changes the state.

Kept in the store:
- ``device_online`` (key assetId, scope orgId): the current state of each device seen;
- ``device_online_change`` (key ``{assetId}/{ts:013d}-{seq}``, scope ``{orgId}/{assetId}``):
  every change, in time order.

The last-seen time of online devices is saved every ``online.checkpoint_interval``
seconds so that after a restart a device whose data stopped while the hub was down is
marked offline at the time it really went quiet.

Subscribers (the push service) register a listener, called after the change has been
committed to the store::

    tracker.listeners.append(fn)    # fn(entry: DeviceEntry, online: bool, ts_ms: int, ip: str)

``fn`` may be a plain function or return an awaitable (which is awaited). Listener
errors are logged and never affect ingestion.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from ..errors import Conflict, NotFound
from ..store.base import Store, StreamRow
from ..tasks import cancel, every
from .registry import DeviceEntry, Registry

if TYPE_CHECKING:  # the pipeline imports the registry: no import cycle at run time
    from ..ingest.pipeline import Origin, Result

log = logging.getLogger("headrace.online")

KIND_STATE = "device_online"
KIND_CHANGE = "device_online_change"

OnlineListener = Callable[[DeviceEntry, bool, int, str], Awaitable[None] | None]


class OnlineState(msgspec.Struct, kw_only=True):
    orgId: str
    productKey: str
    deviceKey: str
    assetId: str
    online: bool
    since: int  # ms of the last change
    lastSeen: int  # ms of the last real-time data (as of the last save)
    ip: str = ""


class OnlineChange(msgspec.Struct, kw_only=True):
    id: str  # "{assetId}/{ts:013d}-{seq}": sorts by time; the paging cursor
    orgId: str
    productKey: str
    deviceKey: str
    assetId: str
    online: bool
    ts: int
    ip: str = ""


_enc = msgspec.json.Encoder()
_state_dec = msgspec.json.Decoder(OnlineState)
_change_dec = msgspec.json.Decoder(OnlineChange)


@dataclass(slots=True)
class _Live:
    entry: DeviceEntry
    online: bool
    since: int
    last_seen: int
    ip: str
    stored: bool  # a device_online object exists
    scheduled: bool = False  # has an entry in the deadline heap
    saved_seen: int = 0  # last_seen as last written


class OnlineTracker:
    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        sweep_interval: float = 0.5,
        checkpoint_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        self.registry = registry
        self.store = store
        self.sweep_interval = sweep_interval
        self.checkpoint_interval = checkpoint_interval
        self.clock = clock
        self.listeners: list[OnlineListener] = []
        # the outbound stream's records of a change, written with it; connected in app.py
        self.outbound: list[Callable[[DeviceEntry, bool, int, str], list[StreamRow]]] = []
        self._live: dict[str, _Live] = {}  # assetId -> state
        self._heap: list[tuple[int, str]] = []  # (deadline ms, assetId)
        # unique across restarts too: starts at the current time in microseconds
        self._seq = itertools.count(int(time.time() * 1_000_000))
        self._tasks: list[asyncio.Task[None]] = []

    def _ms(self) -> int:
        return int(self.clock() * 1000)

    def _timeout_ms(self, entry: DeviceEntry) -> int:
        p = self.registry.products.get(entry.device.productKey)
        return (p.inactivityTimeout if p is not None else 300) * 1000

    # -- lifecycle -------------------------------------------------------------------

    def load(self) -> None:
        for doc in self.store.load_objects(KIND_STATE):
            st = _state_dec.decode(doc)
            entry = self.registry.by_asset.get(st.assetId)
            if entry is None:
                continue
            live = _Live(entry, st.online, st.since, st.lastSeen, st.ip, True)
            live.saved_seen = st.lastSeen
            self._live[st.assetId] = live
            if st.online:
                self._schedule(live)

    async def start(self) -> None:
        self._tasks = [
            every(self.sweep_interval, self.sweep, "online sweep", log),
            every(self.checkpoint_interval, self.checkpoint, "saving last-seen times", log),
        ]

    async def stop(self) -> None:
        await cancel(*self._tasks)
        self._tasks = []
        try:
            await self.checkpoint()
        except Exception:
            log.exception("saving last-seen times failed")

    # -- queries ---------------------------------------------------------------------

    def state(self, entry: DeviceEntry) -> OnlineState | None:
        live = self._live.get(entry.device.assetId)
        if live is None or live.entry.id != entry.id:
            return None
        return self._state_of(live)

    def is_online(self, entry: DeviceEntry) -> bool:
        live = self._live.get(entry.device.assetId)
        return live is not None and live.entry.id == entry.id and live.online

    async def states(
        self, org_id: str, after: str, limit: int, online: bool | None = None
    ) -> list[OnlineState]:
        """States of an organization's devices that ever sent real-time data, by assetId."""
        out: list[OnlineState] = []
        cursor = after
        while len(out) < limit:
            docs = await self.store.list_objects(KIND_STATE, org_id, cursor, limit)
            if not docs:
                break
            for doc in docs:
                st = _state_dec.decode(doc)
                live = self._live.get(st.assetId)
                if live is not None:
                    st = self._state_of(live)
                if online is None or st.online == online:
                    out.append(st)
            cursor = _state_dec.decode(docs[-1]).assetId
            if len(docs) < limit:
                break
        return out[:limit]

    async def changes(
        self, entry: DeviceEntry, start: int, end: int, limit: int, after: str = ""
    ) -> list[OnlineChange]:
        """Changes of one device in [start, end) ms, oldest first; page with ``after``
        (the last change's ``id``)."""
        d = entry.device
        cursor = f"{d.assetId}/{max(start, 0):013d}"  # sorts before every key at ts=start
        if after > cursor:
            cursor = after
        docs = await self.store.list_objects(KIND_CHANGE, f"{d.orgId}/{d.assetId}", cursor, limit)
        out = []
        for doc in docs:
            ch = _change_dec.decode(doc)
            if ch.ts >= end:
                break
            out.append(ch)
        return out

    def _state_of(self, live: _Live) -> OnlineState:
        d = live.entry.device
        return OnlineState(
            orgId=d.orgId,
            productKey=d.productKey,
            deviceKey=d.deviceKey,
            assetId=d.assetId,
            online=live.online,
            since=live.since,
            lastSeen=live.last_seen,
            ip=live.ip,
        )

    # -- input -----------------------------------------------------------------------

    def on_stored(self, result: Result, origin: Origin) -> Awaitable[None] | None:
        """The pipeline's hook: a committed request of real-time data (from any edge)
        marks its devices online; history never changes online state. Nothing to wait
        for unless a device came online."""
        batch = result.batch
        if batch is None or batch.source != 1 or not result.devices:
            return None
        return self._touch(result.devices, origin.ip)

    async def seen(self, entries: Iterable[DeviceEntry], ip: str = "") -> None:
        """Real-time data was stored for these devices (from ``ip``)."""
        pending = self._touch(entries, ip)
        if pending is not None:
            await pending

    def _touch(self, entries: Iterable[DeviceEntry], ip: str) -> Awaitable[None] | None:
        now = self._ms()
        changed: list[_Live] = []
        for entry in entries:
            aid = entry.device.assetId
            live = self._live.get(aid)
            if live is not None and live.entry.id == entry.id:
                live.last_seen = now
                if ip:
                    live.ip = ip
                if live.online:
                    continue
                live.online = True
                live.since = now
            else:
                live = _Live(entry, True, now, now, ip, live is not None)
                self._live[aid] = live
            self._schedule(live)
            changed.append(live)
        return self._commit(changed, now) if changed else None

    async def report(
        self, entry: DeviceEntry, online: bool, ip: str = "", ts: int | None = None
    ) -> bool:
        """An explicit status report; returns whether the state changed."""
        now = self._ms() if ts is None else ts
        aid = entry.device.assetId
        live = self._live.get(aid)
        if live is not None and live.entry.id == entry.id:
            if ip:
                live.ip = ip
            if online:
                live.last_seen = max(live.last_seen, now)
            if live.online == online:
                return False
            live.online = online
            live.since = now
        else:
            if not online:
                return False  # unknown devices are offline already
            live = _Live(entry, True, now, now, ip, live is not None)
            self._live[aid] = live
        if online:
            self._schedule(live)
        await self._commit([live], now)
        return True

    # -- offline detection -----------------------------------------------------------

    def _schedule(self, live: _Live) -> None:
        if not live.scheduled:
            live.scheduled = True
            deadline = live.last_seen + self._timeout_ms(live.entry)
            heapq.heappush(self._heap, (deadline, live.entry.device.assetId))

    async def sweep(self) -> int:
        """Mark offline every online device quiet for its timeout; returns how many."""
        now = self._ms()
        gone: list[_Live] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, aid = heapq.heappop(heap)
            live = self._live.get(aid)
            if live is None:
                continue
            live.scheduled = False
            if not live.online:
                continue
            if self.registry.by_asset.get(aid) is not live.entry:  # device deleted
                self._live.pop(aid, None)
                await self.store.delete_object(KIND_STATE, aid)
                continue
            due = live.last_seen + self._timeout_ms(live.entry)
            if due > now:
                self._schedule(live)
                continue
            live.online = False
            live.since = due
            gone.append(live)
        if gone:
            # each went offline when its timeout ran out, not when the sweep noticed
            await self._commit(gone, None)
        return len(gone)

    async def checkpoint(self) -> int:
        """Save the last-seen time of online devices that received data since the last save."""
        todo = [
            live
            for live in self._live.values()
            if live.online and live.stored and live.last_seen != live.saved_seen
        ]
        if todo:
            await asyncio.gather(
                *(
                    self.store.update_object(
                        KIND_STATE, live.entry.device.assetId, _enc.encode(self._state_of(live))
                    )
                    for live in todo
                ),
                return_exceptions=True,
            )
            for live in todo:
                live.saved_seen = live.last_seen
        return len(todo)

    # -- persistence and notification ------------------------------------------------

    async def _commit(self, lives: list[_Live], ts: int | None) -> None:
        inserts: list[tuple[str, str, str, bytes]] = []
        updates: list[tuple[str, bytes]] = []
        events: list[tuple[_Live, bool, int, str]] = []
        for live in lives:
            d = live.entry.device
            when = live.since if ts is None else ts
            key = f"{d.assetId}/{when:013d}-{next(self._seq):016d}"
            change = OnlineChange(
                id=key,
                orgId=d.orgId,
                productKey=d.productKey,
                deviceKey=d.deviceKey,
                assetId=d.assetId,
                online=live.online,
                ts=when,
                ip=live.ip,
            )
            inserts.append(
                (
                    KIND_CHANGE,
                    key,
                    f"{d.orgId}/{d.assetId}",
                    _enc.encode(change),
                )
            )
            state = _enc.encode(self._state_of(live))
            if live.stored:
                updates.append((d.assetId, state))
            else:
                inserts.append((KIND_STATE, d.assetId, d.orgId, state))
            live.saved_seen = live.last_seen
            events.append((live, live.online, when, live.ip))
        stream = [
            row
            for fn in self.outbound
            for _live, online, when, ip in events
            for row in fn(_live.entry, online, when, ip)
        ]
        try:
            await self._write(inserts, updates, stream)
            for live in lives:
                live.stored = True
        except Exception:
            log.exception("saving online state changes failed")
        for live, online, when, ip in events:
            await self._notify(live.entry, online, when, ip)

    async def _write(
        self,
        inserts: list[tuple[str, str, str, bytes]],
        updates: list[tuple[str, bytes]],
        stream: list[StreamRow],
    ) -> None:
        try:
            # the changes and their stream records in one transaction
            await self.store.insert_objects(inserts, stream=stream)
        except Conflict:
            if stream:
                await self.store.stream_append(stream)
            # a state object left by an earlier life of this device: insert one by one
            for row in inserts:
                try:
                    await self.store.insert_objects([row])
                except Conflict:
                    if row[0] == KIND_STATE:
                        await self.store.update_object(KIND_STATE, row[1], row[3])
        for aid, doc in updates:
            try:
                await self.store.update_object(KIND_STATE, aid, doc)
            except NotFound:
                await self.store.insert_objects(
                    [(KIND_STATE, aid, msgspec.json.decode(doc)["orgId"], doc)]
                )

    async def _notify(self, entry: DeviceEntry, online: bool, ts: int, ip: str) -> None:
        for fn in list(self.listeners):
            try:
                r = fn(entry, online, ts, ip)
                if r is not None:
                    await r
            except Exception:
                log.exception("online listener failed")
