"""The MQTT integration endpoint's listeners (TCP and TLS), logins, and what outlives one
connection: the clients registry, the message-log writes of connection records.

Against a hostile client: a TLS handshake must finish within
``mqtt.tls_handshake_timeout``, CONNECT come within ``mqtt.connect_timeout``; at most
``mqtt.max_pending`` connections wait for their CONNECT (a new one closes the oldest);
an address with ``mqtt.login_failures`` failed logins within ``mqtt.login_window`` is
refused without its credentials being checked (``guard.LoginGuard``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ...config import Settings
from ...errors import TooManyConnections
from ...ingest.auth import Login, authenticate
from ...ingest.pipeline import Pipeline
from ...model.types import Channel
from ...proto.enos import SIGNED_USERNAME_PREFIX
from ...proto.mqtt import ReasonCode
from ...state.registry import Registry
from ...store.base import Store
from ..guard import LoginGuard, Tally
from ..stream import StreamServer
from .connection import MQTTConnection
from .sessions import Clients

log = logging.getLogger("headrace.mqtt")
_json = msgspec.json.Encoder()


class MQTTServer(StreamServer):
    connections: set[MQTTConnection]

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry,
        pipeline: Pipeline,
        store: Store,
        tls_context: Callable[[], ssl.SSLContext],
    ):
        s = settings
        super().__init__("MQTT", log, max_pending=s["mqtt.max_pending"])
        self.registry = registry
        self.pipeline = pipeline
        self.store = store
        self.tls_context = tls_context
        self.host: str = s["mqtt.host"]
        self.port: int = s["mqtt.port"]
        self.tls_port: int = s["mqtt.tls_port"]
        self.enabled: bool = s["mqtt.enabled"]
        self.tls_enabled: bool = s["mqtt.tls_enabled"]
        self.max_packet_size: int = s["mqtt.max_packet_size"]
        self.max_inflight: int = s["mqtt.max_inflight"]
        self.max_connections: int = s["mqtt.max_connections"]
        self.session_expiry: int = s["mqtt.session_expiry"]
        self.connect_timeout: float = s["mqtt.connect_timeout"]
        self.tls_handshake_timeout: float = s["mqtt.tls_handshake_timeout"]
        self.login_guard = LoginGuard("MQTT", log, s["mqtt.login_failures"], s["mqtt.login_window"])
        self.connect_timeouts = Tally(
            log, "MQTT connect timeout: connections closed", timeout_s=self.connect_timeout
        )
        self.clients: Clients[MQTTConnection] = Clients(float(self.session_expiry))
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if self.enabled:
            await self.listen("mqtt", lambda: MQTTConnection(self, tls=False), self.host, self.port)
        if self.tls_enabled:
            await self.listen(
                "mqtt_tls",
                lambda: MQTTConnection(self, tls=True),
                self.host,
                self.tls_port,
                ssl=self.tls_context(),
                ssl_handshake_timeout=self.tls_handshake_timeout,
            )
        log.info("MQTT listening", extra={"host": self.host, **self.ports})

    async def stop(self) -> None:
        self.close_listeners()
        conns = list(self.connections)
        for c in conns:
            c.pause()
        # requests already received finish (stored and answered) before we close
        pending = [t for c in conns for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=15)
        for c in conns:
            c.close("server shutting down", ReasonCode.SERVER_SHUTTING_DOWN)
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        await self.wait_closed()

    # -- logins ------------------------------------------------------------------------------

    def admit(self, client_id: str, username: str, password: bytes | None) -> Login:
        """The login of a CONNECT; raises ``LoginRefused`` (``TooManyConnections`` at the
        connection limit: a client already connected may still reconnect)."""
        login = authenticate(self.registry, client_id, username, password)
        key = (login.channel.channelId, client_id)
        if len(self.clients) >= self.max_connections and not self.clients.connected(key):
            raise TooManyConnections("too many connections")
        return login

    def log_refused_login(self, username: str, record: dict[str, Any]) -> None:
        """A refused login goes to the log of the channel its username names, if any."""
        channel = self.registry.channels_by_user.get(username)
        if channel is None and username.startswith(SIGNED_USERNAME_PREFIX):
            channel = self.registry.channel_for_product(username[len(SIGNED_USERNAME_PREFIX) :])
        if channel is not None:
            self.log_record(channel.channelId, "connection", record)

    def channel_changed(self, channel: Channel) -> None:
        """A channel was changed: drop its connections when disabled, refresh their login."""
        for c in self.clients.of_channel(channel.channelId):
            if c.login is None:
                continue
            if not channel.enabled:
                c.close("channel disabled", ReasonCode.NOT_AUTHORIZED)
            elif c.login.method == "channel":
                c.login = Login(channel, frozenset(channel.products), "channel")

    # -- the message log -----------------------------------------------------------------------

    def log_record(self, channel_id: str, kind: str, doc: dict[str, Any]) -> None:
        rec = (channel_id, int(time.time() * 1000), kind, _json.encode(doc))
        self._spawn(self.store.append_log([rec]))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
