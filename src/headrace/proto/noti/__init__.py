"""Sans-io Gizwits noti 1.0 enterprise push protocol (docs/protocols.md C).

``ServerSession`` and ``ClientSession`` take bytes and return events and bytes to send;
the asyncio edge (``headrace.server.noti``) owns sockets, TLS and timers.
"""

from headrace.proto.noti.events import (
    Acked,
    ClientEvent,
    CloseRequired,
    EventPushed,
    InvalidMsg,
    LoginRequested,
    LoginResult,
    MessageRejected,
    PingReceived,
    Pong,
    ServerEvent,
)
from headrace.proto.noti.framing import DEFAULT_MAX_LINE, LineBuffer, LineTooLong
from headrace.proto.noti.messages import (
    MAX_PREFETCH,
    MIN_PREFETCH,
    OUTBOUND_LINE_TARGET,
    ErrorCode,
    NotiProtocolError,
    NotiUsageError,
    WindowFull,
    decode_client_message,
    decode_server_message,
    encode_event_push,
    encode_invalid_msg,
    encode_login_res,
)
from headrace.proto.noti.session import (
    DEFAULT_CLIENT_MAX_LINE,
    ClientSession,
    ClientState,
    ServerSession,
    ServerState,
)

__all__ = [
    "DEFAULT_CLIENT_MAX_LINE",
    "DEFAULT_MAX_LINE",
    "MAX_PREFETCH",
    "MIN_PREFETCH",
    "OUTBOUND_LINE_TARGET",
    "Acked",
    "ClientEvent",
    "ClientSession",
    "ClientState",
    "CloseRequired",
    "ErrorCode",
    "EventPushed",
    "InvalidMsg",
    "LineBuffer",
    "LineTooLong",
    "LoginRequested",
    "LoginResult",
    "MessageRejected",
    "NotiProtocolError",
    "NotiUsageError",
    "PingReceived",
    "Pong",
    "ServerEvent",
    "ServerSession",
    "ServerState",
    "WindowFull",
    "decode_client_message",
    "decode_server_message",
    "encode_event_push",
    "encode_invalid_msg",
    "encode_login_res",
]
