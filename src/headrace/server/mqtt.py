"""The MQTT integration endpoint: asyncio transport around ``proto.mqtt.ServerConnection``.

One ``MQTTConnection`` per socket turns reads into ``receive_data`` and writes what the
state machine wants sent. Each integration request runs through the pipeline as its own
task, so many requests of one client are in flight at once (the store commits them in
groups); replies and PUBACK/PUBREC are released strictly in arrival order, and only after
the request was committed or refused. A client with ``mqtt.max_inflight`` requests
unanswered, or whose socket does not drain, is no longer read (backpressure) until it
catches up: memory stays bounded however fast clients publish.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..config import Settings
from ..errors import LoginRefused, TooManyConnections
from ..ingest.auth import Login, authenticate
from ..ingest.pipeline import Origin, Pipeline
from ..model.types import Channel
from ..proto.enos import (
    SIGNED_USERNAME_PREFIX,
    Kind,
    may_subscribe,
    parse_topic,
    reply_topic,
    topic_matches,
)
from ..proto.mqtt import (
    ConnectRequested,
    DisconnectReceived,
    ProtocolViolation,
    PublishReceived,
    ReasonCode,
    ServerConnection,
    SessionState,
    SubscribeRequested,
    UnsubscribeRequested,
)
from ..state.registry import Registry
from ..store.base import Store
from .stream import bound_port

log = logging.getLogger("headrace.mqtt")
_json = msgspec.json.Encoder()


@dataclass(slots=True)
class _Slot:
    """One received PUBLISH awaiting its outcome; released in arrival order."""

    packet_id: int | None
    reply_topic: str | None
    reply: bytes | None = None
    done: bool = False


@dataclass(slots=True)
class _Session:
    """A persistent session kept between connections (clean_session=0)."""

    subscriptions: dict[str, int]
    state: SessionState
    expires: float


class MQTTServer:
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
        self.connections: set[MQTTConnection] = set()
        self.clients: dict[str, MQTTConnection] = {}
        self.by_channel: dict[str, set[MQTTConnection]] = {}
        self.sessions: dict[str, _Session] = {}
        self._servers: list[asyncio.Server] = []
        self._background: set[asyncio.Task[Any]] = set()
        # the ports bound ("mqtt", "mqtt_tls"), known once start() returns
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.enabled:
            srv = await loop.create_server(
                lambda: MQTTConnection(self, tls=False), self.host, self.port
            )
            self._servers.append(srv)
            self.ports["mqtt"] = bound_port(srv)
        if self.tls_enabled:
            srv = await loop.create_server(
                lambda: MQTTConnection(self, tls=True),
                self.host,
                self.tls_port,
                ssl=self.tls_context(),
            )
            self._servers.append(srv)
            self.ports["mqtt_tls"] = bound_port(srv)
        log.info("MQTT listening", extra={"host": self.host, **self.ports})

    async def stop(self) -> None:
        for srv in self._servers:
            srv.close()
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
        for srv in self._servers:
            await srv.wait_closed()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def log_record(self, channel_id: str, kind: str, doc: dict[str, Any]) -> None:
        rec = (channel_id, int(time.time() * 1000), kind, _json.encode(doc))
        self.spawn(self.store.append_log([rec]))

    def channel_changed(self, channel: Channel) -> None:
        """A channel was changed: drop its connections when disabled, refresh their login."""
        for c in list(self.connections):
            if c.login is None or c.login.channel.channelId != channel.channelId:
                continue
            if not channel.enabled:
                c.close("channel disabled", ReasonCode.NOT_AUTHORIZED)
            elif c.login.method == "channel":
                c.login = Login(channel, frozenset(channel.products), "channel")

    def expire_sessions(self) -> None:
        now = time.monotonic()
        for cid in [k for k, s in self.sessions.items() if s.expires < now]:
            del self.sessions[cid]


class MQTTConnection(asyncio.Protocol):
    def __init__(self, server: MQTTServer, *, tls: bool):
        self.server = server
        self.tls = tls
        self.conn = ServerConnection(
            server.max_packet_size, max_inflight=32, receive_maximum=max(1, server.max_inflight)
        )
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.address = ""
        self.login: Login | None = None
        self.client_id = ""
        self.clean = True
        self.session_expiry = 0.0
        self.subscriptions: dict[str, int] = {}
        self.slots: deque[_Slot] = deque()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_rx = 0.0
        self.closed = False
        self._reading = True
        self._paused = False  # stopped for good (shutdown)
        self._write_blocked = False
        self._timer: asyncio.TimerHandle | None = None
        self._close_reason = "connection lost"

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        self.address = f"{peer[0]}:{peer[1]}" if peer else ""
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self.last_rx = loop.time()
        self._timer = loop.call_later(self.server.connect_timeout, self._connect_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_rx = asyncio.get_running_loop().time()
        for event in self.conn.receive_data(data):
            self._on_event(event)
            if self.closed:
                return
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(self._close_reason if exc is None else f"connection lost: {exc}")

    def pause_writing(self) -> None:
        self._write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._update_reading()

    # -- events ------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if isinstance(event, PublishReceived):
            self._on_publish(event)
        elif isinstance(event, ConnectRequested):
            self._on_connect(event)
        elif isinstance(event, SubscribeRequested):
            codes = []
            products = self.login.products if self.login else frozenset()
            for sub in event.subscriptions:
                if may_subscribe(sub.topic_filter, products):
                    granted = min(sub.qos, 1)
                    self.subscriptions[sub.topic_filter] = granted
                    codes.append(granted)
                else:
                    codes.append(0x87 if self.conn.version == 5 else 0x80)
                    self._log_error(
                        f"subscription to {sub.topic_filter!r} refused: outside the channel's reply topics"
                    )
            self.conn.suback(event.packet_id, codes)
        elif isinstance(event, UnsubscribeRequested):
            for f in event.topic_filters:
                self.subscriptions.pop(f, None)
            self.conn.unsuback(event.packet_id)
        elif isinstance(event, DisconnectReceived):
            self.close("client disconnected")
        elif isinstance(event, ProtocolViolation):
            self._log_error(f"protocol violation: {event.message}")
            self.close(f"protocol violation: {event.message}")

    def _on_connect(self, event: ConnectRequested) -> None:
        p = event.packet
        server = self.server
        version = self.conn.version or 4
        record: dict[str, Any] = {
            "event": "connect",
            "clientId": p.client_id,
            "address": self.address,
            "protocol": "5.0" if version == 5 else "3.1.1",
            "tls": self.tls,
        }
        try:
            if len(server.clients) >= server.max_connections and p.client_id not in server.clients:
                raise TooManyConnections("too many connections")
            login = authenticate(server.registry, p.client_id, p.username or "", p.password)
        except LoginRefused as e:
            code = (
                ReasonCode.SERVER_UNAVAILABLE
                if isinstance(e, TooManyConnections)
                else ReasonCode.NOT_AUTHORIZED
            )
            self.conn.refuse(code)
            record.update(result="refused", reason=str(e))
            username = p.username or ""
            channel = server.registry.channels_by_user.get(username)
            if channel is None and username.startswith(SIGNED_USERNAME_PREFIX):
                channel = server.registry.channel_for_product(
                    username[len(SIGNED_USERNAME_PREFIX) :]
                )
            if channel is not None:
                server.log_record(channel.channelId, "connection", record)
            log.info(
                "MQTT login refused",
                extra={"client_id": p.client_id, "address": self.address, "reason": str(e)},
            )
            self._flush()
            self.close("login refused", send=False)
            return
        if not p.client_id:
            p.client_id = f"auto-{id(self):x}"
        self.login = login
        self.client_id = p.client_id
        self.clean = p.clean_start
        if version == 5:
            self.session_expiry = float(p.properties.get("session_expiry_interval", 0))
        else:
            self.session_expiry = 0.0 if p.clean_start else float(server.session_expiry)
        self.session_expiry = min(self.session_expiry, float(server.session_expiry))
        old = server.clients.get(p.client_id)
        if old is not None:
            old.close("session taken over", ReasonCode.SESSION_TAKEN_OVER)
        server.clients[p.client_id] = self
        server.by_channel.setdefault(login.channel.channelId, set()).add(self)
        server.expire_sessions()
        stored = server.sessions.pop(p.client_id, None)
        resume = None
        if p.clean_start or stored is None:
            stored = None
        else:
            self.subscriptions = dict(stored.subscriptions)
            resume = stored.state
        props: dict[str, Any] = {}
        if version == 5 and p.client_id.startswith("auto-"):
            props["assigned_client_identifier"] = p.client_id
        for ev in self.conn.accept(
            session_present=stored is not None, resume=resume, properties=props
        ):
            self._on_event(ev)
        record.update(result="accepted", login=login.method)
        server.log_record(login.channel.channelId, "connection", record)
        self._arm_keepalive()

    def _on_publish(self, ev: PublishReceived) -> None:
        login = self.login
        assert login is not None
        parsed = parse_topic(ev.topic)
        if parsed is None:
            self._log_error(f"publish to {ev.topic!r} refused: not an integration topic")
            if ev.packet_id is not None:
                self._enqueue(_Slot(ev.packet_id, None, done=True))
            return
        product_key, kind = parsed
        slot = _Slot(ev.packet_id, reply_topic(ev.topic))
        self._enqueue(slot)
        task = asyncio.get_running_loop().create_task(self._process(slot, ev, product_key, kind))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process(
        self, slot: _Slot, ev: PublishReceived, product_key: str, kind: Kind
    ) -> None:
        login = self.login
        assert login is not None
        origin = Origin(
            org_id=login.channel.orgId,
            channel_id=login.channel.channelId,
            products=login.products,
            client_id=self.client_id,
            address=self.address,
            ip=self.ip,
            rate=login.channel.rateLimit,
        )
        try:
            result = await self.server.pipeline.handle(
                ev.payload, kind=kind, product_key=product_key, origin=origin, topic=ev.topic
            )
        except Exception:
            # not stored, not acknowledged: drop the connection so the client resends
            log.exception("request failed; closing the connection unacknowledged")
            self.close("internal error while storing", ReasonCode.UNSPECIFIED_ERROR)
            return
        slot.reply = result.reply_bytes()
        slot.done = True
        self._release()

    # -- ordered release, flow control ------------------------------------------------------

    def _enqueue(self, slot: _Slot) -> None:
        self.slots.append(slot)
        if slot.done:
            self._release()
        else:
            self._update_reading()

    def _release(self) -> None:
        if self.closed:
            return
        slots = self.slots
        while slots and slots[0].done:
            slot = slots.popleft()
            if slot.reply is not None and slot.reply_topic is not None:
                self._deliver_reply(slot.reply_topic, slot.reply)
            if slot.packet_id is not None:
                self.conn.ack_publish(slot.packet_id)
        self._flush()
        self._update_reading()

    def _deliver_reply(self, topic: str, reply: bytes) -> None:
        """Publish a reply to the requesting connection when it subscribed to the topic
        (what the SDKs do), else to the channel's other connections that did (a
        mosquitto_sub beside mosquitto_pub), as a broker would.

        Not to every subscriber every time: with many connections of one channel that
        would multiply reply traffic by the number of connections.
        """
        assert self.login is not None
        if self._subscribed_qos(topic) is not None:
            targets: Iterable[MQTTConnection] = (self,)
        else:
            targets = self.server.by_channel.get(self.login.channel.channelId, ())
        for c in targets:
            qos = c._subscribed_qos(topic)
            if qos is None:
                continue
            try:
                c.conn.publish(topic, reply, qos)
            except ValueError as e:  # larger than the client accepts
                self._log_error(f"reply not sent: {e}")
            if c is not self:
                c._flush()

    def _subscribed_qos(self, topic: str) -> int | None:
        best = None
        for f, qos in self.subscriptions.items():
            if topic_matches(f, topic) and (best is None or qos > best):
                best = qos
        return best

    def _update_reading(self) -> None:
        if self.transport is None or self.closed:
            return
        want = (
            not self._paused
            and not self._write_blocked
            and len(self.slots) < self.server.max_inflight
        )
        if want != self._reading:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def pause(self) -> None:
        self._paused = True
        self._update_reading()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- timers, closing -----------------------------------------------------------------

    def _connect_timeout(self) -> None:
        if self.login is None and not self.closed:
            self.close("no CONNECT in time", send=False)

    def _arm_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        keepalive = self.conn.keepalive
        if keepalive:
            self._timer = asyncio.get_running_loop().call_later(
                keepalive * 0.5, self._check_keepalive
            )

    def _check_keepalive(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        keepalive = self.conn.keepalive
        if loop.time() - self.last_rx > keepalive * 1.5:
            self._log_error(f"keepalive of {keepalive} s expired")
            self.close("keepalive expired", ReasonCode.KEEP_ALIVE_TIMEOUT)
            return
        self._timer = loop.call_later(keepalive * 0.5, self._check_keepalive)

    def _log_error(self, message: str, code: int | None = None) -> None:
        if self.login is not None:
            doc: dict[str, Any] = {"message": message, "clientId": self.client_id}
            if code is not None:
                doc["code"] = code
            self.server.log_record(self.login.channel.channelId, "error", doc)

    def close(self, reason: str, reason_code: int | None = None, *, send: bool = True) -> None:
        if self.closed:
            return
        self._close_reason = reason
        if send and reason_code is not None:
            self.conn.disconnect(reason_code)
        self._flush()
        if self.transport is not None:
            self.transport.close()
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        server = self.server
        server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self.login is None:
            return
        server.by_channel.get(self.login.channel.channelId, set()).discard(self)
        if server.clients.get(self.client_id) is self:
            del server.clients[self.client_id]
            if self.session_expiry > 0:
                server.sessions[self.client_id] = _Session(
                    dict(self.subscriptions),
                    self.conn.session_state(),
                    time.monotonic() + self.session_expiry,
                )
        server.log_record(
            self.login.channel.channelId,
            "connection",
            {
                "event": "disconnect",
                "clientId": self.client_id,
                "address": self.address,
                "reason": reason,
            },
        )
