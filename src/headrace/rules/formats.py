"""How a rule's records look on the wire: the EnOS envelope, EnOS per-point records, or
headrace's own record (docs/rules.md, docs/protocols.md D.2).

``messages`` turns one record (or a transform's output for it) into the messages a sink
sends: ``Message(topic, key, value)``, the topic and key only for Kafka.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ..stream import Record
from ..stream.records import Lean

_encode = msgspec.json.Encoder().encode

# D.2: EnOS's per-organization topics; events use EnOS's event topic with no org suffix
TOPIC_MEASUREPOINTS: Final = "MEASURE_POINT_ORIGIN_{orgId}"
TOPIC_MEASUREPOINTS_OFFLINE: Final = "MEASURE_POINT_ORIGIN_OFFLINE_{orgId}"
TOPIC_ATTRIBUTES: Final = "ATTRIBUTE_ORIGIN_{orgId}"
TOPIC_ATTRIBUTES_OFFLINE: Final = "ATTRIBUTE_ORIGIN_OFFLINE_{orgId}"
TOPIC_EVENTS: Final = "REALTIME_MODEL_EVENT_TOPIC"

_ITEM_KEY = {"measurepoint": "measurepoints", "attribute": "attributes", "event": "events"}


class Message(msgspec.Struct, gc=False):
    topic: str
    key: bytes | None
    value: bytes
    seq: int  # the record it came from
    at: int  # the record's commit time, ms


class _Items(msgspec.Struct):
    """The content of a measurepoint, attribute or event record, its values left as
    JSON (qualities are skipped: EnOS's envelope has none)."""

    measurepoints: msgspec.Raw = msgspec.Raw(b"")
    attributes: msgspec.Raw = msgspec.Raw(b"")
    events: msgspec.Raw = msgspec.Raw(b"")


_decode_items = msgspec.json.Decoder(_Items).decode
# the envelope's item key of each kind, as it is joined in
_ENVELOPE_ITEMS = {
    "measurepoint": b',"measurepoints":',
    "attribute": b',"attributes":',
    "event": b',"events":',
}
# the content of a record of each kind as the stream's builder writes it, up to the item
_CONTENT_HEADS = {
    "measurepoint": b'{"measurepoints":',
    "attribute": b'{"attributes":',
    "event": b'{"events":',
}


def enos_item(kind: str, content: bytes) -> bytes:
    """The JSON of a record's item (its measurepoints, attributes or events) from the
    record's content JSON: cut out when the content is that item alone (as the builder
    writes it), else decoded (a ``quality`` beside it is skipped: EnOS's envelope has
    none). KeyError for a kind the envelope cannot carry or a content without its item."""
    head = _CONTENT_HEADS[kind]
    if content.startswith(head) and b'"quality"' not in content:
        return content[len(head) : -1]
    item = getattr(_decode_items(content), _ITEM_KEY[kind])
    if not item:
        raise KeyError(_ITEM_KEY[kind])
    return bytes(item)


def enos_topic(r: Record) -> str:
    offline = r.source == "offline"
    if r.kind == "measurepoint":
        t = TOPIC_MEASUREPOINTS_OFFLINE if offline else TOPIC_MEASUREPOINTS
    elif r.kind == "attribute":
        t = TOPIC_ATTRIBUTES_OFFLINE if offline else TOPIC_ATTRIBUTES
    else:
        t = TOPIC_EVENTS
    return t.format(orgId=r.org)


def fields(r: Record, point: str = "") -> dict[str, str]:
    """What topic and key templates may name."""
    return {
        "orgId": r.org,
        "productKey": r.product,
        "modelId": r.model,
        "assetId": r.assetId,
        "deviceKey": r.deviceKey,
        "source": r.source,
        "kind": r.kind,
        "pointId": point,
    }


def enos_envelope(r: Record) -> dict[str, Any]:
    item_key = _ITEM_KEY[r.kind]
    return {
        "orgId": r.org,
        "modelId": r.model,
        "modelIdPath": f"/{r.model}",
        "payload": [{"assetId": r.assetId, "time": r.time, item_key: r.content[item_key]}],
    }


def enos_points(r: Record) -> Iterator[tuple[str, dict[str, Any]]]:
    quality = r.content.get("quality", {})
    for point, value in r.content.get("measurepoints", {}).items():
        yield (
            point,
            {
                "orgId": r.org,
                "modelId": r.model,
                "modelIdPath": f"/{r.model}",
                "assetId": r.assetId,
                "pointId": point,
                "time": r.time,
                "value": value,
                "quality": quality.get(point),
                "attr": {},
            },
        )


def headrace_record(r: Record) -> bytes:
    return _encode(r)


class Formatter:
    """One rule's way from records to messages."""

    def __init__(
        self, fmt: str, topic: str | None, key: str, points: list[str] | None = None
    ) -> None:
        self.fmt = fmt
        self.topic = topic
        self.key = key
        self.points = set(points) if points else None
        self._key_is_asset = key == "{assetId}"
        # topics that depend on the organization, source and kind only are cached
        names = {n for _l, n, _s, _c in string.Formatter().parse(topic or "") if n}
        self._topic_cacheable = names <= {"orgId", "source", "kind"}
        self._topics: dict[tuple[str, str, str], str] = {}
        self._heads: dict[tuple[str, str], bytes] = {}
        self._assets: dict[str, bytes] = {}

    def trim(self, r: Record) -> Record:
        """Keep only the selected points of a measurepoint record."""
        if self.points is None or r.kind != "measurepoint":
            return r
        mp = r.content.get("measurepoints", {})
        content = dict(r.content)
        content["measurepoints"] = {p: v for p, v in mp.items() if p in self.points}
        if "quality" in content:
            content["quality"] = {p: q for p, q in content["quality"].items() if p in self.points}
        return msgspec.structs.replace(r, content=content)

    def _topic(self, r: Record, point: str = "") -> str:
        if self._topic_cacheable:
            k = (r.org, r.source, r.kind)
            t = self._topics.get(k)
            if t is None:
                t = self._topics[k] = (
                    enos_topic(r) if self.topic is None else self.topic.format_map(fields(r))
                )
            return t
        assert self.topic is not None
        return self.topic.format_map(fields(r, point))

    def _key(self, r: Record, point: str = "") -> bytes:
        if self._key_is_asset:
            return r.assetId.encode()
        return self.key.format_map(fields(r, point)).encode()

    @property
    def lean(self) -> bool:
        """Whether ``lean_messages`` can format this rule's records."""
        return self.fmt in ("enos", "headrace") and self.points is None

    def lean_messages(self, r: Lean, out: list[Message]) -> None:
        """``messages`` for a record whose content is still JSON: spliced, not rebuilt
        (the same bytes as ``messages`` makes)."""
        failed: list[tuple[Lean, str]] = []
        self.lean_batch([r], out, failed)
        if failed:
            raise ValueError(failed[0][1])

    def lean_batch(
        self, records: list[Lean], out: list[Message], failed: list[tuple[Lean, str]]
    ) -> None:
        """``lean_messages`` for a list of records; a record the format cannot carry goes
        to ``failed`` with the error."""
        topic_of = self._topic
        key_is_asset = self._key_is_asset
        key_of = self._key
        if self.fmt == "headrace":
            for r in records:
                try:
                    key = r.assetId.encode() if key_is_asset else key_of(r)  # type: ignore[arg-type]
                    out.append(Message(topic_of(r), key, _encode(r), r.seq, r.at))  # type: ignore[arg-type]
                except Exception as e:
                    failed.append((r, f"{type(e).__name__}: {e}"))
            return
        self.enos_batch(records, out, failed)  # enos: the item spliced into the envelope

    def enos_batch(
        self, records: list[Lean], out: list[Message], failed: list[tuple[Lean, str]]
    ) -> None:
        """The ``enos`` messages of a page of lean records: the
        envelope's head per (organization, model) and each asset's JSON are made once
        and reused, the item's JSON spliced in (the same bytes as ``messages`` makes);
        a record the format cannot carry goes to ``failed`` with the error."""
        topic_of = self._topic
        key_is_asset = self._key_is_asset
        key_of = self._key
        heads = self._heads
        assets = self._assets
        if len(assets) > 100_000:
            assets.clear()
        items = _ENVELOPE_ITEMS
        for r in records:
            try:
                kind = r.kind
                ik = items.get(kind)
                if ik is None:
                    raise KeyError(kind)
                item = enos_item(kind, bytes(r.content))
                head = heads.get((r.org, r.model))
                if head is None:
                    head = self._head(r.org, r.model)
                asset = assets.get(r.assetId)
                if asset is None:
                    asset = assets[r.assetId] = _encode(r.assetId)
                value = b'%b%b,"time":%d%b%b}]}' % (head, asset, r.time, ik, item)
                key = r.assetId.encode() if key_is_asset else key_of(r)  # type: ignore[arg-type]
                out.append(Message(topic_of(r), key, value, r.seq, r.at))  # type: ignore[arg-type]
            except Exception as e:
                failed.append((r, f"{type(e).__name__}: {e}"))

    def _head(self, org: str, model: str) -> bytes:
        """The envelope up to the payload item's assetId value."""
        head = self._heads[(org, model)] = (
            b'{"orgId":%b,"modelId":%b,"modelIdPath":%b,"payload":[{"assetId":'
            % (_encode(org), _encode(model), _encode("/" + model))
        )
        return head

    def messages(self, r: Record, out: list[Message]) -> None:
        """The messages of one (trimmed) record."""
        if self.fmt == "enos":
            out.append(
                Message(self._topic(r), self._key(r), _encode(enos_envelope(r)), r.seq, r.at)
            )
        elif self.fmt == "enos-point":
            for point, body in enos_points(r):
                out.append(
                    Message(self._topic(r, point), self._key(r, point), _encode(body), r.seq, r.at)
                )
        else:
            out.append(Message(self._topic(r), self._key(r), headrace_record(r), r.seq, r.at))

    def value_messages(self, r: Record, values: list[Any], out: list[Message]) -> None:
        """A transform's output for ``r``: each value sent as it is, to the record's
        topic and key."""
        topic, key = self._topic(r), self._key(r)
        for v in values:
            out.append(Message(topic, key, _encode(v), r.seq, r.at))
