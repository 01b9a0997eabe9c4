"""Stream records, the filters consumers declare, and building records from what is stored.

A record is one stored request item (the measurepoints of one device at one time, its
attributes, its events, the raw payload it came in) or one derived change (online,
offline, fault, alert, file stored or deleted). It is stored as JSON without ``seq`` and
``at``, which the stream assigns when it commits.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Final, Literal

import msgspec

from ..state.registry import DeviceEntry, Registry
from ..store.base import StreamRow, WriteBatch

# record kinds
MEASUREPOINT: Final = "measurepoint"
ATTRIBUTE: Final = "attribute"
EVENT: Final = "event"
RAW: Final = "raw"
ONLINE: Final = "online"
OFFLINE: Final = "offline"
FAULT: Final = "fault"
ALERT: Final = "alert"
FILE_STORED: Final = "file_stored"
FILE_DELETED: Final = "file_deleted"
KINDS: Final = (
    MEASUREPOINT,
    ATTRIBUTE,
    EVENT,
    RAW,
    ONLINE,
    OFFLINE,
    FAULT,
    ALERT,
    FILE_STORED,
    FILE_DELETED,
)
Kind = Literal[
    "measurepoint",
    "attribute",
    "event",
    "raw",
    "online",
    "offline",
    "fault",
    "alert",
    "file_stored",
    "file_deleted",
]
Source = Literal["realtime", "offline"]
REALTIME: Final = "realtime"
HISTORY: Final = "offline"


class Record(msgspec.Struct, kw_only=True):
    """One record of the outbound stream (headrace's own normalized record).

    ``content`` by kind: measurepoint ``{"measurepoints": {id: value}, "quality"?: {id:
    q}}``; attribute ``{"attributes": {...}}``; event ``{"events": {id: outputs}}``; raw
    ``{"raw": base64}``; online ``{"ip"}``; offline ``{}``; fault/alert ``{"point",
    "name", "value", "eventId"}``; file_stored/file_deleted ``{"fileUri",
    "originalFilename", "fileSize", "md5", "createTime"}``.
    """

    seq: int = 0  # position in the stream: commit order
    at: int = 0  # commit time, ms
    org: str
    product: str
    model: str
    assetId: str
    deviceKey: str
    source: str  # "realtime" | "offline"
    kind: str
    time: int  # the data's own time, ms
    content: dict[str, Any]


class Lean(msgspec.Struct, kw_only=True, gc=False):
    """A record with its ``content`` left as JSON (``msgspec.Raw``): for consumers that
    pass the content on without looking into it."""

    seq: int = 0
    at: int = 0
    org: str
    product: str
    model: str
    assetId: str
    deviceKey: str
    source: str
    kind: str
    time: int
    content: msgspec.Raw


class _Body(msgspec.Struct, kw_only=True):
    """A record as it is written (the stream adds seq and at)."""

    org: str
    product: str
    model: str
    assetId: str
    deviceKey: str
    source: str
    kind: str
    time: int
    content: Any


_encode = msgspec.json.Encoder().encode


def _head(
    org: str, product: str, model: str, asset_id: str, device_key: str, source: str, kind: str
) -> bytes:
    """A record's JSON up to its time's value: ``_splice`` completes it, to the bytes
    ``_encode(_Body(...))`` gives (a test checks)."""
    doc = _encode(
        _Body(
            org=org,
            product=product,
            model=model,
            assetId=asset_id,
            deviceKey=device_key,
            source=source,
            kind=kind,
            time=0,
            content=None,
        )
    )
    return doc[: doc.rindex(b'"time":') + 7]


def _splice(head: bytes, ts: int, content: bytes) -> bytes:
    return b'%b%d,"content":%b}' % (head, ts, content)


def _splice_points(head: bytes, ts: int, points: bytes) -> bytes:
    """A measurepoint record without quality: ``points`` is the JSON of its points."""
    return b'%b%d,"content":{"measurepoints":%b}}' % (head, ts, points)


_POINT_TYPES: dict[tuple[str, ...], type | None] = {}


def _points_type(names: tuple[str, ...]) -> type | None:
    """A struct whose fields are these point names, in order: encoding it gives the JSON
    of ``dict(zip(names, values))`` at less than half the cost (no dict built). None when
    a name repeats (the dict keeps the last value)."""
    try:
        return _POINT_TYPES[names]
    except KeyError:
        pass
    if len(_POINT_TYPES) >= 4096:
        _POINT_TYPES.clear()
    t = None
    if len(set(names)) == len(names):
        fields = [f"f{i}" for i in range(len(names))]
        t = msgspec.defstruct(
            "Points", [(f, object) for f in fields], rename=dict(zip(fields, names, strict=True))
        )
    _POINT_TYPES[names] = t
    return t


_decode = msgspec.json.Decoder(Record).decode


_decode_lean = msgspec.json.Decoder(Lean).decode


def decode(seq: int, at: int, doc: bytes) -> Record:
    r = _decode(doc)
    r.seq = seq
    r.at = at
    return r


def decode_lean(seq: int, at: int, doc: bytes) -> Lean:
    r = _decode_lean(doc)
    r.seq = seq
    r.at = at
    return r


class Filter(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """What a consumer wants; an empty list means every value.

    ``devices`` are assetIds or deviceKeys; ``points`` keeps the measurepoint records
    that carry at least one of these points (a consumer trims the rest itself).
    """

    orgs: list[str] = []
    products: list[str] = []
    models: list[str] = []
    devices: list[str] = []
    sources: list[Source] = []
    kinds: list[Kind] = []
    points: list[str] = []

    def coarse(self, org: str, product: str, model: str, source: str, kind: str) -> bool:
        """Whether records of this shape may match (what decides whether one is written)."""
        return (
            (not self.orgs or org in self.orgs)
            and (not self.products or product in self.products)
            and (not self.models or model in self.models)
            and (not self.sources or source in self.sources)
            and (not self.kinds or kind in self.kinds)
        )

    def match(self, r: Record | Lean) -> bool:
        """Whether the record matches (a ``Lean`` one only when ``points`` is empty)."""
        if not self.coarse(r.org, r.product, r.model, r.source, r.kind):
            return False
        if self.devices and r.assetId not in self.devices and r.deviceKey not in self.devices:
            return False
        if self.points and r.kind == MEASUREPOINT:
            assert isinstance(r, Record)
            mp = r.content.get("measurepoints", {})
            return any(p in mp for p in self.points)
        return True


class Retention(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """How far a consumer may fall behind: older or more than this falls out (counted,
    logged, and the consumer's cursor moves past it). None: no limit of that kind."""

    seconds: float | None = None
    bytes: int | None = None


# -- building records ------------------------------------------------------------------


class Builder:
    """Encodes records of stored requests and derived changes, asking ``wants`` whether
    any consumer may want a record of that shape before building it."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def model_of(self, product_key: str) -> str:
        p = self.registry.products.get(product_key)
        return p.modelId if p is not None else ""

    def batch_rows(
        self,
        batch: WriteBatch,
        devices: Iterable[DeviceEntry],
        raw: bytes | None,
        now: int,
        wants: Any,
    ) -> list[StreamRow]:
        """One record per request item: each measurepoint record of the batch one
        measurepoint record; a device's attributes one record; each event item one
        record; the raw payload one record per device."""
        source = REALTIME if batch.source == 1 else HISTORY
        by_id = {e.id: e for e in devices}
        models: dict[str, str] = {}
        heads: dict[tuple[int, str], tuple[str, bytes] | None] = {}
        out: list[StreamRow] = []

        def head(dev: int, kind: str) -> tuple[str, bytes] | None:
            """The org and the JSON of a record of this device and kind up to its time
            (None: no consumer may want it), once per batch."""
            key = (dev, kind)
            try:
                return heads[key]
            except KeyError:
                pass
            h = None
            entry = by_id.get(dev)
            if entry is not None:
                d = entry.device
                model = models.get(d.productKey)
                if model is None:
                    model = models[d.productKey] = self.model_of(d.productKey)
                if wants(d.orgId, d.productKey, model, source, kind):
                    h = (
                        d.orgId,
                        _head(d.orgId, d.productKey, model, d.assetId, d.deviceKey, source, kind),
                    )
            heads[key] = h
            return h

        def add(h: tuple[str, bytes], kind: str, ts: int, content: Any) -> None:
            out.append((h[0], kind, _splice(h[1], ts, _encode(content))))

        if raw is not None:
            encoded = base64.b64encode(raw).decode("ascii")
            for dev in by_id:
                h = head(dev, RAW)
                if h is not None:
                    add(h, RAW, now, {"raw": encoded})
        last_names: tuple[str, ...] | None = None
        t: type | None = None
        for dev, ts, names, values, quals in batch.measurepoints:
            h = head(dev, MEASUREPOINT)
            if h is None:
                continue
            quality = None
            if quals is not None:
                quality = {p: q for p, q in zip(names, quals, strict=True) if q is not None}
            if not quality:
                if names is not last_names:  # the records of a request share their names
                    last_names, t = names, _points_type(names)
                if t is not None:  # the dict's JSON, without building the dict
                    out.append((h[0], MEASUREPOINT, _splice_points(h[1], ts, _encode(t(*values)))))
                    continue
            content: dict[str, Any] = {"measurepoints": dict(zip(names, values, strict=True))}
            if quality:
                content["quality"] = quality
            add(h, MEASUREPOINT, ts, content)
        attrs: dict[int, tuple[int, dict[str, Any]]] = {}
        for dev, name, value, updated_at in batch.attributes:
            slot = attrs.get(dev)
            if slot is None:
                slot = attrs[dev] = (updated_at, {})
            slot[1][name] = value
        for dev, (updated_at, data) in attrs.items():
            h = head(dev, ATTRIBUTE)
            if h is not None:
                add(h, ATTRIBUTE, updated_at, {"attributes": data})
        events = batch.events
        i, n = 0, len(events)
        while i < n:
            dev, _e, ts, _o = events[i]
            j = i + 1
            while j < n and events[j][0] == dev and events[j][2] == ts:
                j += 1
            h = head(dev, EVENT)
            if h is not None:
                add(h, EVENT, ts, {"events": {e: msgspec.Raw(o) for _d, e, _t, o in events[i:j]}})
            i = j
        return out

    def change_row(
        self,
        org: str,
        product: str,
        asset_id: str,
        device_key: str,
        kind: str,
        ts: int,
        content: dict[str, Any],
        wants: Any,
        source: str = REALTIME,
    ) -> StreamRow | None:
        """A derived change (online, offline, fault, alert, file), or None when no
        consumer may want it."""
        model = self.model_of(product)
        if not wants(org, product, model, source, kind):
            return None
        head = _head(org, product, model, asset_id, device_key, source, kind)
        return (org, kind, _splice(head, ts, _encode(content)))
