"""Integration requests and replies (docs/protocols.md A.4, A.5), decoded with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec

from ..proto.enos import METHOD_ATTRIBUTE, METHOD_EVENT, METHOD_MEASUREPOINT


class Envelope(msgspec.Struct):
    """The request without its items; ``params`` is decoded once the method is known."""

    method: Any = None
    params: msgspec.Raw = msgspec.Raw(b"")
    id: Any = None
    version: Any = None
    files: Any = None
    isRealtimeIntegration: Any = None


class MeasurepointItem(msgspec.Struct, kw_only=True):
    measurepoints: Any
    deviceKey: str | None = None
    productKey: str | None = None
    assetId: str | None = None
    time: int | None = None


class AttributeItem(msgspec.Struct, kw_only=True):
    attributes: Any
    deviceKey: str | None = None
    productKey: str | None = None
    assetId: str | None = None


class EventItem(msgspec.Struct, kw_only=True):
    events: Any
    deviceKey: str | None = None
    productKey: str | None = None
    assetId: str | None = None
    time: int | None = None


Item = MeasurepointItem | AttributeItem | EventItem

ENVELOPE = msgspec.json.Decoder(Envelope)
ITEMS: dict[str, msgspec.json.Decoder[Any]] = {
    METHOD_MEASUREPOINT: msgspec.json.Decoder(list[MeasurepointItem]),
    METHOD_ATTRIBUTE: msgspec.json.Decoder(list[AttributeItem]),
    METHOD_EVENT: msgspec.json.Decoder(list[EventItem]),
}


encode = msgspec.json.Encoder().encode
