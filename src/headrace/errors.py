"""One error tree for the whole hub, split by whose fault an error is.

Every error carries the codes it maps to on each wire:
- ``status``: the HTTP status of the admin/query API and of the EnOS HTTP API,
- ``code``: a short stable machine name used in the admin API's JSON error shape,
- ``reply_code``: the EnOS integration reply code (docs/protocols.md A.5) where one applies.

The admin API renders any ``HeadraceError`` as::

    {"error": {"status": 422, "code": "validation_failed", "message": "...", "field": "a.b[0]"}}
"""

from __future__ import annotations

from typing import Any

from .proto.enos import REPLY_HTTP_STATUS


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


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(ClientError):
    status = 429
    code = "rate_limited"
    reply_code = 1274


class Refused(ClientError):
    """An integration request (MQTT or HTTP) refused whole with one A.5 reply code.

    ``status`` (the HTTP API's) follows from the reply code (B.2) unless given; ``errors``
    lists the refused items (``{"index", "deviceKey", "code", "message"}``).
    """

    code = "refused"

    def __init__(
        self,
        reply_code: int,
        message: str,
        *,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message, reply_code=reply_code)
        self.status = status or REPLY_HTTP_STATUS.get(reply_code, 400)
        self.errors = errors or []


class LoginRefused(Unauthorized):
    """A login (MQTT CONNECT, noti login) refused; the message says why."""

    code = "login_refused"


class TooManyConnections(LoginRefused):
    """A login refused because the server is at its connection limit (try again later)."""

    status = 503
    code = "too_many_connections"


class TokenRefused(ClientError):
    """A token request (B.1) refused with its ``token_status`` code."""

    code = "token_refused"

    def __init__(self, token_status: int, message: str):
        super().__init__(message)
        self.token_status = token_status


class TokenRejected(Unauthorized):
    """An ``apim-accesstoken`` that does not authorize the call."""

    code = "token_rejected"

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


class SubscriptionRefused(LoginRefused):
    """A data subscription ``auth_req`` or ``sub_req`` refused (docs/protocols.md E):
    ``ack`` is the non-zero code of the ``auth_rsp``/``sub_rsp``, the message its ``msg``."""

    code = "subscription_refused"

    def __init__(self, ack: int, message: str):
        super().__init__(message)
        self.ack = ack


# -- our fault -----------------------------------------------------------------------------


class ServerError(HeadraceError):
    status = 500
    code = "internal_error"


class Unstorable(ServerError):
    """A write the store refuses for a reason that would repeat on every retry (a value
    out of what it can hold). Not raised for a transient failure (disk, I/O), which
    propagates as it is so that the request is not answered and gets resent."""

    code = "unstorable"


class ConfigError(HeadraceError):
    """Settings that cannot be used (unknown key, wrong type). Raised before serving."""

    status = 500
    code = "config_error"


def status_names() -> dict[int, str]:
    """HTTP status -> the ``code`` of the most general error with that status (the error
    shape's names for statuses the framework raises itself, such as 405 and 415)."""
    names: dict[int, str] = {}
    todo: list[type[HeadraceError]] = [HeadraceError]
    while todo:
        cls = todo.pop(0)
        names.setdefault(cls.status, cls.code)
        todo.extend(cls.__subclasses__())
    return names
