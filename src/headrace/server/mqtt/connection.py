"""One MQTT connection: socket reads to ``proto.mqtt.ServerConnection``, its events to the
login, subscriptions and the pipeline, and the answers back in arrival order.

Each integration request runs through the pipeline as its own task, so many requests of
one client are in flight at once (the store commits them in groups); replies and
PUBACK/PUBREC are released strictly in arrival order, and only after the request was
committed or refused. A client with ``mqtt.max_inflight`` requests unanswered, or whose
socket does not drain, is no longer read (backpressure) until it catches up: memory
stays bounded however fast clients publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import LoginRefused, TooManyConnections
from ...ingest.auth import Login
from ...ingest.pipeline import Origin
from ...proto.enos import Kind, may_subscribe, parse_topic, reply_topic
from ...proto.mqtt import (
    ConnectRequested,
    DisconnectReceived,
    ProtocolViolation,
    PublishReceived,
    ReasonCode,
    ServerConnection,
    SubscribeRequested,
    UnsubscribeRequested,
)
from ..stream import StreamConnection
from .sessions import ClientKey, Subscriptions

if TYPE_CHECKING:  # the server makes its connections: no import cycle at run time
    from .server import MQTTServer

log = logging.getLogger("headrace.mqtt")

# QoS 1 replies a subscriber may have waiting for its in-flight window before it gets no
# more copies of other connections' replies
REPLY_BACKLOG = 16


@dataclass(slots=True)
class _Slot:
    """One received PUBLISH awaiting its outcome; released in arrival order."""

    packet_id: int | None
    reply_topic: str | None
    reply: bytes | None = None
    done: bool = False


class MQTTConnection(StreamConnection):
    server: MQTTServer

    def __init__(self, server: MQTTServer, *, tls: bool):
        super().__init__(server)
        self.tls = tls
        self.conn = ServerConnection(
            server.max_packet_size, max_inflight=32, receive_maximum=max(1, server.max_inflight)
        )
        self.login: Login | None = None
        self.client_id = ""
        self.key: ClientKey = ("", "")
        self.session_expiry = 0.0
        self.subscriptions = Subscriptions()
        self.slots: deque[_Slot] = deque()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._paused = False  # stopped for good (shutdown)
        self._origin: Origin | None = None  # who this connection's requests come from
        # the JSON requests of the socket read being handled (None outside ``received``)
        self._batch: list[tuple[_Slot, PublishReceived, str, Kind]] | None = None
        self._flush_handle: asyncio.Handle | None = None

    # -- the transport half ------------------------------------------------------------------

    def opened(self) -> None:
        self.set_timer(self.server.connect_timeout, self._connect_timeout)

    def received(self, data: bytes) -> None:
        self._batch = []
        try:
            for event in self.conn.receive_data(data):
                self._on_event(event)
                if self.closed:
                    break
        finally:
            batch, self._batch = self._batch, None
        if batch:  # also when the read ended with a DISCONNECT: what came before is handled
            self._start(self._process_many(batch))
        if not self.closed:
            self.flush()

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    def wants_reading(self) -> bool:
        return not self._paused and len(self.slots) < self.server.max_inflight

    def pause(self) -> None:
        """Read nothing more (shutdown): what was received still gets answered."""
        self._paused = True
        self.update_reading()

    # -- events ------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if isinstance(event, PublishReceived):
            self._on_publish(event)
        elif isinstance(event, ConnectRequested):
            self._on_connect(event)
        elif isinstance(event, SubscribeRequested):
            self._on_subscribe(event)
        elif isinstance(event, UnsubscribeRequested):
            for f in event.topic_filters:
                self.subscriptions.remove(f)
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
        if not server.login_guard.admits(self.ip):
            # too many failed logins from this address: refused unchecked (counted, logged
            # once a second by the guard; no message-log record per attempt)
            self.conn.refuse(ReasonCode.NOT_AUTHORIZED)
            self.close("login refused: too many failed logins from the address")
            return
        record: dict[str, Any] = {
            "event": "connect",
            "clientId": p.client_id,
            "address": self.address,
            "protocol": "5.0" if version == 5 else "3.1.1",
            "tls": self.tls,
        }
        try:
            login = server.admit(p.client_id, p.username or "", p.password)
        except LoginRefused as e:
            if isinstance(e, TooManyConnections):
                code = ReasonCode.SERVER_UNAVAILABLE
            else:
                code = ReasonCode.NOT_AUTHORIZED
                server.login_guard.failed(self.ip)
            self.conn.refuse(code)
            record.update(result="refused", reason=str(e))
            server.log_refused_login(p.username or "", record)
            log.info(
                "MQTT login refused",
                extra={"client_id": p.client_id, "address": self.address, "reason": str(e)},
            )
            self.close("login refused")
            return
        if not p.client_id:
            p.client_id = f"auto-{id(self):x}"
        self.login = login
        self.authenticated()
        self.client_id = p.client_id
        self.key = (login.channel.channelId, p.client_id)
        if version == 5:
            expiry = float(p.properties.get("session_expiry_interval", 0))
        else:
            expiry = 0.0 if p.clean_start else float(server.session_expiry)
        self.session_expiry = min(expiry, float(server.session_expiry))
        stored = server.clients.attach(self.key, self, clean=p.clean_start)
        resume = None
        if stored is not None:
            self.subscriptions = Subscriptions(stored.subscriptions)
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

    def _on_subscribe(self, event: SubscribeRequested) -> None:
        codes = []
        products = self.login.products if self.login else frozenset()
        for sub in event.subscriptions:
            if may_subscribe(sub.topic_filter, products):
                granted = min(sub.qos, 1)
                self.subscriptions.add(sub.topic_filter, granted)
                codes.append(granted)
            else:
                codes.append(0x87 if self.conn.version == 5 else 0x80)
                self._log_error(
                    f"subscription to {sub.topic_filter!r} refused: outside the channel's reply topics"
                )
        self.conn.suback(event.packet_id, codes)

    def _on_publish(self, ev: PublishReceived) -> None:
        parsed = parse_topic(ev.topic)
        if parsed is None:
            self._log_error(f"publish to {ev.topic!r} refused: not an integration topic")
            if ev.packet_id is not None:
                self._enqueue(_Slot(ev.packet_id, None, done=True))
            return
        product_key, kind = parsed
        slot = _Slot(ev.packet_id, reply_topic(ev.topic))
        self._enqueue(slot)
        if kind != "raw" and self._batch is not None:
            # the JSON requests of one socket read go through the pipeline together
            self._batch.append((slot, ev, product_key, kind))
            return
        self._start(self._process(slot, ev, product_key, kind))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process_many(self, batch: list[tuple[_Slot, PublishReceived, str, Kind]]) -> None:
        origin = self._origin_of()
        try:
            results = await self.server.pipeline.handle_many(
                [(ev.payload, kind, pk, ev.topic) for _, ev, pk, kind in batch], origin
            )
        except Exception:
            # not stored, not acknowledged: drop the connection so the client resends
            log.exception("request failed; closing the connection unacknowledged")
            self.close("internal error while storing", ReasonCode.UNSPECIFIED_ERROR)
            return
        for (slot, _, _, _), result in zip(batch, results, strict=True):
            slot.reply = result.reply_bytes()
            slot.done = True
        self._release()

    def _origin_of(self) -> Origin:
        origin = self._origin
        if origin is None:
            login = self.login
            assert login is not None
            origin = self._origin = Origin(
                org_id=login.channel.orgId,
                channel_id=login.channel.channelId,
                products=login.products,
                client_id=self.client_id,
                address=self.address,
                ip=self.ip,
                rate=login.channel.rateLimit,
            )
        return origin

    async def _process(
        self, slot: _Slot, ev: PublishReceived, product_key: str, kind: Kind
    ) -> None:
        origin = self._origin_of()
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

    # -- ordered release -------------------------------------------------------------------

    def _enqueue(self, slot: _Slot) -> None:
        self.slots.append(slot)
        if slot.done:
            self._release()
        else:
            self.update_reading()

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
        self.flush_soon()
        self.update_reading()

    def flush_soon(self) -> None:
        """Write what is queued once this turn of the event loop is over: the answers of
        every request committed in one group leave in one socket write, not one each."""
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_handle = None
        if not self.closed:
            self.flush()

    def _deliver_reply(self, topic: str, reply: bytes) -> None:
        """The reply to the requester, or copies to the channel's other subscribers; a
        subscriber that does not keep up gets no more copies (counted and logged by the
        registry), so that it cannot make the hub hold every reply for it. The
        requester's own reply is never dropped (a requester that does not read is not
        read either: it cannot send more)."""
        clients = self.server.clients
        for c, qos in clients.reply_targets(self, self.key[0], topic):
            if c is not self and c.lagging:
                clients.dropped_copy(self.key[0])
                continue
            try:
                c.conn.publish(topic, reply, qos)
            except ValueError as e:  # larger than the client accepts
                self._log_error(f"reply not sent: {e}")
            if c is not self:
                c.flush_soon()

    @property
    def lagging(self) -> bool:
        """Its transport's write buffer is over the high-water mark, or its QoS 1 replies
        wait for room in the in-flight window: it does not read what it is sent."""
        return self.write_blocked or self.conn.queued_count >= REPLY_BACKLOG

    # -- timers, closing -----------------------------------------------------------------

    def _connect_timeout(self) -> None:
        if self.login is None and not self.closed:
            self.server.connect_timeouts.add()
            self.close("no CONNECT in time")

    def _arm_keepalive(self) -> None:
        keepalive = self.conn.keepalive
        if keepalive:
            self.set_timer(keepalive * 0.5, self._check_keepalive)
        else:
            self.cancel_timer()

    def _check_keepalive(self) -> None:
        if self.closed:
            return
        keepalive = self.conn.keepalive
        if asyncio.get_running_loop().time() - self.last_rx > keepalive * 1.5:
            self._log_error(f"keepalive of {keepalive} s expired")
            self.close("keepalive expired", ReasonCode.KEEP_ALIVE_TIMEOUT)
            return
        self.set_timer(keepalive * 0.5, self._check_keepalive)

    def _log_error(self, message: str, code: int | None = None) -> None:
        if self.login is not None:
            doc: dict[str, Any] = {"message": message, "clientId": self.client_id}
            if code is not None:
                doc["code"] = code
            self.server.log_record(self.login.channel.channelId, "error", doc)

    def close(self, reason: str, reason_code: int | None = None) -> None:
        """Close, telling an MQTT 5 client why with a DISCONNECT of ``reason_code``."""
        if not self.closed and reason_code is not None:
            self.conn.disconnect(reason_code)
        super().close(reason)

    def finished(self, reason: str) -> None:
        if self.login is None:
            return
        self.server.clients.detach(
            self.key, self, expiry=self.session_expiry, state=self.conn.session_state
        )
        self.server.log_record(
            self.login.channel.channelId,
            "connection",
            {
                "event": "disconnect",
                "clientId": self.client_id,
                "address": self.address,
                "reason": reason,
            },
        )
