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


TOO_DEEP = "JSON nested too deeply"


def decode_envelope(payload: bytes) -> Envelope:
    """The request's envelope; raises msgspec's DecodeError or ValidationError only
    (msgspec decodes nesting up to the interpreter's recursion limit, then raises
    RecursionError: deeper JSON is the client's error like any other malformed JSON)."""
    try:
        return ENVELOPE.decode(payload)
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None


def decode_items(method: str, params: bytes | msgspec.Raw | Any) -> list[Item]:
    """The items of a request of ``method``: from raw JSON (``params`` of the envelope),
    or converted from Python values (what a parsing script returned)."""
    try:
        if isinstance(params, bytes | msgspec.Raw):
            return ITEMS[method].decode(params)  # type: ignore[no-any-return]
        return msgspec.convert(params, type=ITEMS[method].type)  # type: ignore[no-any-return]
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None
