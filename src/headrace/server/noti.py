"""The noti enterprise push service: asyncio TLS transport around ``proto.noti.ServerSession``.

One ``NotiConnection`` per socket: reads go to ``receive_data``, and whatever the session
wants sent is written (the transport half is ``stream.StreamConnection``). After a login
(checked by ``push.directory``) the connection consumes its enterprise's queue
(``push.queue.EnterpriseQueue``), which pushes into the session's prefetch window; each
push is tagged with its queue entry, so acks delete it and a close hands the unacked
ones back for redelivery.

Flow control: when a transport's write buffer passes its high-water mark, the queue
stops pushing to it and the connection stops reading (so pongs and ``invalid_msg`` for a
client that never reads cannot pile up either); both resume when it drains. A client
silent for ``noti.idle_timeout`` seconds is closed.

Against a hostile client: the TLS handshake must finish within
``noti.handshake_timeout`` and the login come within ``noti.login_timeout`` (a ping does
not count: before login it is ``invalid_msg``); at most ``noti.max_connections`` are open
and ``noti.max_pending`` not logged in (a new one beyond either closes the oldest not
logged in, or is closed at once); an address with ``noti.login_failures`` failed logins
within ``noti.login_window`` is refused without its credentials being checked.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from ..config import Settings
from ..errors import LoginRefused
from ..proto.noti import Acked, CloseRequired, LoginRequested, MessageRejected, ServerSession
from ..push.directory import EnterpriseDirectory
from ..push.enterprises import Enterprise
from ..push.queue import EnterpriseQueue, Entry
from .guard import LoginGuard, Tally
from .stream import StreamConnection, StreamServer

log = logging.getLogger("headrace.noti")

THROTTLED = "too many failed logins from this address; try again later"

WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024


class NotiServer(StreamServer):
    connections: set[NotiConnection]

    def __init__(
        self,
        settings: Settings,
        *,
        directory: EnterpriseDirectory,
        queues: Mapping[str, EnterpriseQueue],
        tls_context: Callable[[], ssl.SSLContext],
    ) -> None:
        s = settings
        super().__init__(
            "noti", log, max_open=s["noti.max_connections"], max_pending=s["noti.max_pending"]
        )
        self.directory = directory  # who may log in
        self.queues = queues  # by enterprise id: what a login consumes
        self.tls_context = tls_context
        self.enabled: bool = s["noti.enabled"]
        self.host: str = s["noti.host"]
        self.port: int = s["noti.port"]
        self.idle_timeout: float = s["noti.idle_timeout"]
        self.max_line: int = s["noti.max_line"]
        self.login_timeout: float = s["noti.login_timeout"]
        self.handshake_timeout: float = s["noti.handshake_timeout"]
        self.login_guard = LoginGuard("noti", log, s["noti.login_failures"], s["noti.login_window"])
        self.login_timeouts = Tally(
            log, "noti login timeout: connections closed", timeout_s=self.login_timeout
        )
        self.logins = 0
        self.refused = 0
        self.rejected = 0  # invalid_msg answers

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.listen(
            "noti",
            lambda: NotiConnection(self),
            self.host,
            self.port,
            ssl=self.tls_context(),
            ssl_handshake_timeout=self.handshake_timeout,
        )
        log.info("noti listening", extra={"host": self.host, **self.ports})

    async def stop(self) -> None:
        self.close_listeners()
        for c in list(self.connections):
            c.close("server shutting down")
        await self.wait_closed()

    def enterprise_changed(self, ent: Enterprise, what: str) -> None:
        """Drop the connections an enterprise change no longer allows."""
        eid = ent.enterpriseId
        for c in list(self.connections):
            if c.queue is None or c.queue.id != eid:
                continue
            if what == "deleted":
                c.close("enterprise deleted")
            elif what == "secret":
                c.close("enterprise secret changed")
            elif not self.directory.allows(eid, c.ip):
                c.close("address no longer allowed")


class NotiConnection(StreamConnection):
    server: NotiServer
    # a client that does not read stops the pushes (and pongs) to it early
    write_limits = (WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def __init__(self, server: NotiServer) -> None:
        super().__init__(server)
        self.session: ServerSession[Entry] = ServerSession(max_line=server.max_line)
        self.queue: EnterpriseQueue | None = None
        self._login_by = 0.0  # the login deadline (loop time)

    # -- the transport half ------------------------------------------------------------------

    def opened(self) -> None:
        server = self.server
        self._login_by = self.last_rx + server.login_timeout
        self.set_timer(min(server.login_timeout, server.idle_timeout), self._check_idle)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def received(self, data: bytes) -> None:
        freed = False
        queue = self.queue
        for ev in self.session.receive_data(data):
            if isinstance(ev, Acked):
                if queue is not None:
                    queue.ack(ev.tag)
                freed = True
            elif isinstance(ev, LoginRequested):
                self._login(ev)
                if self.closed:
                    return
                queue = self.queue
            elif isinstance(ev, MessageRejected):
                self.server.rejected += 1
                log.debug(
                    "invalid noti message",
                    extra={"address": self.address, "code": ev.error_code, "detail": ev.msg},
                )
            elif isinstance(ev, CloseRequired):
                log.info(
                    "noti connection closed", extra={"address": self.address, "reason": ev.reason}
                )
                self.close(ev.reason)
                return
        self.flush()
        if freed and queue is not None:
            queue.pump()

    def writable(self) -> None:
        if self.queue is not None:
            self.queue.pump()

    # -- login ---------------------------------------------------------------------------------

    def _login(self, ev: LoginRequested) -> None:
        server = self.server
        if not server.login_guard.admits(self.ip):
            # refused unchecked (counted, logged once a second by the guard)
            server.refused += 1
            self.session.refuse_login(THROTTLED)
            self.close("login refused: too many failed logins from the address")
            return
        try:
            ent = server.directory.authenticate(ev.enterprise_id, ev.secret, self.ip)
        except LoginRefused as e:
            server.refused += 1
            server.login_guard.failed(self.ip)
            log.info(
                "noti login refused",
                extra={
                    "enterprise": ev.enterprise_id[:128],
                    "address": self.address,
                    "reason": str(e),
                },
            )
            self.session.refuse_login(str(e))
            self.close(f"login refused: {e}")
            return
        queue = server.queues[ent.enterpriseId]
        self.session.accept_login()
        server.logins += 1
        self.queue = queue
        self.authenticated()
        log.info(
            "noti login",
            extra={
                "enterprise": ev.enterprise_id,
                "address": self.address,
                "prefetch": ev.prefetch_count,
            },
        )
        self.flush()
        queue.attach(self)

    # -- the queue's consumer ------------------------------------------------------------------

    def window(self) -> int:
        if self.write_blocked or self.closed:
            return 0
        return self.session.window_free()

    def send(self, entry: Entry) -> None:
        self.session.push(entry[2], entry)

    def info(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "prefetch": self.session.prefetch_count,
            "unacked": self.session.unacked_count,
        }

    # -- login deadline and idle timeout, closing ----------------------------------------------

    def _check_idle(self) -> None:
        if self.closed:
            return
        now = asyncio.get_running_loop().time()
        if self.queue is None and now >= self._login_by:
            self.server.login_timeouts.add()
            self.close("no login in time")
            return
        quiet = now - self.last_rx
        timeout = self.server.idle_timeout
        if quiet >= timeout:
            log.info(
                "noti connection idle; closing",
                extra={"address": self.address, "idle_s": round(quiet, 1)},
            )
            self.close("idle timeout")
            return
        wait = timeout - quiet
        if self.queue is None:
            wait = min(wait, self._login_by - now)
        self.set_timer(wait, self._check_idle)

    def finished(self, reason: str) -> None:
        self.session.close(reason)
        queue = self.queue
        if queue is not None:
            unacked = self.session.unacked_tags()
            log.info(
                "noti connection ended",
                extra={
                    "enterprise": queue.id,
                    "address": self.address,
                    "reason": reason,
                    "unacked": len(unacked),
                },
            )
            queue.detach(self, unacked)
