"""noti 1.0 session state machines, sans-io: bytes in, events and bytes out.

``ServerSession`` is one client connection seen by the server:

    AWAIT_LOGIN --login--> LOGIN_PENDING --accept_login()--> LOGGED_IN
                                 |
                                 +--refuse_login()--> CLOSED   (also: over-long line, close())

Before a login is requested, a ping or an ack is "not logged in" (4001): nothing but a
login is answered in kind, so a connection that never logs in gets nothing for its pings
(the edge closes it at its login deadline). While a login is pending (the caller checks
credentials, perhaps asynchronously), lines keep being handled: a ping is answered, an
ack is "not logged in" (4001) and a second login is "already logged in" (4009).
``invalid_msg`` never closes the connection except after an over-long line, which cannot
be resynchronised.

The prefetch window caps unacked pushes per connection (docs/protocols.md C.4). Every push
carries a caller's tag (e.g. a queue row id) that comes back in ``Acked`` and, for pushes
never acked, from ``unacked_tags()`` when the connection ends, for redelivery.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

from headrace.proto.noti.events import (
    Acked,
    ClientEvent,
    CloseRequired,
    LoginRequested,
    LoginResult,
    MessageRejected,
    PingReceived,
    ServerEvent,
)
from headrace.proto.noti.framing import DEFAULT_MAX_LINE, LineBuffer, LineTooLong
from headrace.proto.noti.messages import (
    LOGIN_OK_LINE,
    MAX_PREFETCH,
    MIN_PREFETCH,
    PING_LINE,
    PONG_LINE,
    ErrorCode,
    EventAck,
    LoginRequest,
    NotiProtocolError,
    NotiUsageError,
    Ping,
    WindowFull,
    decode_client_message,
    decode_server_message,
    encode_ack,
    encode_event_push,
    encode_invalid_msg,
    encode_login_req,
    encode_login_res,
)

T = TypeVar("T")

DEFAULT_CLIENT_MAX_LINE: Final = 16 * 1024 * 1024
"""Client inbound line limit: pushes carry raw device data and may exceed the server's."""

_MISSING: Final[Any] = object()


class ServerState(enum.Enum):
    AWAIT_LOGIN = "await_login"
    LOGIN_PENDING = "login_pending"
    LOGGED_IN = "logged_in"
    CLOSED = "closed"


