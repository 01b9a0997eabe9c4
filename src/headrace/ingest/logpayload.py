"""The received bytes of a request, as a payload record of the message log keeps them.

A payload record carries the first ``LOG_PAYLOAD_MAX`` bytes of what the device or
channel sent: ``"payload"`` (text) when they are UTF-8 without control characters other
than tab, CR and LF, else ``"payloadHex"`` (lower-case hex, the raw data of a binary
device); ``"payloadTruncated": true`` when the request was longer (its whole length is
the record's ``size``). docs/protocols.md (the message log) and docs/console.md.
"""

from __future__ import annotations

from typing import Any, Final

LOG_PAYLOAD_MAX: Final = 4096  # bytes of a request kept in its payload record

# bytes that make a payload binary (as text they would be control characters)
_CONTROL: Final = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def payload_fields(payload: bytes, cap: int = LOG_PAYLOAD_MAX) -> dict[str, Any]:
    """The payload record's fields for these received bytes (at most ``cap`` of them)."""
    head = payload[:cap] if len(payload) > cap else payload
    out: dict[str, Any]
    if len(head.translate(None, _CONTROL)) == len(head):  # faster than a regex search
        try:
            out = {"payload": head.decode()}
        except UnicodeDecodeError as e:
            # a character cut at the cap is text still; an invalid byte earlier is not
            if (
                len(head) < len(payload)
                and e.start >= len(head) - 3
                and e.reason.startswith("unexpected end")
            ):
                out = {"payload": head[: e.start].decode()}
            else:
                out = {"payloadHex": head.hex()}
    else:
        out = {"payloadHex": head.hex()}
    if len(head) < len(payload):
        out["payloadTruncated"] = True
    return out
