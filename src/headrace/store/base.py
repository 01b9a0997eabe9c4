"""The storage protocol: what the rest of headrace needs from a store.

The registry keeps generic JSON documents (``objects``: orgs, models, products, channels,
...) keyed by kind and key and grouped by scope (the owning organization), plus devices,
which also get a compact integer id used by the time series. An ingest ``WriteBatch`` is
written atomically in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec


@dataclass(slots=True)
class DeviceRow:
    id: int
    asset_id: str
    org_id: str
    product_key: str
    device_key: str
    doc: bytes


StreamRow = tuple[str, str, bytes]
"""An outbound stream record to append: (orgId, kind, record JSON without seq and at)."""


PointRecord = tuple[int, int, tuple[str, ...], tuple[Any, ...], tuple[int | None, ...] | None]
"""The measurepoints of one request item: (device id, ts ms, point names, values,
qualities or None when no point of it has one), names and values (and qualities) of equal
length, each name once. The items of a model that carry the same points share one names
tuple (the compiled decoder's), so the store transposes a device's records into columns
with ``zip(*values)`` in C."""


@dataclass(slots=True)
class WriteBatch:
    """Everything one integration request stores (one atomic write).

    measurepoints: one ``PointRecord`` per item, in request order (a later value of the
    same (device, point, time) replaces an earlier one)
    attributes: (device id, name, value, updated_at ms)
    events: (device id, event id, ts ms, outputs JSON bytes)
    """

    source: int = 0  # 0 offline (history), 1 real-time
    measurepoints: list[PointRecord] = field(default_factory=list)
    attributes: list[tuple[int, str, Any, int]] = field(default_factory=list)
    events: list[tuple[int, str, int, bytes]] = field(default_factory=list)
    log: list[tuple[str, int, str, bytes]] = field(default_factory=list)  # channel log records
    # outbound stream records of this request, appended in the same transaction
    stream: list[StreamRow] = field(default_factory=list)


def point_records(samples: Iterable[tuple[int, str, int, Any, int | None]]) -> list[PointRecord]:
    """Sample tuples (device id, point, ts ms, value, quality or None) as records: one per
    stretch of consecutive samples of one (device, time) (for callers that have samples
    one by one: tests, benches). A point repeated in a stretch starts a new record, so
    the later value still replaces the earlier one."""
    out: list[PointRecord] = []
    names: list[str] = []
    values: list[Any] = []
    quals: list[int | None] = []
    key: tuple[int, int] | None = None

    def close() -> None:
        if key is not None:
            q = tuple(quals) if any(x is not None for x in quals) else None
            out.append((key[0], key[1], tuple(names), tuple(values), q))
        names.clear()
        values.clear()
        quals.clear()

    for d, p, t, v, q in samples:
        if (d, t) != key or p in names:
            close()
            key = (d, t)
        names.append(p)
        values.append(v)
        quals.append(q)
    close()
    return out


class Sample(msgspec.Struct):
    """One stored sample (a msgspec Struct: built in C, a read makes many of them)."""

    point: str
    ts: int
    value: Any
    quality: int | None
    source: int


QueueRow = tuple[str, int, int, bytes]
"""A push queue row: (enterprise id, seq, enqueued at ms, event JSON without cmd/delivery_id)."""

FaultRow = tuple[str, str, int, str, int]
"""The last state of a flagged point: (assetId, point, value 0/1, event_id, ts ms)."""


@dataclass(slots=True)
class QueueInfo:
    """What a push queue holds at startup."""

    count: int
    first_seq: int
    last_seq: int


class PushStore(Protocol):
    """Durable enterprise push queues (one per enterprise, ordered by seq) and fault state.

    Seqs are assigned by the caller, increasing per enterprise; writes are committed in
    the order they are called. ``push_write`` appends rows, stores fault states and
    deletes acked seq ranges (after the appends) in one write, returning how many rows
    each delete removed; ``cursor`` (name, position): the stream cursor of the consumer
    the rows come from, saved in the same transaction.
    """

    async def push_write(
        self,
        rows: list[QueueRow],
        faults: list[FaultRow],
        deletes: list[tuple[str, list[tuple[int, int]]]],
        *,
        stream: list[StreamRow] | None = None,
        cursor: tuple[str, int] | None = None,
    ) -> list[int]: ...
    async def push_read(
        self, enterprise: str, after: int, limit: int, max_bytes: int
    ) -> list[tuple[int, int, bytes]]: ...
    async def push_delete(self, enterprise: str, ranges: list[tuple[int, int]]) -> int: ...
    async def push_expire(
        self, enterprise: str, after: int, before_ts: int | None, count: int
    ) -> int: ...
    async def push_clear(self, enterprise: str) -> int: ...
    def push_load(self) -> tuple[dict[str, QueueInfo], list[FaultRow]]: ...
    def attribute_values(self, name: str) -> list[tuple[int, Any]]: ...


class StreamStore(Protocol):
    """The outbound stream (``stream.Stream``): records in commit order, consumer cursors.

    Records are appended by the writes that carry them (``WriteBatch.stream``, the
    ``stream`` argument of object writes) or on their own (``stream_append``); seqs are
    assigned in commit order. ``stream_listener`` is called in the writer thread after a
    commit that appended records: ``(head seq, [(seq, at ms, doc), ...])``.
    """

    stream_listener: Callable[[int, list[tuple[int, int, bytes]]], None] | None

    def stream_head(self) -> int: ...
    async def stream_append(self, rows: list[StreamRow]) -> None: ...
    async def stream_read(
        self, after: int, limit: int, orgs: Collection[str] | None = None
    ) -> list[tuple[int, int, bytes]]: ...
    def stream_source(self) -> str: ...
    async def stream_count(self, after: int, through: int) -> int: ...
    async def stream_prune(self, through: int) -> int: ...
    async def stream_save_cursors(self, cursors: list[tuple[str, int]]) -> None: ...
    async def stream_drop_cursor(self, name: str) -> None: ...
    def stream_load(self) -> tuple[dict[str, int], list[tuple[int, int, int, int, int]]]: ...


AuditRow = tuple[int, int, str | None, str | None, bytes]
"""An audit record: (id, ts ms, user or None for the admin token, org or None, doc JSON)."""

LogRow = tuple[int, str, int, str, bytes]
"""A committed message-log record: (id, channel, ts ms, kind, doc JSON)."""


class AuditStore(Protocol):
    """The audit log: append-only, read newest first (``orgs`` None: all orgs)."""

    async def audit_append(self, rows: list[tuple[int, str | None, str | None, bytes]]) -> int: ...
    async def audit_query(
        self,
        orgs: list[str] | None,
        user: str | None,
        start: int,
        end: int,
        limit: int,
        before_id: int | None,
    ) -> list[AuditRow]: ...


class Store(PushStore, StreamStore, AuditStore, Protocol):
    # lifecycle
    def start(self) -> None: ...
    def close(self) -> None: ...

    # registry objects
    async def insert_objects(
        self, rows: list[tuple[str, str, str, bytes]], *, stream: list[StreamRow] | None = None
    ) -> None: ...
    async def update_object(self, kind: str, key: str, doc: bytes) -> None: ...
    async def delete_object(
        self, kind: str, key: str, *, stream: list[StreamRow] | None = None
    ) -> bool: ...
    async def list_objects(self, kind: str, scope: str, after: str, limit: int) -> list[bytes]: ...
    def load_objects(self, kind: str) -> list[bytes]: ...

    # devices
    async def insert_devices(self, rows: list[DeviceRow]) -> list[int]: ...
    async def update_device(self, device_id: int, doc: bytes) -> None: ...
    async def delete_device(self, device_id: int) -> None: ...
    async def list_devices(self, product_key: str, after: str, limit: int) -> list[bytes]: ...
    def load_devices(self) -> list[DeviceRow]: ...

    # ingest and queries
    async def write_batch(self, batch: WriteBatch) -> None: ...
    async def query_samples(
        self,
        device: int,
        points: list[str],
        start: int,
        end: int,
        limit: int,
        desc: bool,
        after: tuple[int, str] | None,
    ) -> list[Sample]: ...
    async def aggregate(
        self,
        device: int,
        points: list[str],
        start: int,
        end: int,
        interval: int,
        fn: str,
    ) -> dict[str, list[tuple[int, Any]]]: ...
    async def latest(self, device: int, points: list[str]) -> dict[str, Sample]: ...
    async def latest_many(
        self, devices: list[int], points: list[str] | None
    ) -> dict[int, dict[str, Sample]]: ...
    async def prune_before(self, device: int, points: list[str] | None, before_ts: int) -> int: ...
    async def compact(self) -> int: ...
    async def fold(self, everything: bool = False) -> int: ...
    async def attributes(self, device: int) -> dict[str, tuple[Any, int]]: ...
    async def events(
        self,
        device: int,
        start: int,
        end: int,
        limit: int,
    ) -> list[tuple[str, int, bytes]]: ...
    async def append_log(self, records: list[tuple[str, int, str, bytes]]) -> None: ...
    async def query_log(
        self,
        channel: str,
        kinds: list[str],
        start: int,
        end: int,
        limit: int,
        before_id: int | None,
    ) -> list[tuple[int, int, str, bytes]]: ...
    async def prune_log(self, older_than: int) -> int: ...

    # called on the event loop with the records of each committed write, ids assigned
    log_listeners: list[Callable[[list[LogRow]], None]]

    def stats(self) -> dict[str, Any]: ...