class ServerSession(Generic[T]):
    """The server side of one noti connection. ``T`` is the type of the push tags."""

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._lines = LineBuffer(max_line)
        self._state = ServerState.AWAIT_LOGIN
        self._out: list[bytes] = []
        self._unacked: dict[int, T] = {}  # insertion order == push order
        self._next_delivery_id = 1
        self.enterprise_id: str | None = None
        self.prefetch_count = 0  # requested at login; the window opens on accept
        self.close_reason: str | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is ServerState.CLOSED

    def close(self, reason: str) -> None:
        """Close locally (idle timeout, shutdown, peer gone). Unacked tags stay readable."""
        if self._state is not ServerState.CLOSED:
            self._state = ServerState.CLOSED
            self.close_reason = reason

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ServerEvent[T]]:
        """Handle bytes read from the client. Never raises for anything the peer sends."""
        events: list[ServerEvent[T]] = []
        if self._state is ServerState.CLOSED or not data:
            return events
        try:
            lines = self._lines.feed(data)
        except LineTooLong as exc:
            for line in exc.lines:
                self._handle_line(line, events)
            self._reject(exc.error_code, exc.message, events)
            reason = f"protocol error: {exc.message}"
            self.close(reason)
            events.append(CloseRequired(reason))
            return events
        for line in lines:
            self._handle_line(line, events)
        return events

    def _handle_line(self, line: bytes, events: list[ServerEvent[T]]) -> None:
        try:
            msg = decode_client_message(line)
        except NotiProtocolError as exc:
            self._reject(exc.error_code, exc.message, events)
            return
        if isinstance(msg, EventAck):
            if self._state is not ServerState.LOGGED_IN:
                self._reject(ErrorCode.NOT_LOGGED_IN, "not logged in", events)
                return
            delivery_id = msg.delivery_id
            tag = self._unacked.pop(delivery_id, _MISSING)
            if tag is _MISSING:
                self._reject(
                    ErrorCode.UNKNOWN_DELIVERY,
                    f"unknown or already acked delivery_id {delivery_id}",
                    events,
                )
                return
            events.append(Acked(delivery_id, tag))
        elif isinstance(msg, Ping):
            if self._state is ServerState.AWAIT_LOGIN:
                self._reject(ErrorCode.NOT_LOGGED_IN, "not logged in", events)
                return
            self._out.append(PONG_LINE)
            events.append(PingReceived())
        elif isinstance(msg, LoginRequest):
            if self._state is not ServerState.AWAIT_LOGIN:
                self._reject(ErrorCode.ALREADY_LOGGED_IN, "already logged in", events)
                return
            data = msg.data
            self._state = ServerState.LOGIN_PENDING
            self.enterprise_id = data.enterprise_id
            self.prefetch_count = data.prefetch_count
            events.append(
                LoginRequested(data.enterprise_id, data.enterprise_secret, data.prefetch_count)
            )

    def _reject(self, error_code: int, msg: str, events: list[ServerEvent[T]]) -> None:
        self._out.append(encode_invalid_msg(msg, error_code))
        events.append(MessageRejected(int(error_code), msg))

    # -- login -----------------------------------------------------------------------------

    def accept_login(self) -> None:
        """Answer the pending login with success and open the prefetch window."""
        if self._state is ServerState.CLOSED:
            return  # closed meanwhile (e.g. an over-long line right after the login)
        if self._state is not ServerState.LOGIN_PENDING:
            raise NotiUsageError(f"accept_login in state {self._state.value}")
        self._out.append(LOGIN_OK_LINE)
        self._state = ServerState.LOGGED_IN

    def refuse_login(self, msg: str) -> None:
        """Answer the pending login with failure; the session is then closed."""
        if self._state is ServerState.CLOSED:
            return
        if self._state is not ServerState.LOGIN_PENDING:
            raise NotiUsageError(f"refuse_login in state {self._state.value}")
        self._out.append(encode_login_res(False, msg))
        self.close(f"login refused: {msg}")

    # -- pushes ----------------------------------------------------------------------------

    def window_free(self) -> int:
        """Pushes that may be sent now: prefetch_count minus unacked (0 unless logged in)."""
        if self._state is not ServerState.LOGGED_IN:
            return 0
        return self.prefetch_count - len(self._unacked)

    def can_push(self) -> bool:
        return self.window_free() > 0

    def push(self, event: Mapping[str, Any] | bytes, tag: T) -> int:
        """Queue one ``enterprise_event_push`` and return its delivery_id.

        ``event`` holds the C.3 fields (or is them pre-encoded as one JSON object, see
        ``encode_event_push``). Raises ``WindowFull`` when no slot is free and
        ``NotiUsageError`` when not logged in; an event that cannot be encoded raises
        before anything is recorded.
        """
        if self._state is not ServerState.LOGGED_IN:
            raise NotiUsageError(f"push in state {self._state.value}")
        if len(self._unacked) >= self.prefetch_count:
            raise WindowFull(f"prefetch window of {self.prefetch_count} is full")
        delivery_id = self._next_delivery_id
        line = encode_event_push(delivery_id, event)
        self._next_delivery_id = delivery_id + 1
        self._unacked[delivery_id] = tag
        self._out.append(line)
        return delivery_id

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    def unacked_tags(self) -> list[T]:
        """Tags of the pushes not yet acked, in push order (for redelivery on close)."""
        return list(self._unacked.values())

    # -- output ----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Drain the queued output."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out


class ClientState(enum.Enum):
    IDLE = "idle"
    LOGIN_SENT = "login_sent"
    LOGGED_IN = "logged_in"
    CLOSED = "closed"


class ClientSession:
    """The client side of a noti connection (client SDK and tests).

    Deliberately permissive in what it lets the caller send (ack of any id, a second
    login), so that tests can drive a server into every error. ``receive_data`` raises
    ``NotiProtocolError`` when the server sends something malformed; the session is then
    closed.
    """

    def __init__(self, *, max_line: int = DEFAULT_CLIENT_MAX_LINE) -> None:
        self._lines = LineBuffer(max_line)
        self._state = ClientState.IDLE
        self._out: list[bytes] = []

    @property
    def state(self) -> ClientState:
        return self._state

    def _check_open(self) -> None:
        if self._state is ClientState.CLOSED:
            raise NotiUsageError("session is closed")

    def login(self, enterprise_id: str, secret: str, prefetch_count: int = 5) -> None:
        self._check_open()
        if not MIN_PREFETCH <= prefetch_count <= MAX_PREFETCH:
            raise ValueError(f"prefetch_count must be in {MIN_PREFETCH}..{MAX_PREFETCH}")
        self._out.append(encode_login_req(enterprise_id, secret, prefetch_count))
        if self._state is ClientState.IDLE:
            self._state = ClientState.LOGIN_SENT

    def ping(self) -> None:
        self._check_open()
        self._out.append(PING_LINE)

    def ack(self, delivery_id: int) -> None:
        self._check_open()
        self._out.append(encode_ack(delivery_id))

    def close(self) -> None:
        self._state = ClientState.CLOSED

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        if self._state is ClientState.CLOSED or not data:
            return []
        try:
            lines = self._lines.feed(data)
            events = [decode_server_message(line) for line in lines]
        except NotiProtocolError:
            self._state = ClientState.CLOSED
            raise
        for event in events:
            if isinstance(event, LoginResult) and self._state is ClientState.LOGIN_SENT:
                self._state = ClientState.LOGGED_IN if event.result else ClientState.CLOSED
        return events

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out
