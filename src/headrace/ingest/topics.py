"""Integration topics (protocols.md A.3) and the reply-topic space a channel may subscribe to."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from .messages import METHOD_ATTRIBUTE, METHOD_EVENT, METHOD_MEASUREPOINT

Kind = Literal["measurepoint", "attribute", "event", "raw"]

# the levels after /sys/{pk}/integration/
_SUFFIXES: dict[tuple[str, ...], Kind] = {
    ("measurepoint", "post"): "measurepoint",
    ("attribute", "post"): "attribute",
    ("attributes", "post"): "attribute",
    ("event", "post"): "event",
    ("model", "up_raw"): "raw",
    ("up_raw",): "raw",
}

METHOD_OF: dict[Kind, str | None] = {
    "measurepoint": METHOD_MEASUREPOINT,
    "attribute": METHOD_ATTRIBUTE,
    "event": METHOD_EVENT,
    "raw": None,
}


def parse_topic(topic: str) -> tuple[str, Kind] | None:
    """``(productKey, kind)`` of a request topic, in any accepted spelling; else None."""
    levels = topic.split("/")
    if levels and levels[0] == "":
        levels = levels[1:]
    if len(levels) < 4 or levels[0] != "sys" or levels[2] != "integration" or not levels[1]:
        return None
    kind = _SUFFIXES.get(tuple(levels[3:]))
    return (levels[1], kind) if kind is not None else None


def reply_topic(topic: str) -> str:
    return topic + "_reply"


def may_subscribe(topic_filter: str, products: Collection[str]) -> bool:
    """True when the filter stays inside ``[/]sys/{pk}/integration/...`` of a covered product.

    Wildcards are allowed below ``integration``; the product level must be literal.
    """
    levels = topic_filter.split("/")
    if levels and levels[0] == "":
        levels = levels[1:]
    if len(levels) < 4 or levels[0] != "sys" or levels[2] != "integration":
        return False
    return levels[1] in products


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching with ``+`` and ``#``."""
    f = topic_filter.split("/")
    t = topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)
