"""The EnOS data subscription service: WebSocket (TCP and TLS) around
``proto.subscription.ServerSession`` (docs/protocols.md E, docs/subscription.md).

One ``SubscriptionConnection`` per socket. Bytes go to the sans-io WebSocket protocol of
the ``websockets`` library (handshake, frames, pings answered with pongs, the closing
handshake); each binary message goes to the subscription session, and whatever either
wants sent is written (the transport half is ``stream.StreamConnection``).

After ``auth_req`` (checked by ``push.subscriptions.Subscriptions.authenticate``: the
job, its service accounts, the signature) and ``sub_req`` (the connection joins the
job's consumer group), each ``pull_req`` is answered with the messages of the partitions
the group gave this connection: at once when some are waiting, else when the first
arrives or after ``subscription.pull_wait`` seconds with none (a long poll: the SDK pulls
in a loop). ``commit_req`` moves the group's committed offsets.

Against a hostile client: the TLS handshake within ``subscription.handshake_timeout``,
the WebSocket handshake and the auth within ``subscription.login_timeout``; at most
``subscription.max_connections`` open and ``subscription.max_pending`` not
authenticated (a new one beyond either closes the oldest not authenticated, or is closed
at once); a message above ``subscription.max_message`` bytes, a text frame or a protocol
violation closes the connection (WebSocket close 1002/1003/1009); an address with
``subscription.login_failures`` failed auths within ``subscription.login_window`` is
refused without its signature being checked; a connection silent for
``subscription.idle_timeout`` seconds (the SDK pings every 10 s) is closed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State as WSState
from websockets.server import ServerProtocol

from ..config import Settings
from ..errors import SubscriptionRefused
from ..proto.subscription import (
    AuthRequested,
    CloseRequested,
    CommitRequested,
    IdleRequested,
    PullRequested,
    ServerSession,
    SubscribeRequested,
    Violation,
)
from ..proto.subscription.wire import ACK_BAD_REQUEST, ACK_BAD_SIGN, ACK_NOT_FOUND, ACK_THROTTLED
from .guard import LoginGuard, Tally
from .stream import StreamConnection, StreamServer

if TYPE_CHECKING:
    from ..push.subscriptions import Member, Subscriptions
    from ..state.subscriptions import SubscriptionJob

log = logging.getLogger("headrace.subscription")
# the websockets protocol logs every frame at debug level: kept out of a debug log
ws_log = logging.getLogger("headrace.subscription.websocket")
ws_log.setLevel(logging.INFO)

WRITE_HIGH_WATER = 1024 * 1024
WRITE_LOW_WATER = 256 * 1024

THROTTLED = "too many failed auths from this address; try again later"


class SubscriptionServer(StreamServer):
    connections: set[SubscriptionConnection]

    def __init__(
        self,
        settings: Settings,
        *,
        subscriptions: Subscriptions,
        tls_context: Callable[[], ssl.SSLContext],
    ) -> None:
        s = settings
        super().__init__(
            "subscription",
            log,
            max_open=s["subscription.max_connections"],
            max_pending=s["subscription.max_pending"],
        )
        self.subscriptions = subscriptions
        self.tls_context = tls_context
        self.enabled: bool = s["subscription.enabled"]
        self.tls_enabled: bool = s["subscription.tls_enabled"]
        self.host: str = s["subscription.host"]
        self.port: int = s["subscription.port"]
        self.tls_port: int = s["subscription.tls_port"]
        self.idle_timeout: float = s["subscription.idle_timeout"]
        self.login_timeout: float = s["subscription.login_timeout"]
        self.handshake_timeout: float = s["subscription.handshake_timeout"]
        self.max_message: int = s["subscription.max_message"]
        self.pull_wait: float = s["subscription.pull_wait"]
        self.pull_batch: int = s["subscription.pull_batch"]
        self.login_guard = LoginGuard(
            "subscription", log, s["subscription.login_failures"], s["subscription.login_window"]
        )
        self.login_timeouts = Tally(
            log, "subscription auth timeout: connections closed", timeout_s=self.login_timeout
        )
        self.violations = Tally(log, "subscription protocol violations: connections closed")
        self.auths = 0
        self.refused = 0
        self.delivered = 0  # messages sent in pull replies

    async def start(self) -> None:
        if self.enabled:
            await self.listen(
                "subscription", lambda: SubscriptionConnection(self), self.host, self.port
            )
        if self.tls_enabled:
            await self.listen(
                "subscription_tls",
                lambda: SubscriptionConnection(self),
                self.host,
                self.tls_port,
                ssl=self.tls_context(),
                ssl_handshake_timeout=self.handshake_timeout,
            )
        if self.ports:
            log.info("subscription service listening", extra={"host": self.host, **self.ports})

    async def stop(self) -> None:
        self.close_listeners()
        for c in list(self.connections):
            c.close("server shutting down")
        await self.wait_closed()

    def job_changed(self, job: SubscriptionJob, what: str) -> None:
        """A job was changed or deleted: its connections close (the SDK reconnects and
        authenticates against what the job says now)."""
        if what == "created":
            return
        for c in list(self.connections):
            if c.sub_id == job.subId:
                c.close(f"subscription {what}")


class SubscriptionConnection(StreamConnection):
    server: SubscriptionServer
    write_limits = (WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def __init__(self, server: SubscriptionServer) -> None:
        super().__init__(server)
        self.ws = ServerProtocol(max_size=server.max_message, logger=ws_log)
        self.session = ServerSession()
        self.sub_id = ""
        self.access_key = ""
        self.member: Member | None = None
        self._fragments: list[bytes] = []
        self._login_by = 0.0
        self._pull_timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._authed = False
        self._account: object = None  # the service account as it was at the auth

    # -- the transport half ------------------------------------------------------------------

    def opened(self) -> None:
        server = self.server
        self._login_by = self.last_rx + server.login_timeout
        self.set_timer(min(server.login_timeout, server.idle_timeout), self._check_idle)

    def data_to_send(self) -> bytes:
        for m in self.session.messages_to_send():
            try:
                self.ws.send_binary(m)
            except InvalidState:
                break  # the WebSocket is closing: nothing more goes out
        chunks = self.ws.data_to_send()
        if chunks and chunks[-1] == b"":
            self._eof = True  # the protocol wants the TCP connection closed after these
        return b"".join(chunks)

    def received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for ev in self.ws.events_received():
            if isinstance(ev, Request):
                self._handshake(ev)
            elif isinstance(ev, Frame):
                self._frame(ev)
            if self.closed:
                return
        self._after_io()

    def _after_io(self) -> None:
        self.flush()
        if self._eof or self.ws.state is WSState.CLOSED:
            self.close(self._closing_reason())

    def _closing_reason(self) -> str:
        exc = self.ws.handshake_exc
        if exc is not None:
            return f"bad WebSocket handshake: {exc}"
        if self.ws.close_rcvd is not None:
            return "closed by the client"
        return "closed"

    def _handshake(self, request: Request) -> None:
        response = self.ws.accept(request)
        self.ws.send_response(response)
        if response.status_code != 101:
            log.info(
                "subscription handshake refused",
                extra={"address": self.address, "status": response.status_code},
            )

    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.BINARY or op is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                message = b"".join(self._fragments)
                self._fragments = []
                self._message(message)
        elif op is Opcode.TEXT:
            self._violation("text frames are not part of the protocol", CloseCode.UNSUPPORTED_DATA)

    # -- the subscription protocol -------------------------------------------------------------

    def _message(self, data: bytes) -> None:
        for ev in self.session.receive_message(data):
            if isinstance(ev, PullRequested):
                self._pull()
            elif isinstance(ev, CommitRequested):
                if self.member is not None:
                    self.member.commit(ev.commits)
            elif isinstance(ev, IdleRequested):
                self.session.answer_idle(int(time.time() * 1000))
            elif isinstance(ev, AuthRequested):
                self._auth(ev)
            elif isinstance(ev, SubscribeRequested):
                self._subscribe(ev)
            elif isinstance(ev, CloseRequested):
                self._end_websocket(CloseCode.NORMAL_CLOSURE, "close_req")
            elif isinstance(ev, Violation):
                self._violation(ev.reason, CloseCode.PROTOCOL_ERROR)

    def _violation(self, reason: str, code: int) -> None:
        self.server.violations.add()
        log.debug(
            "subscription protocol violation", extra={"address": self.address, "reason": reason}
        )
        self.session.close()
        self._end_websocket(code, reason[:120])

    def _end_websocket(self, code: int, reason: str) -> None:
        self.flush()  # what the session still has to say (a close_rsp) goes first
        try:
            self.ws.send_close(code, reason)
        except InvalidState:
            pass
        self.flush()
        self.close(reason)

    def _refuse(self, e: SubscriptionRefused, what: str, *, failed_login: bool) -> None:
        server = self.server
        server.refused += 1
        if failed_login:
            server.login_guard.failed(self.ip)
        log.info(
            f"subscription {what} refused",
            extra={
                "address": self.address,
                "sub_id": self.sub_id[:128],
                "access_key": self.access_key[:128],
                "ack": e.ack,
                "reason": e.message,
            },
        )

    def _auth(self, ev: AuthRequested) -> None:
        server = self.server
        self.sub_id = ev.sub_id
        self.access_key = ev.access_key
        if not server.login_guard.admits(self.ip):
            server.refused += 1
            self.session.refuse_auth(ACK_THROTTLED, THROTTLED)
            self.close("auth refused: too many failed auths from the address")
            return
        try:
            server.subscriptions.authenticate(ev.sub_id, ev.access_key, ev.sign, ev.sub_type)
        except SubscriptionRefused as e:
            self._refuse(e, "auth", failed_login=e.ack in (ACK_BAD_SIGN, ACK_NOT_FOUND))
            self.session.refuse_auth(e.ack, e.message)
            self.close(f"auth refused: {e.message}")  # the SDK closes on a non-zero ack
            return
        server.auths += 1
        self._account = server.subscriptions.accounts.accounts.get(ev.access_key)
        self.session.accept_auth(channel_id=f"{ev.sub_id}:{id(self):x}")
        self._authed = True
        self.authenticated()
        log.info(
            "subscription auth",
            extra={"address": self.address, "sub_id": ev.sub_id, "access_key": ev.access_key},
        )

    def _subscribe(self, ev: SubscribeRequested) -> None:
        try:
            if ev.sub_id != self.sub_id or ev.access_key != self.access_key:
                raise SubscriptionRefused(
                    ACK_BAD_REQUEST, "sub_req must name the subId and accessKey of the auth"
                )
            self.member = self.server.subscriptions.join(
                ev.sub_id, ev.category, ev.consumer_group, ev.client_id, self.address, self.wake
            )
        except SubscriptionRefused as e:
            self._refuse(e, "sub", failed_login=False)
            self.session.refuse_sub(e.ack, e.message)
            self.close(f"sub refused: {e.message}")
            return
        self.session.accept_sub(channel_id=self.member.name)

    def _pull(self) -> None:
        # an account changed since the auth (deleted, disabled, a new secret: every
        # change replaces its record) ends the connection; the SDK authenticates again
        if self.server.subscriptions.accounts.accounts.get(self.access_key) is not self._account:
            self.close("service account changed")
            return
        if self._pull_timer is None:
            self._answer_pulls(wait=True)

    def _answer_pulls(self, *, wait: bool) -> None:
        """Answer what pulls are pending: with messages if there are any, else (unless
        ``wait``) empty; a pull left waiting is answered by ``wake`` or its timer."""
        member = self.member
        session = self.session
        while session.pending_pulls and member is not None and not self.closed:
            if self.write_blocked:
                return  # answered once the client reads (``writable``)
            batch = member.take(self.server.pull_batch)
            if not batch and wait:
                if self._pull_timer is None:
                    self._pull_timer = asyncio.get_running_loop().call_later(
                        self.server.pull_wait, self._pull_timeout
                    )
                return
            self._cancel_pull_timer()
            session.reply_pull(batch)
            self.server.delivered += len(batch)
            wait = True
        self.flush()

    def wake(self) -> None:
        """The group has messages for this connection's partitions."""
        if self._pull_timer is not None and not self.closed:
            self._answer_pulls(wait=True)

    def _pull_timeout(self) -> None:
        self._pull_timer = None
        if not self.closed:
            self._answer_pulls(wait=False)

    def _cancel_pull_timer(self) -> None:
        if self._pull_timer is not None:
            self._pull_timer.cancel()
            self._pull_timer = None

    def writable(self) -> None:
        if self.session.pending_pulls and self._pull_timer is None:
            self._answer_pulls(wait=True)

    # -- deadlines, closing -------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self.closed:
            return
        now = asyncio.get_running_loop().time()
        if not self._authed and now >= self._login_by:
            self.server.login_timeouts.add()
            self.close("no auth in time")
            return
        quiet = now - self.last_rx
        timeout = self.server.idle_timeout
        if quiet >= timeout:
            log.info(
                "subscription connection idle; closing",
                extra={"address": self.address, "idle_s": round(quiet, 1)},
            )
            self.close("idle timeout")
            return
        wait = timeout - quiet
        if not self._authed:
            wait = min(wait, self._login_by - now)
        self.set_timer(max(wait, 0.01), self._check_idle)

    def closing(self) -> None:
        # No WebSocket close frame when the server ends a connection (shutdown, a job or
        # account change, idle): the Python SDK 2.6.0 reads a close frame as an empty
        # message, its fetch thread dies on it and it notices only at its next ping;
        # a closed TCP connection makes it reconnect at once. Violations and close_req
        # get their close frame (``_end_websocket``).
        pass

    def finished(self, reason: str) -> None:
        self._cancel_pull_timer()
        self.session.close()
        member, self.member = self.member, None
        if member is not None:
            member.leave()
            log.info(
                "subscription connection ended",
                extra={"address": self.address, "sub_id": self.sub_id, "reason": reason},
            )

    def info(self) -> dict[str, Any]:
        return {"address": self.address, "subId": self.sub_id, "accessKey": self.access_key}
