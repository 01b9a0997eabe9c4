"""The storage protocol: what the rest of headrace needs from a store.

The registry keeps generic JSON documents (``objects``: orgs, models, products, channels,
...) keyed by kind and key and grouped by scope (the owning organization), plus devices,
which also get a compact integer id used by the time series. An ingest ``WriteBatch`` is
written atomically in one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class DeviceRow:
    id: int
    asset_id: str
    org_id: str
    product_key: str
    device_key: str
    doc: bytes


@dataclass(slots=True)
class WriteBatch:
    """Everything one integration request stores (one atomic write).

    samples: (device id, point name, ts ms, value, quality or None)
    attributes: (device id, name, value, updated_at ms)
    events: (device id, event id, ts ms, outputs JSON bytes)
    """

    source: int = 0  # 0 offline (history), 1 real-time
    samples: list[tuple[int, str, int, Any, int | None]] = field(default_factory=list)
    attributes: list[tuple[int, str, Any, int]] = field(default_factory=list)
    events: list[tuple[int, str, int, bytes]] = field(default_factory=list)
    log: list[tuple[str, int, str, bytes]] = field(default_factory=list)  # channel log records


@dataclass(slots=True)
class Sample:
    point: str
    ts: int
    value: Any
    quality: int | None
    source: int


class Store(Protocol):
    # lifecycle
    def start(self) -> None: ...
    def close(self) -> None: ...

    # registry objects
    async def insert_objects(self, rows: list[tuple[str, str, str, bytes]]) -> None: ...
    async def update_object(self, kind: str, key: str, doc: bytes) -> None: ...
    async def delete_object(self, kind: str, key: str) -> bool: ...
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

    def stats(self) -> dict[str, Any]: ...
