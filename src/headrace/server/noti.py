"""The noti enterprise push service: asyncio TLS transport around ``proto.noti.ServerSession``.

One ``NotiConnection`` per socket: reads go to ``receive_data``, and whatever the session
wants sent is written. After a login (checked by ``push.directory``) the connection
consumes its enterprise's queue (``push.queue.EnterpriseQueue``), which pushes into the session's prefetch window; each
push is tagged with its queue entry, so acks delete it and a close hands the unacked
ones back for redelivery.

Flow control: when a transport's write buffer passes its high-water mark, the queue
stops pushing to it and the connection stops reading (so pongs and ``invalid_msg`` for a
client that never reads cannot pile up either); both resume when it drains. A client
silent for ``noti.idle_timeout`` seconds is closed.
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
from .stream import bound_port

log = logging.getLogger("headrace.noti")

WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024


class NotiServer:
    def __init__(
        self,
        settings: Settings,
        *,
        directory: EnterpriseDirectory,
        queues: Mapping[str, EnterpriseQueue],
        tls_context: Callable[[], ssl.SSLContext],
    ) -> None:
        s = settings
        self.directory = directory  # who may log in
        self.queues = queues  # by enterprise id: what a login consumes
        self.tls_context = tls_context
        self.enabled: bool = s["noti.enabled"]
        self.host: str = s["noti.host"]
        self.port: int = s["noti.port"]
        self.idle_timeout: float = s["noti.idle_timeout"]
        self.max_line: int = s["noti.max_line"]
        self.connections: set[NotiConnection] = set()
        self.logins = 0
        self.refused = 0
        self.rejected = 0  # invalid_msg answers
        self._server: asyncio.Server | None = None
        # the port bound ("noti"), known once start() returns
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: NotiConnection(self),
            self.host,
            self.port,
            ssl=self.tls_context(),
            ssl_handshake_timeout=30,
        )
        self.ports["noti"] = bound_port(self._server)
        log.info("noti listening", extra={"host": self.host, **self.ports})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.close("server shutting down")
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

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


class NotiConnection(asyncio.Protocol):
    def __init__(self, server: NotiServer) -> None:
        self.server = server
        self.session: ServerSession[Entry] = ServerSession(max_line=server.max_line)
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.address = ""
        self.queue: EnterpriseQueue | None = None
        self.closed = False
        self.last_rx = 0.0
        self._write_blocked = False
        self._reading = True
        self._timer: asyncio.TimerHandle | None = None
        self._reason = "connection lost"
        self._lost = False

    # -- transport callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.ip = str(peer[0])
            self.address = f"{peer[0]}:{peer[1]}"
        try:
            self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)  # type: ignore[union-attr]
        except (AttributeError, NotImplementedError):
            pass
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self.last_rx = loop.time()
        self._timer = loop.call_later(self.server.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_rx = asyncio.get_running_loop().time()
        try:
            self._received(data)
        except Exception:
            log.exception("noti connection failed", extra={"address": self.address})
            self.close("internal error")

    def _received(self, data: bytes) -> None:
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

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._finish(self._reason if exc is None else f"connection lost: {exc}")

    def pause_writing(self) -> None:
        self._write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._update_reading()
        if self.queue is not None and not self.closed:
            self.queue.pump()

    def _update_reading(self) -> None:
        if self.transport is None or self.closed:
            return
        want = not self._write_blocked
        if want != self._reading:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # -- login ---------------------------------------------------------------------------------

    def _login(self, ev: LoginRequested) -> None:
        server = self.server
        try:
            ent = server.directory.authenticate(ev.enterprise_id, ev.secret, self.ip)
        except LoginRefused as e:
            server.refused += 1
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
        if self._write_blocked or self.closed:
            return 0
        return self.session.window_free()

    def send(self, entry: Entry) -> None:
        self.session.push(entry[2], entry)

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- idle timeout, closing -----------------------------------------------------------------

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self.last_rx
        timeout = self.server.idle_timeout
        if quiet >= timeout:
            log.info(
                "noti connection idle; closing",
                extra={"address": self.address, "idle_s": round(quiet, 1)},
            )
            self.close("idle timeout")
            return
        self._timer = loop.call_later(timeout - quiet, self._check_idle)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self._reason = reason
        self.flush()
        transport = self.transport
        if transport is not None:
            transport.close()  # sends what is buffered first (a refused login's answer)
            if transport.get_write_buffer_size():
                # a peer that does not read would hold the socket open forever
                asyncio.get_running_loop().call_later(5.0, self._abort)
        self._finish(reason)

    def _abort(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abort()

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.session.close(reason)
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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

    def info(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "prefetch": self.session.prefetch_count,
            "unacked": self.session.unacked_count,
        }
