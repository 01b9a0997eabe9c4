"""Push events (docs/protocols.md C.3) from outbound stream records.

The fields of what was stored are derived once, into the outbound stream's records
(``stream.records``: org, product, assetId, source, kind, time, content). A noti event
is a record as an enterprise sees it: ``record_events`` maps one record to its events,
adding what noti needs beyond the record (``mac``, ``group_id``, the fault/alert state):

    measurepoint  ->  device_status_kv, then the attr_fault/attr_alert events of the
                      flagged points that changed in it
    attribute     ->  device_status_kv
    raw           ->  device_status_raw (the record's base64)
    online        ->  device_online (the record's ip); offline -> device_offline

Fault and alert state: the last value (0/1) of every flagged point of every device, with
the ``event_id`` of the current fault; 0->1 draws a new uuid, 1->0 reuses the id of its
1. The state follows the newest data: a sample older than the last one seen for that
point (history backfill) never changes it, as "latest value" is defined by time, not by
arrival. The state is kept in memory and written with the queue rows made from the
records.

Documents are the push lines without ``cmd`` and ``delivery_id`` (spliced in at push
time), encoded once and shared by every enterprise that gets them. A ``device_status_kv``
whose line would pass the 8 KiB a popular client accepts is split into several events
with fewer keys each (C.1: "where the payload allows").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ..proto.noti import OUTBOUND_LINE_TARGET
from ..state.registry import DeviceEntry, Registry
from ..store.base import FaultRow, WriteBatch
from ..stream import records as R

ONLINE: Final = "device_online"
OFFLINE: Final = "device_offline"
FAULT: Final = "attr_fault"
ALERT: Final = "attr_alert"
RAW: Final = "device_status_raw"
KV: Final = "device_status_kv"

# room for '{"cmd":"enterprise_event_push","delivery_id":<id>,' and the newline
KV_DOC_LIMIT: Final = OUTBOUND_LINE_TARGET - 80

_encode = msgspec.json.Encoder().encode


class _Measurepoints(msgspec.Struct):
    """A measurepoint record's content with its values left as JSON."""

    measurepoints: msgspec.Raw = msgspec.Raw(b"{}")


_decode_measurepoints = msgspec.json.Decoder(_Measurepoints).decode


@dataclass(slots=True)
class Event:
    product_key: str
    event_type: str
    doc: bytes  # one JSON object: the push without cmd and delivery_id


@dataclass(slots=True)
class FaultState:
    value: int
    event_id: str
    ts: int  # ms of the newest sample seen for the point


@dataclass(slots=True)
class Derived:
    events: list[Event] = field(default_factory=list)
    faults: list[FaultRow] = field(default_factory=list)  # state changes to store
    # how to take the state changes back if they cannot be stored
    undo: list[tuple[tuple[str, str], FaultState | None, FaultState]] = field(default_factory=list)


Wants = Callable[[str], frozenset[str]]
"""product key -> the event types some enterprise wants for it (for this request)."""


def _seconds(ms: int) -> float:
    return ms / 1000


