"""How a rule's records look on the wire: the EnOS envelope, EnOS per-point records, or
headrace's own record (docs/rules.md, docs/protocols.md D.2).

``messages`` turns one record (or a transform's output for it) into the messages a sink
sends: ``Message(topic, key, value)``, the topic and key only for Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ..stream import Record

_encode = msgspec.json.Encoder().encode

# D.2: EnOS's per-organization topics; events use EnOS's event topic with no org suffix
TOPIC_MEASUREPOINTS: Final = "MEASURE_POINT_ORIGIN_{orgId}"
TOPIC_MEASUREPOINTS_OFFLINE: Final = "MEASURE_POINT_ORIGIN_OFFLINE_{orgId}"
TOPIC_ATTRIBUTES: Final = "ATTRIBUTE_ORIGIN_{orgId}"
TOPIC_ATTRIBUTES_OFFLINE: Final = "ATTRIBUTE_ORIGIN_OFFLINE_{orgId}"
TOPIC_EVENTS: Final = "REALTIME_MODEL_EVENT_TOPIC"

_ITEM_KEY = {"measurepoint": "measurepoints", "attribute": "attributes", "event": "events"}


@dataclass(slots=True)
class Message:
    topic: str
    key: bytes | None
    value: bytes
    seq: int  # the record it came from
    at: int  # the record's commit time, ms


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
        if self.topic is None:
            return enos_topic(r)
        return self.topic.format_map(fields(r, point))

    def _key(self, r: Record, point: str = "") -> bytes:
        return self.key.format_map(fields(r, point)).encode()

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
