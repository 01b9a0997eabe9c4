"""Exceptions of the client SDK.

Everything the SDK raises on purpose derives from ``HeadraceClientError``. A request that
headrace answered with a code other than 200 raises the ``IntegrationReplyError``
subclass of that code (docs/protocols.md A.5), carrying ``code``, ``message``, the per-item
``errors`` list (``[{"index", "deviceKey", "code", "message"}, ...]``) and the whole
decoded ``reply``::

    try:
        await client.post_measurepoints("pk", items)
    except DeviceNotFound as e:
        for err in e.errors:
            print(err["index"], err["deviceKey"], err["message"])
    except IntegrationReplyError as e:  # any other refusal
        print(e.code, e.message)
"""

from __future__ import annotations

from typing import Any

from ..proto.enos import (
    REPLY_BAD_JSON,
    REPLY_DECODE_FAILED,
    REPLY_DEVICE_NOT_FOUND,
    REPLY_EMPTY,
    REPLY_INTERNAL,
    REPLY_METHOD_MISMATCH,
    REPLY_MODEL_INVALID,
    REPLY_NO_PERMISSION,
    REPLY_RATE_LIMITED,
    REPLY_TOO_LARGE,
    REPLY_UNKNOWN_METHOD,
)


class HeadraceClientError(Exception):
    """Base of every error the client SDK raises."""


class ConnectError(HeadraceClientError):
    """The broker could not be reached, or refused the connection."""


class LoginRefused(ConnectError):
    """CONNACK refused the login (bad credentials, disabled channel, bad signature).

    ``connack_code``: 3.1.1 return code (5 not authorized, 4 bad user name or password)
    or 5.0 reason code (0x87, 0x86).
    """

    def __init__(self, message: str, connack_code: int):
        super().__init__(message)
        self.connack_code = connack_code


class ConnectionLost(HeadraceClientError):
    """The connection dropped while a request waited, and reconnecting is off."""


class ClientClosed(HeadraceClientError):
    """The client was closed while a request waited, or a call came after ``close()``."""


class RequestTimeout(HeadraceClientError):
    """No reply within the request timeout (the request may still be stored)."""


class MissingReply(HeadraceClientError):
    """The request was acknowledged but no reply came (e.g. not an integration topic)."""


class OutboxFull(HeadraceClientError):
    """``Outbox.append`` with the outbox at its bound and the ``refuse`` policy."""


class IntegrationReplyError(HeadraceClientError):
    """headrace answered a request with a code other than 200; nothing of it was stored."""

    code: int = 0

    def __init__(
        self,
        code: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        reply: dict[str, Any] | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.errors: list[dict[str, Any]] = list(errors or [])
        self.reply: dict[str, Any] = reply if reply is not None else {}

    @property
    def retryable(self) -> bool:
        """True when sending the same request later may succeed (rate limited)."""
        return self.code == REPLY_RATE_LIMITED


class InternalError(IntegrationReplyError):
    """1005: the hub failed internally (see its log); nothing was stored."""

    code = REPLY_INTERNAL


class MessageTooLarge(IntegrationReplyError):
    """1008: the request is over the hub's message size limit (default 512 KiB)."""

    code = REPLY_TOO_LARGE


class NoPermission(IntegrationReplyError):
    """1009: the channel may not integrate for this product / topic."""

    code = REPLY_NO_PERMISSION


class DecodeFailed(IntegrationReplyError):
    """1202: the payload could not be decoded (raw data parsing script failed)."""

    code = REPLY_DECODE_FAILED


class ValidationError(IntegrationReplyError):
    """1204: model validation failed (unknown point, wrong type, enum out of range...)."""

    code = REPLY_MODEL_INVALID


class InvalidPayload(IntegrationReplyError):
    """1220: the payload is not valid JSON or has the wrong shape."""

    code = REPLY_BAD_JSON


class UnknownMethod(IntegrationReplyError):
    """1250: unknown method."""

    code = REPLY_UNKNOWN_METHOD


class EmptyPayload(IntegrationReplyError):
    """1251: the payload or its params are empty."""

    code = REPLY_EMPTY


class DeviceNotFound(IntegrationReplyError):
    """1257: a deviceKey is not registered under the product."""

    code = REPLY_DEVICE_NOT_FOUND


class MethodMismatch(IntegrationReplyError):
    """1260: the method does not match the topic."""

    code = REPLY_METHOD_MISMATCH


class RateLimited(IntegrationReplyError):
    """1274: the channel is over its configured request rate; retry later."""

    code = REPLY_RATE_LIMITED


class SubscribeRefused(NoPermission):
    """1009 without a request: the broker refused the subscription to the product's
    reply topics, so the channel does not cover that product."""

    def __init__(self, message: str):
        super().__init__(REPLY_NO_PERMISSION, message)


REPLY_ERRORS: dict[int, type[IntegrationReplyError]] = {
    cls.code: cls
    for cls in (
        InternalError,
        MessageTooLarge,
        NoPermission,
        DecodeFailed,
        ValidationError,
        InvalidPayload,
        UnknownMethod,
        EmptyPayload,
        DeviceNotFound,
        MethodMismatch,
        RateLimited,
    )
}


def reply_error(reply: dict[str, Any]) -> IntegrationReplyError:
    """The exception for a non-200 reply (the base class for codes not listed above)."""
    raw_code = reply.get("code")
    code = raw_code if isinstance(raw_code, int) else -1
    message = str(reply.get("message", ""))
    data = reply.get("data")
    errors = data.get("errors") if isinstance(data, dict) else None
    cls = REPLY_ERRORS.get(code, IntegrationReplyError)
    return cls(code, message, errors if isinstance(errors, list) else None, reply)
