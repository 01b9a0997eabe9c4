"""One EnOS data subscription connection seen by the server, sans-io: WebSocket binary
messages in, events and binary messages out (the WebSocket framing is the edge's).

    AWAIT_AUTH --AuthReq--> AUTH_PENDING --accept_auth()--> AWAIT_SUB --SubReq-->
    SUB_PENDING --accept_sub()--> SUBSCRIBED   (refuse_*, a violation, CloseReq: CLOSED)

Before the AuthReq nothing else is answered: any other message is a violation, so a
connection that never authenticates gets nothing (the edge closes it at its deadline).
After the subscription: ``PullReq`` (answered in order with ``reply_pull``; at most
``max_pending_pulls`` unanswered), ``CommitDTO`` (never answered: the Python SDK sends
commits without reading a reply, and a ``commit_rsp`` would reach its next pull's read
and kill its fetch thread), ``IdleReq`` (``IdleRsp`` with the server's time, at any time
after the AuthReq) and ``CloseReq`` (``close_rsp``, then the connection ends).

Every reply echoes the request's ``seqId``. A compressed package (``zip``), a cmdId a
client does not send, or bytes that are not the message's encoding are violations.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .wire import (
    AUTH_REQ,
    AUTH_RSP,
    CLOSE_REQ,
    CLOSE_RSP,
    COMMIT_REQ,
    IDLE_REQ,
    IDLE_RSP,
    PULL_REQ,
    PULL_RSP,
    SUB_REQ,
    SUB_RSP,
    AuthReq,
    AuthRsp,
    Commit,
    CommitDTO,
    IdleReq,
    IdleRsp,
    PullReq,
    SubReq,
    SubRsp,
    TransferPkg,
    WireError,
    encode_pull_rsp,
)

DEFAULT_MAX_PENDING_PULLS: Final = 16


class State(enum.Enum):
    AWAIT_AUTH = "await_auth"
    AUTH_PENDING = "auth_pending"
    AWAIT_SUB = "await_sub"
    SUB_PENDING = "sub_pending"
    SUBSCRIBED = "subscribed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class AuthRequested:
    access_key: str
    sub_id: str
    sign: str
    sub_type: int


@dataclass(frozen=True, slots=True)
class SubscribeRequested:
    category: int
    client_id: str
    sub_id: str
    access_key: str
    consumer_group: str


@dataclass(frozen=True, slots=True)
class PullRequested:
    id: int


@dataclass(frozen=True, slots=True)
class CommitRequested:
    commits: tuple[Commit, ...]


@dataclass(frozen=True, slots=True)
class IdleRequested:
    pass


@dataclass(frozen=True, slots=True)
class CloseRequested:
    pass


@dataclass(frozen=True, slots=True)
class Violation:
    """The client broke the protocol; the connection must close (``reason`` says how)."""

    reason: str


Event = (
    AuthRequested
    | SubscribeRequested
    | PullRequested
    | CommitRequested
    | IdleRequested
    | CloseRequested
    | Violation
)


class ServerSession:
    def __init__(self, *, max_pending_pulls: int = DEFAULT_MAX_PENDING_PULLS) -> None:
        self.state = State.AWAIT_AUTH
        self.max_pending_pulls = max_pending_pulls
        self._out: list[bytes] = []
        self._pulls: deque[tuple[int, int]] = deque()  # (pull id, seqId), oldest first
        self._auth_seq = 0
        self._sub_seq = 0
        self._idle_seq = 0

    # -- input ------------------------------------------------------------------------------

    def receive_message(self, data: bytes) -> list[Event]:
        """One WebSocket binary message from the client."""
        if self.state is State.CLOSED:
            return []
        try:
            return self._receive(data)
        except WireError as e:
            return [self._violate(f"malformed message: {e}")]

    def _receive(self, data: bytes) -> list[Event]:
        pkg = TransferPkg.decode(data)
        if pkg.zip:
            return [self._violate("compressed packages are not supported")]
        cmd = pkg.cmdId
        state = self.state
        if state is State.AWAIT_AUTH:
            if cmd != AUTH_REQ:
                return [self._violate(f"cmdId {cmd} before auth_req")]
            req = AuthReq.decode(pkg.data)
            self.state = State.AUTH_PENDING
            self._auth_seq = pkg.seqId
            return [AuthRequested(req.accessKey, req.subId, req.sign, req.subType)]
        if cmd == IDLE_REQ:
            IdleReq.decode(pkg.data)
            self._idle_seq = pkg.seqId
            return [IdleRequested()]
        if cmd == CLOSE_REQ:
            self._send(CLOSE_RSP, b"", pkg.seqId)
            self.state = State.CLOSED
            return [CloseRequested()]
        if state is State.AWAIT_SUB and cmd == SUB_REQ:
            sub = SubReq.decode(pkg.data)
            self.state = State.SUB_PENDING
            self._sub_seq = pkg.seqId
            return [
                SubscribeRequested(
                    sub.category, sub.clientId, sub.subId, sub.accessKey, sub.consumerGroup
                )
            ]
        if state is State.SUBSCRIBED:
            if cmd == PULL_REQ:
                pull = PullReq.decode(pkg.data)
                if len(self._pulls) >= self.max_pending_pulls:
                    return [self._violate("too many unanswered pull requests")]
                self._pulls.append((pull.id, pkg.seqId))
                return [PullRequested(pull.id)]
            if cmd == COMMIT_REQ:
                dto = CommitDTO.decode(pkg.data)
                return [CommitRequested(tuple(dto.commits))]
        return [self._violate(f"cmdId {cmd} not expected in state {state.value}")]

    def _violate(self, reason: str) -> Violation:
        self.state = State.CLOSED
        return Violation(reason)

    # -- answers -------------------------------------------------------------------------------

    def accept_auth(self, channel_id: str = "") -> None:
        self._expect(State.AUTH_PENDING)
        self._send(AUTH_RSP, AuthRsp(0, "", channel_id).encode(), self._auth_seq)
        self.state = State.AWAIT_SUB

    def refuse_auth(self, ack: int, msg: str) -> None:
        """A non-zero ``ack`` with the reason; the connection closes after it is sent."""
        self._expect(State.AUTH_PENDING)
        self._send(AUTH_RSP, AuthRsp(ack or -1, msg).encode(), self._auth_seq)
        self.state = State.CLOSED

    def accept_sub(self, channel_id: str = "") -> None:
        self._expect(State.SUB_PENDING)
        self._send(SUB_RSP, SubRsp(0, channel_id, "").encode(), self._sub_seq)
        self.state = State.SUBSCRIBED

    def refuse_sub(self, ack: int, msg: str) -> None:
        self._expect(State.SUB_PENDING)
        self._send(SUB_RSP, SubRsp(ack or -1, "", msg).encode(), self._sub_seq)
        self.state = State.CLOSED

    def answer_idle(self, server_time_ms: int) -> None:
        if self.state is not State.CLOSED:
            self._send(IDLE_RSP, IdleRsp(server_time_ms).encode(), self._idle_seq)

    @property
    def pending_pulls(self) -> int:
        return len(self._pulls)

    def reply_pull(self, encoded_messages: Sequence[bytes], code: int = 0) -> int:
        """Answer the oldest unanswered pull with messages encoded by
        ``wire.encode_message``; returns its id."""
        if not self._pulls:
            raise RuntimeError("no pull request to answer")
        pull_id, seq = self._pulls.popleft()
        if self.state is State.SUBSCRIBED:
            self._send(PULL_RSP, encode_pull_rsp(pull_id, code, list(encoded_messages)), seq)
        return pull_id

    def close(self) -> None:
        self.state = State.CLOSED
        self._pulls.clear()

    def messages_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def _expect(self, state: State) -> None:
        if self.state is not state:
            raise RuntimeError(f"not {state.value} but {self.state.value}")

    def _send(self, cmd: int, data: bytes, seq: int) -> None:
        self._out.append(TransferPkg(cmd, data, seq).encode())
