"""Client SDK for third-party systems: post to headrace over MQTT, buffer while offline,
import history files.

- ``IntegrationClient``: asyncio client of one integration channel (either login of
  docs/protocols.md A.2), many requests in flight, automatic reconnect and resend.
- ``Outbox``: a durable local buffer (SQLite) that sends in batches when connected.
- ``headrace.client.importer``: the import of history files (CSV, JSON Lines, Parquet)
  with checkpoints and a reject file, behind the ``headrace import`` command.

See docs/integrators.md.
"""

from .connection import IntegrationClient, parse_broker, request_topic, signed_login
from .errors import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    DecodeFailed,
    DeviceNotFound,
    EmptyPayload,
    HeadraceClientError,
    IntegrationReplyError,
    InternalError,
    InvalidPayload,
    LoginRefused,
    MessageTooLarge,
    MethodMismatch,
    MissingReply,
    NoPermission,
    OutboxFull,
    RateLimited,
    RequestTimeout,
    SubscribeRefused,
    UnknownMethod,
    ValidationError,
    reply_error,
)
from .outbox import Outbox

__all__ = [
    "ClientClosed",
    "ConnectError",
    "ConnectionLost",
    "DecodeFailed",
    "DeviceNotFound",
    "EmptyPayload",
    "HeadraceClientError",
    "IntegrationClient",
    "IntegrationReplyError",
    "InternalError",
    "InvalidPayload",
    "LoginRefused",
    "MessageTooLarge",
    "MethodMismatch",
    "MissingReply",
    "NoPermission",
    "Outbox",
    "OutboxFull",
    "RateLimited",
    "RequestTimeout",
    "SubscribeRefused",
    "UnknownMethod",
    "ValidationError",
    "parse_broker",
    "reply_error",
    "request_topic",
    "signed_login",
]
