"""The EnOS integration protocol's constants and pure rules (docs/protocols.md A, B).

Sans-io and shared by both sides: the hub (``ingest/``, ``server/``, ``api/``) and the
client SDK (``client/``) import the methods, topics, login signature and reply codes from
here, so that the two cannot drift apart (``tests/unit/test_enos_protocol.py`` pins it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Literal

# -- methods (A.4) -----------------------------------------------------------------------

METHOD_MEASUREPOINT = "integration.measurepoint.post"
METHOD_ATTRIBUTE = "integration.attribute.post"
METHOD_EVENT = "integration.event.post"
METHODS = (METHOD_MEASUREPOINT, METHOD_ATTRIBUTE, METHOD_EVENT)

# -- topics (A.3) ------------------------------------------------------------------------

Kind = Literal["measurepoint", "attribute", "event", "raw"]

# the levels after /sys/{pk}/integration/, every accepted spelling
_SUFFIXES: dict[tuple[str, ...], Kind] = {
    ("measurepoint", "post"): "measurepoint",
    ("attribute", "post"): "attribute",
    ("attributes", "post"): "attribute",
    ("event", "post"): "event",
    ("model", "up_raw"): "raw",
    ("up_raw",): "raw",
}

# the spelling the SDKs send (and the client SDK uses)
_SDK_SUFFIX: dict[Kind, str] = {
    "measurepoint": "measurepoint/post",
    "attribute": "attribute/post",
    "event": "event/post",
    "raw": "model/up_raw",
}

# the method a kind's topic implies (None: raw data, whose script says the method)
METHOD_OF: dict[Kind, str | None] = {
    "measurepoint": METHOD_MEASUREPOINT,
    "attribute": METHOD_ATTRIBUTE,
    "event": METHOD_EVENT,
    "raw": None,
}

# the HTTP API's ``action`` query parameter (B.2) -> kind
HTTP_ACTIONS: dict[str, Kind] = {
    "postMeasurepoint": "measurepoint",
    "postAttribute": "attribute",
    "postEvent": "event",
}


def request_topic(product_key: str, kind: Kind) -> str:
    """The SDK spelling of the request topic of ``kind``."""
    return f"/sys/{product_key}/integration/{_SDK_SUFFIX[kind]}"


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


# -- the EnOS signed login (A.2) ---------------------------------------------------------

# signmethod value -> hashlib name (a plain digest, not an HMAC, despite the names)
SIGN_METHODS = {
    "sha256": "sha256",
    "hmacsha256": "sha256",
    "sha1": "sha1",
    "hmacsha1": "sha1",
    "md5": "md5",
    "hmacmd5": "md5",
}

# the username of an EnOS signed login: this prefix, then the product key
SIGNED_USERNAME_PREFIX = "%channel%&"


def signature(
    cid: str, product_key: str, timestamp: str, product_secret: str, method: str = "sha256"
) -> str:
    """The password of a signed login."""
    content = (
        f"clientId{cid}deviceKey%channel%productKey{product_key}"
        f"timestamp{timestamp}{product_secret}"
    )
    return hashlib.new(SIGN_METHODS[method], content.encode()).hexdigest()


def signed_client_id(product_key: str, sign_method: str, timestamp: str) -> str:
    return f"{product_key}|securemode=4,signmethod={sign_method},timestamp={timestamp}|"


def parse_signed_client_id(client_id: str) -> tuple[str, dict[str, str]] | None:
    """``(cid, params)`` from ``{cid}|securemode=4,signmethod=..,timestamp=..|``; None
    when the client id carries no such block."""
    cid, sep, rest = client_id.partition("|")
    if not sep:
        return None
    params: dict[str, str] = {}
    for part in rest.rstrip("|").split(","):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip()] = value.strip()
    return cid, params


# -- reply codes (A.5) and their HTTP status (B.2) ---------------------------------------

REPLY_OK = 200
REPLY_INTERNAL = 1005
REPLY_TOO_LARGE = 1008
REPLY_NO_PERMISSION = 1009
REPLY_DECODE_FAILED = 1202
REPLY_MODEL_INVALID = 1204
REPLY_BAD_JSON = 1220
REPLY_UNKNOWN_METHOD = 1250
REPLY_EMPTY = 1251
REPLY_DEVICE_NOT_FOUND = 1257
REPLY_METHOD_MISMATCH = 1260
REPLY_RATE_LIMITED = 1274

REPLY_HTTP_STATUS = {
    REPLY_OK: 200,
    REPLY_INTERNAL: 500,
    REPLY_TOO_LARGE: 413,
    REPLY_NO_PERMISSION: 403,
    REPLY_DECODE_FAILED: 400,
    REPLY_MODEL_INVALID: 400,
    REPLY_BAD_JSON: 400,
    REPLY_UNKNOWN_METHOD: 400,
    REPLY_EMPTY: 400,
    REPLY_DEVICE_NOT_FOUND: 404,
    REPLY_METHOD_MISMATCH: 400,
    REPLY_RATE_LIMITED: 429,
}

# the HTTP API's reply code of success (B.2: ``{"code": 0, "msg": "OK"}``)
HTTP_OK = 0

# -- the token service's status codes (B.1) ----------------------------------------------

TOKEN_OK = 0
TOKEN_REPLAYED = 1001
TOKEN_UNKNOWN_APP = 1002
TOKEN_BAD_SIGNATURE = 1003
TOKEN_BAD_PARAMETER = 1004
TOKEN_INTERNAL = 1005
TOKEN_EMPTY_PARAMETER = 1202
TOKEN_EXPIRED = 1203
TOKEN_REFRESH_FAILED = 1204


def token_encryption(app_key: str, timestamp: str, secret: str) -> str:
    """The ``encryption`` of a token request: SHA-256 of appKey + timestamp + secret."""
    return hashlib.sha256((app_key + timestamp + secret).encode()).hexdigest()
