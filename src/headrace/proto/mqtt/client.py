"""The client side of one MQTT connection, for the SDK (sans-io; see ``connection``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from .codec import DISCONNECT_REASON_CODES
from .connection import DEFAULT_RECEIVE_MAXIMUM, Connection, Handler
from .errors import ReasonCode
from .events import (
    ConnAckReceived,
    ConnectionState,
    Event,
    PingRespReceived,
    SessionState,
    SubAckReceived,
    UnsubAckReceived,
)
from .packets import (
    MAX_PACKET_SIZE,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    valid_topic_filter,
)

# What may arrive before the CONNACK (anything else is a protocol violation).
_BEFORE_CONNACK: frozenset[type[Packet]] = frozenset({ConnAck, Auth, Disconnect})


class ClientConnection(Connection):
    """The client side of one connection (for the SDK).

    ``version``: 4 (3.1.1, default) or 5. ``auto_ack``: acknowledge incoming QoS 1/2
    PUBLISH as soon as it is delivered (else call ``ack_publish``). Messages published
    before the CONNACK are queued and sent once it arrives.
    """

    def __init__(
        self,
        version: int = 4,
        *,
        max_packet_size: int = MAX_PACKET_SIZE,
        max_inflight: int = 20,
        auto_ack: bool = True,
    ) -> None:
        if version not in (3, 4, 5):
            raise ValueError(f"unsupported MQTT version {version!r}")
        super().__init__(
            max_packet_size=max_packet_size, max_inflight=max_inflight, version=version
        )
        self._auto_ack = auto_ack
        self._wire_level = version
        self._resume: SessionState | None = None
        self._pending_acks: dict[int, type[Packet]] = {}
        self.client_id: str | None = None

    def connect(
        self,
        client_id: str,
        *,
        username: str | None = None,
        password: bytes | str | None = None,
        keepalive: int = 60,
        clean: bool = True,
        will: Will | None = None,
        properties: Properties | None = None,
        resume: SessionState | None = None,
    ) -> None:
        """Queue the CONNECT. ``resume``: the ``SessionState`` of the previous connection
        of this session; when the CONNACK reports the session present, its messages are
        resent with DUP, otherwise its unacknowledged PUBLISHes are sent afresh."""
        if self.state is not ConnectionState.NEW:
            raise RuntimeError("connect() may be called once")
        props = dict(properties or {}) if self.version == 5 else {}
        if self.version == 5 and self._parser.max_packet_size < MAX_PACKET_SIZE:
            props.setdefault("maximum_packet_size", self._parser.max_packet_size)
        if isinstance(password, str):
            password = password.encode("utf-8")
        packet = Connect(
            client_id,
            clean,
            keepalive,
            username,
            password,
            will,
            props,
            "MQIsdp" if self._wire_level == 3 else "MQTT",
            self._wire_level,
        )
        self._send(packet)
        self.client_id = client_id
        self.keepalive = keepalive
        self._alias_max = props.get("topic_alias_maximum", 0)
        self._receive_maximum = props.get("receive_maximum", DEFAULT_RECEIVE_MAXIMUM)
        self._enhanced_auth = "authentication_method" in props
        if resume is not None:
            self._reserve(resume)
            self._resume = resume
        self.state = ConnectionState.AWAIT_CONNACK

    def subscribe(
        self,
        subscriptions: Iterable[Subscription | tuple[str, int] | str],
        *,
        properties: Properties | None = None,
    ) -> int:
        """Send SUBSCRIBE; returns its packet id (see ``SubAckReceived``). Items are
        ``Subscription``s, ``(filter, qos)`` pairs or bare filters (QoS 0)."""
        self._check_can_send()
        subs: list[Subscription] = []
        for item in subscriptions:
            if isinstance(item, Subscription):
                subs.append(item)
            elif isinstance(item, str):
                subs.append(Subscription(item))
            else:
                subs.append(Subscription(item[0], item[1]))
        if not subs:
            raise ValueError("SUBSCRIBE needs at least one topic filter")
        for sub in subs:
            if not valid_topic_filter(sub.topic_filter, shared=self.version == 5):
                raise ValueError(f"invalid topic filter {sub.topic_filter!r}")
        pid = self._allocate_id()
        self._pending_acks[pid] = Subscribe
        props = dict(properties or {}) if self.version == 5 else {}
        self._send(Subscribe(pid, subs, props))
        return pid

    def unsubscribe(
        self, topic_filters: Iterable[str], *, properties: Properties | None = None
    ) -> int:
        """Send UNSUBSCRIBE; returns its packet id (see ``UnsubAckReceived``)."""
        self._check_can_send()
        filters = list(topic_filters)
        if not filters:
            raise ValueError("UNSUBSCRIBE needs at least one topic filter")
        for topic_filter in filters:
            if not valid_topic_filter(topic_filter, shared=self.version == 5):
                raise ValueError(f"invalid topic filter {topic_filter!r}")
        pid = self._allocate_id()
        self._pending_acks[pid] = Unsubscribe
        props = dict(properties or {}) if self.version == 5 else {}
        self._send(Unsubscribe(pid, filters, props))
        return pid

    def ping(self) -> None:
        """Send PINGREQ (the caller's keep-alive timer decides when)."""
        if self.state is not ConnectionState.CONNECTED:
            raise RuntimeError(f"ping() in state {self.state.value}")
        self._send(PingReq())

    def disconnect(self, reason_code: int = 0, properties: Properties | None = None) -> None:
        """Send DISCONNECT (reason and properties in 5.0 only; 0x04 asks for the will
        to be published) and close."""
        if self.state in (ConnectionState.CLOSED, ConnectionState.NEW):
            self.state = ConnectionState.CLOSED
            return
        if self.version == 5:
            if reason_code not in DISCONNECT_REASON_CODES:
                reason_code = ReasonCode.UNSPECIFIED_ERROR  # closing must not fail
            self._send(Disconnect(reason_code, dict(properties or {})))
        else:
            self._send(Disconnect())
        self.state = ConnectionState.CLOSED

    # -- internals

    def _check_can_publish(self) -> None:
        if self.state not in (ConnectionState.AWAIT_CONNACK, ConnectionState.CONNECTED):
            raise RuntimeError(f"cannot publish in state {self.state.value}")

    def _check_can_send(self) -> None:
        self._check_can_publish()

    # -- dispatch

    def _admit(self, packet: Packet, events: list[Event]) -> bool:
        if self.state is ConnectionState.AWAIT_CONNACK and type(packet) not in _BEFORE_CONNACK:
            self._unexpected(packet, events)
            return False
        return True

    def _on_connack(self, p: ConnAck, events: list[Event]) -> None:
        if self.state is not ConnectionState.AWAIT_CONNACK:
            self._unexpected(p, events)
            return
        if p.reason_code:
            self.state = ConnectionState.CLOSED
            self._queued.clear()
            events.append(ConnAckReceived(p.session_present, p.reason_code, p.properties))
            return
        self.state = ConnectionState.CONNECTED
        if self.version == 5:
            props = p.properties
            self._take_peer_limits(props)
            self._peer_maximum_qos = props.get("maximum_qos", 2)
            if "server_keep_alive" in props:
                self.keepalive = props["server_keep_alive"]
            if "assigned_client_identifier" in props:
                self.client_id = props["assigned_client_identifier"]
        events.append(ConnAckReceived(p.session_present, p.reason_code, p.properties))
        resume, self._resume = self._resume, None
        if resume is not None:
            self._restore(resume, p.session_present)
        else:
            self._pump()

    def _on_suback(self, p: SubAck, events: list[Event]) -> None:
        if self._pending_acks.get(p.packet_id) is Subscribe:
            del self._pending_acks[p.packet_id]
            self._ids_in_use.discard(p.packet_id)
            events.append(SubAckReceived(p.packet_id, p.reason_codes, p.properties))

    def _on_unsuback(self, p: UnsubAck, events: list[Event]) -> None:
        if self._pending_acks.get(p.packet_id) is Unsubscribe:
            del self._pending_acks[p.packet_id]
            self._ids_in_use.discard(p.packet_id)
            events.append(UnsubAckReceived(p.packet_id, p.reason_codes, p.properties))

    def _on_pingresp(self, p: PingResp, events: list[Event]) -> None:
        events.append(PingRespReceived())

    _HANDLERS: ClassVar[Mapping[type[Packet], Handler]] = {
        **Connection._HANDLERS,
        ConnAck: _on_connack,
        SubAck: _on_suback,
        UnsubAck: _on_unsuback,
        PingResp: _on_pingresp,
    }
