"""Deleted latest values (``POST /tsdb-service/v2.1/latest?action=delete``).

EnOS deletes the latest value of a point and keeps its history. The store's ``latest``
row is the sample with the highest timestamp, and the storage protocol has no way to
remove it (the store belongs to another part of the tree), so a delete records a mark
instead: per device and point, the timestamp of the latest value that was deleted. The
TSDB API's latest reads hide a latest sample whose timestamp is at or below its mark;
the next sample with a later timestamp shows again, as after a delete in EnOS. History
reads are not affected.

Store objects: ``latest_mark`` (key assetId, scope orgId): ``{point: ts}``.
"""

from __future__ import annotations

import msgspec

from ..store.base import Store

KIND_MARK = "latest_mark"
_enc = msgspec.json.Encoder()


class LatestMarks:
    def __init__(self, store: Store):
        self.store = store
        self.marks: dict[str, dict[str, int]] = {}  # assetId -> point -> ts deleted

    def load(self) -> None:
        for doc in self.store.load_objects(KIND_MARK):
            d = msgspec.json.decode(doc)
            self.marks[d["assetId"]] = {k: int(v) for k, v in d["points"].items()}

    def hidden(self, asset_id: str, point: str, ts: int) -> bool:
        m = self.marks.get(asset_id)
        return m is not None and point in m and ts <= m[point]

    async def mark(self, org_id: str, asset_id: str, points: dict[str, int]) -> None:
        """Hide the latest values of ``points`` (point -> ts of the latest value)."""
        if not points:
            return
        old = self.marks.get(asset_id)
        merged = {**(old or {}), **points}
        doc = _enc.encode({"assetId": asset_id, "points": merged})
        if old is None:
            await self.store.insert_objects([(KIND_MARK, asset_id, org_id, doc)])
        else:
            await self.store.update_object(KIND_MARK, asset_id, doc)
        self.marks[asset_id] = merged