class Deriver:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.faults: dict[tuple[str, str], FaultState] = {}  # (assetId, point) -> state
        self.macs: dict[int, str] = {}  # device id -> its "mac" attribute

    def load(self, faults: Iterable[FaultRow], macs: Iterable[tuple[int, Any]]) -> None:
        for asset, point, value, event_id, ts in faults:
            self.faults[(asset, point)] = FaultState(value, event_id, ts)
        for dev, value in macs:
            if isinstance(value, str):
                self.macs[dev] = value
            elif isinstance(value, int | float):
                self.macs[dev] = str(value)

    # -- common fields -----------------------------------------------------------------------

    def base(self, entry: DeviceEntry, event_type: str, ts_ms: int) -> dict[str, Any]:
        d = entry.device
        return {
            "event_type": event_type,
            "product_key": d.productKey,
            "did": d.assetId,
            "mac": self.macs.get(entry.id, ""),
            "group_id": d.group,
            "created_at": _seconds(ts_ms),
        }

    def online_doc(self, entry: DeviceEntry, online: bool, ts_ms: int, ip: str) -> bytes:
        if not online:
            return _encode(self.base(entry, OFFLINE, ts_ms))
        body = self.base(entry, ONLINE, ts_ms)
        body.update(ip=ip, country="", region="", city="")
        return _encode(body)

    def _kv(self, entry: DeviceEntry, ts_ms: int, data: dict[str, Any], out: list[Event]) -> None:
        body = self.base(entry, KV, ts_ms)
        body["data"] = data
        doc = _encode(body)
        if len(doc) <= KV_DOC_LIMIT or len(data) < 2:
            out.append(Event(entry.device.productKey, KV, doc))
            return
        items = list(data.items())
        half = len(items) // 2
        self._kv(entry, ts_ms, dict(items[:half]), out)
        self._kv(entry, ts_ms, dict(items[half:]), out)

    def kv_spliced(self, entry: DeviceEntry, ts_ms: int, content: msgspec.Raw) -> bytes | None:
        """The device_status_kv document of a measurepoint record's content (JSON, as the
        stream holds it) with its values spliced in as they are, not decoded and
        encoded again: the same bytes as ``_kv`` (msgspec wrote them; unit-tested).
        None when the document passes KV_DOC_LIMIT (``_kv`` splits it)."""
        data = _decode_measurepoints(content).measurepoints
        head = _encode(self.base(entry, KV, ts_ms))
        doc = b"".join((head[:-1], b',"data":', data, b"}"))
        return doc if len(doc) <= KV_DOC_LIMIT else None

    def remember_macs(self, batch: WriteBatch) -> None:
        """Keep the "mac" attributes of a request that produces no events."""
        for dev, name, value, _ in batch.attributes:
            if name == "mac":
                self.macs[dev] = value if isinstance(value, str) else str(value)

    def flagged(self, product_key: str) -> dict[str, Any]:
        """The fault/alert points of a product's model (by point id)."""
        p = self.registry.products.get(product_key)
        if p is None:
            return {}
        model = self.registry.models.get((p.orgId, p.modelId))
        return model[1].flagged if model is not None else {}

    def record_events(
        self, rec: R.Record, entry: DeviceEntry, w: frozenset[str], out: Derived
    ) -> None:
        """The events of one stream record for the event types ``w`` (some enterprise
        wants them for the record's product and source), into ``out``; fault states
        change for every flagged point whether or not its events are wanted."""
        kind = rec.kind
        content = rec.content
        if kind == R.MEASUREPOINT:
            data = content.get("measurepoints") or {}
            if KV in w:
                self._kv(entry, rec.time, data, out.events)
            flagged = self.flagged(entry.device.productKey)
            if flagged:
                for point, value in data.items():
                    fp = flagged.get(point)
                    if fp is not None:
                        self._fault(entry, fp, value, rec.time, w, out)
        elif kind == R.ATTRIBUTE:
            if KV in w:
                self._kv(entry, rec.time, content.get("attributes") or {}, out.events)
        elif kind == R.RAW:
            if RAW in w:
                body = self.base(entry, RAW, rec.time)
                body["data"] = content.get("raw", "")
                out.events.append(Event(entry.device.productKey, RAW, _encode(body)))
        elif kind == R.ONLINE:
            if ONLINE in w:
                doc = self.online_doc(entry, True, rec.time, content.get("ip", ""))
                out.events.append(Event(entry.device.productKey, ONLINE, doc))
        elif kind == R.OFFLINE and OFFLINE in w:
            doc = self.online_doc(entry, False, rec.time, "")
            out.events.append(Event(entry.device.productKey, OFFLINE, doc))

    def _fault(
        self, entry: DeviceEntry, fp: Any, value: Any, ts: int, w: frozenset[str], out: Derived
    ) -> None:
        key = (entry.device.assetId, fp.id)
        st = self.faults.get(key)
        if st is not None and ts < st.ts:
            return  # older than what we know: backfill never changes the state
        new = 1 if value else 0
        if st is not None and st.value == new:
            st.ts = ts
            return
        if st is None and new == 0:
            self.faults[key] = FaultState(0, "", ts)
            return
        # 0->1: a new fault; 1->0: its recovery, with the same id
        event_id = str(uuid.uuid4()) if new == 1 or st is None or not st.event_id else st.event_id
        state = FaultState(new, event_id, ts)
        out.undo.append(
            (key, None if st is None else FaultState(st.value, st.event_id, st.ts), state)
        )
        self.faults[key] = state
        out.faults.append((key[0], key[1], new, event_id, ts))
        event_type = FAULT if fp.flag == "fault" else ALERT
        if event_type in w:
            body = self.base(entry, event_type, ts)
            body["event_id"] = event_id
            body["data"] = {"attr_name": fp.id, "attr_displayname": fp.name, "value": new}
            out.events.append(Event(entry.device.productKey, event_type, _encode(body)))

    def undo(self, derived: Derived) -> None:
        """The state changes of ``derived`` could not be stored: take them back (unless a
        later request changed the point again)."""
        for key, old, new in reversed(derived.undo):
            if self.faults.get(key) is new:
                if old is None:
                    self.faults.pop(key, None)
                else:
                    self.faults[key] = old
