"""Events the noti sessions hand to their callers.

Server side (``ServerSession.receive_data``): ``LoginRequested``, ``Acked``,
``PingReceived``, ``MessageRejected``, ``CloseRequired``.
Client side (``ClientSession.receive_data``): ``LoginResult``, ``Pong``, ``EventPushed``,
``InvalidMsg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

T = TypeVar("T")

# -- server side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginRequested:
    """A well-formed login arrived. Check the credentials (and the peer's IP), then call
    ``accept_login()`` or ``refuse_login(msg)``."""

    enterprise_id: str
    secret: str
    prefetch_count: int

    def __repr__(self) -> str:  # never log the secret
        return (
            f"LoginRequested(enterprise_id={self.enterprise_id!r}, secret='***', "
            f"prefetch_count={self.prefetch_count})"
        )


@dataclass(frozen=True, slots=True)
class Acked(Generic[T]):
    """The client acked ``delivery_id``; ``tag`` is what the caller attached to that push."""

    delivery_id: int
    tag: T


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The client pinged; the pong is already queued."""


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """An ``invalid_msg`` with this code was queued (for logs and metrics; no action needed)."""

    error_code: int
    msg: str


@dataclass(frozen=True, slots=True)
class CloseRequired:
    """The session is over: send ``data_to_send()`` and close the connection."""

    reason: str


ServerEvent: TypeAlias = LoginRequested | Acked[T] | PingReceived | MessageRejected | CloseRequired

# -- client side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginResult:
    result: bool
    msg: str


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class EventPushed:
    """A push; ``event`` holds every field but ``cmd`` and ``delivery_id``."""

    delivery_id: int
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InvalidMsg:
    msg: str
    error_code: int | None  # absent from the original service; ours always sends it


ClientEvent: TypeAlias = LoginResult | Pong | EventPushed | InvalidMsg
