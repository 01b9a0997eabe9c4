"""One error tree for the whole hub, split by whose fault an error is.

Every error carries the codes it maps to on each wire:
- ``status``: the HTTP status of the admin/query API and of the EnOS HTTP API,
- ``code``: a short stable machine name used in the admin API's JSON error shape,
- ``reply_code``: the EnOS integration reply code (protocols.md A.5) where one applies.

The admin API renders any ``HeadraceError`` as::

    {"error": {"status": 422, "code": "validation_failed", "message": "...", "field": "a.b[0]"}}
"""

from __future__ import annotations

from typing import Any


class HeadraceError(Exception):
    status: int = 500
    code: str = "internal_error"
    reply_code: int = 1005

    def __init__(self, message: str, *, field: str | None = None, reply_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if reply_code is not None:
            self.reply_code = reply_code

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


# -- the client's fault ------------------------------------------------------------------


class ClientError(HeadraceError):
    status = 400
    code = "bad_request"
    reply_code = 1220


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"
    reply_code = 1009


class Forbidden(ClientError):
    status = 403
    code = "forbidden"
    reply_code = 1009


class NotFound(ClientError):
    status = 404
    code = "not_found"
    reply_code = 1257


class Conflict(ClientError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"
    reply_code = 1008


class ValidationFailed(ClientError):
    """The request is well-formed but its content is wrong (field names the place)."""

    status = 422
    code = "validation_failed"
    reply_code = 1204


class RateLimited(ClientError):
    status = 429
    code = "rate_limited"
    reply_code = 1274


# -- our fault -----------------------------------------------------------------------------


class ServerError(HeadraceError):
    status = 500
    code = "internal_error"


class ConfigError(HeadraceError):
    """Settings that cannot be used (unknown key, wrong type). Raised before serving."""

    status = 500
    code = "config_error"


# -- integration reply codes (protocols.md A.5) -------------------------------------------

REPLY_OK = 200
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

# HTTP status that goes with each integration reply code (protocols.md B.2).
REPLY_HTTP_STATUS = {
    REPLY_OK: 200,
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


class IntegrationError(ClientError):
    """A whole integration request refused with one A.5 reply code."""

    def __init__(
        self, reply_code: int, message: str, *, errors: list[dict[str, Any]] | None = None
    ):
        super().__init__(message, reply_code=reply_code)
        self.status = REPLY_HTTP_STATUS.get(reply_code, 400)
        self.errors = errors or []
