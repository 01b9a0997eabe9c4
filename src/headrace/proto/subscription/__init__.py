"""Sans-io EnOS data subscription protocol (data-out.md E, docs/protocols.md E).

``wire`` encodes and decodes ``TransferPkg`` and every message it carries (hand-written
protobuf); ``session.ServerSession`` is the server's state machine over WebSocket binary
messages. The asyncio edge (``headrace.server.subscription``) owns sockets, TLS, the
WebSocket framing and timers.
"""

from headrace.proto.subscription.session import (
    AuthRequested,
    CloseRequested,
    CommitRequested,
    Event,
    IdleRequested,
    PullRequested,
    ServerSession,
    State,
    SubscribeRequested,
    Violation,
)
from headrace.proto.subscription.wire import (
    NOT_MATCHED,
    SUB_ADVANCED_ALERT,
    SUB_ALERT,
    SUB_EVENT,
    SUB_OFFLINE,
    SUB_REALTIME,
    Commit,
    Message,
    WireError,
    encode_message,
    subscription_sign,
)

__all__ = [
    "NOT_MATCHED",
    "SUB_ADVANCED_ALERT",
    "SUB_ALERT",
    "SUB_EVENT",
    "SUB_OFFLINE",
    "SUB_REALTIME",
    "AuthRequested",
    "CloseRequested",
    "Commit",
    "CommitRequested",
    "Event",
    "IdleRequested",
    "Message",
    "PullRequested",
    "ServerSession",
    "State",
    "SubscribeRequested",
    "Violation",
    "WireError",
    "encode_message",
    "subscription_sign",
]
