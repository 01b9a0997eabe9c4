"""Sans-io MQTT connection state machines, one per connection (h11 style).

``ServerConnection`` is the broker side of one client connection, ``ClientConnection``
the client side for the SDK. Neither does I/O or keeps time: give received bytes to
``receive_data(data)``, act on the events it returns, and write out whatever
``data_to_send()`` returns after every call. Keep-alive timing is the caller's job:
``keepalive`` is the negotiated interval in seconds.

Both sides run the QoS 1/2 flows of both directions:

- incoming PUBLISH: ``PublishReceived`` once per message. QoS 1/2 are answered by
  ``ack_publish(packet_id)`` (the server calls it after the data is stored; the client
  acks automatically by default). For QoS 2 the PUBREL -> PUBCOMP step is automatic, and
  a re-sent PUBLISH whose packet id is still being processed or waiting for PUBREL is
  never delivered again (it is answered with PUBREC when appropriate, silently otherwise).
- outgoing PUBLISH: ``publish(...)`` returns the packet id; at most ``max_inflight``
  (and the peer's Receive Maximum) QoS 1/2 messages are in flight, the rest wait in a
  queue; ``PublishAcked`` reports the PUBACK / PUBCOMP (or a PUBREC refusal).
  ``session_state()`` snapshots unacknowledged work so that a later connection of the
  same session can resend it with DUP (``accept(..., resume=)`` / ``connect(..., resume=)``).

A ``ProtocolViolation`` event means the peer broke the spec: the state is now CLOSED,
and the caller sends ``data_to_send()`` (a 5.0 DISCONNECT with the reason, or a CONNACK
refusal) and closes the transport. Calling methods in the wrong state is a bug of the
caller and raises ``RuntimeError``; bad arguments raise ``ValueError``. Acks requested
after the connection closed are ignored, so late store commits need no special care.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from .codec import (
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    PUBACK_REASON_CODES,
    SUBACK_REASON_CODES,
    UNSUBACK_REASON_CODES,
    Parser,
    encode,
)
from .errors import MQTTProtocolError, ReasonCode, connack_code_for
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
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    valid_topic_filter,
    valid_topic_name,
)

_MAX_PACKET_ID = 0xFFFF
_DEFAULT_RECEIVE_MAXIMUM = 0xFFFF


class ConnectionState(Enum):
    NEW = "new"  # client: connect() not called yet
    AWAIT_CONNECT = "await_connect"  # server: nothing received yet
    AWAIT_ACCEPT = "await_accept"  # server: CONNECT received, accept()/refuse() due
    AWAIT_CONNACK = "await_connack"  # client: CONNECT sent
    CONNECTED = "connected"
    CLOSED = "closed"


# ------------------------------------------------------------------------------ events


class Event:
    """Base of everything ``receive_data`` returns."""

    __slots__ = ()


@dataclass(slots=True)
class ConnectRequested(Event):
    """Server: a CONNECT arrived; answer with ``accept()`` or ``refuse()``."""

    packet: Connect


@dataclass(slots=True)
class ConnAckReceived(Event):
    """Client: the CONNACK. ``reason_code`` != 0 means refused (state is then CLOSED)."""

    session_present: bool
    reason_code: int
    properties: Properties


@dataclass(slots=True)
class PublishReceived(Event):
    """An application message. ``packet_id`` is None for QoS 0. ``topic`` is resolved
    from a 5.0 topic alias when one was used."""

    packet_id: int | None
    qos: int
    topic: str
    payload: bytes
    retain: bool
    dup: bool
    properties: Properties


@dataclass(slots=True)
class PublishAcked(Event):
    """Our QoS 1/2 PUBLISH ``packet_id`` is done: PUBACK, PUBCOMP, or a PUBREC with a
    failure reason (>= 0x80, 5.0 only) arrived."""

    packet_id: int
    reason_code: int = 0


@dataclass(slots=True)
class SubscribeRequested(Event):
    """Server: answer with ``suback(packet_id, codes)``, one code per subscription."""

    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties


@dataclass(slots=True)
class SubAckReceived(Event):
    packet_id: int
    reason_codes: list[int]
    properties: Properties


@dataclass(slots=True)
class UnsubscribeRequested(Event):
    """Server: answer with ``unsuback(packet_id)``."""

    packet_id: int
    topic_filters: list[str]
    properties: Properties


@dataclass(slots=True)
class UnsubAckReceived(Event):
    packet_id: int
    reason_codes: list[int]  # empty in 3.1.1
    properties: Properties


@dataclass(slots=True)
class PingReceived(Event):
    """Server: a PINGREQ; the PINGRESP is already queued."""


@dataclass(slots=True)
class PingRespReceived(Event):
    """Client: the PINGRESP to our ``ping()``."""


@dataclass(slots=True)
class DisconnectReceived(Event):
    """The peer sent DISCONNECT; the state is CLOSED. In 5.0, reason 0x04 asks the
    server to publish the will anyway; any other reason from a client discards it."""

    reason_code: int
    properties: Properties


@dataclass(slots=True)
class AuthReceived(Event):
    """5.0 enhanced authentication step (only after a CONNECT that named a method)."""

    reason_code: int
    properties: Properties


@dataclass(slots=True)
class ProtocolViolation(Event):
    """The peer broke the spec. Send ``data_to_send()``, then close the transport."""

    reason_code: int
    message: str


@dataclass(slots=True)
class SessionState:
    """Unfinished outgoing and incoming QoS 1/2 work of one session, to carry over to
    the next connection of the same client (the caller stores it between connections).

    ``inflight``: sent and unacknowledged, in send order (PUBLISH awaiting PUBACK/PUBREC,
    PUBREL awaiting PUBCOMP); ``queued``: accepted by ``publish()`` but not sent yet;
    ``awaiting_pubrel``: incoming QoS 2 packet ids whose PUBREC was sent.
    """

    inflight: list[Publish | PubRel] = field(default_factory=list)
    queued: list[Publish] = field(default_factory=list)
    awaiting_pubrel: set[int] = field(default_factory=set)
    next_packet_id: int = 1


# --------------------------------------------------------------------------- machinery


class _Connection:
    """What both roles share: parsing, the outgoing buffer and the QoS flows."""

    def __init__(self, *, max_packet_size: int, max_inflight: int, version: int | None) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self._parser = Parser(max_packet_size, version)
        self.version: int | None = self._parser.version
        self.state = ConnectionState.NEW
        self.keepalive = 0
        self._out: list[bytes] = []
        # outgoing QoS 1/2
        self._max_inflight = max_inflight
        self._send_window = max_inflight
        self._peer_max_packet_size = MAX_PACKET_SIZE
        self._peer_maximum_qos = 2
        self._inflight: dict[int, Publish | PubRel] = {}
        self._queued: deque[Publish] = deque()
        self._ids_in_use: set[int] = set()
        self._next_id = 1
        # incoming QoS 1/2
        self._auto_ack = False
        self._receive_maximum = _DEFAULT_RECEIVE_MAXIMUM
        self._unacked: dict[int, int] = {}  # packet id -> QoS, delivered but not acked
        self._awaiting_pubrel: set[int] = set()
        self._alias_max = 0
        self._aliases: dict[int, str] = {}
        self._enhanced_auth = False

    # -- public, both roles

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (possibly b"")."""
        if not self._out:
            return b""
        out = self._out
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    @property
    def max_packet_size(self) -> int:
        """Our limit for received packets."""
        return self._parser.max_packet_size

    @property
    def inflight_count(self) -> int:
        """Outgoing QoS 1/2 messages sent and not yet fully acknowledged."""
        return len(self._inflight)

    @property
    def queued_count(self) -> int:
        """Outgoing messages waiting for room in the in-flight window."""
        return len(self._queued)

    @property
    def unacked_count(self) -> int:
        """Incoming QoS 1/2 messages delivered as events and not yet ``ack_publish``ed.
        A server may stop reading while this is high (3.1.1 has no Receive Maximum)."""
        return len(self._unacked)

    def ack_publish(
        self, packet_id: int, reason_code: int = 0, properties: Properties | None = None
    ) -> None:
        """Acknowledge an incoming QoS 1 (PUBACK) or QoS 2 (PUBREC) PUBLISH.

        ``reason_code``/``properties`` are sent in 5.0 only (e.g. 0x87 not authorized,
        0x97 quota exceeded); 3.1.1 cannot say no. A no-op once the connection closed.
        """
        if self.state is ConnectionState.CLOSED:
            return
        if self.version == 5 and reason_code not in PUBACK_REASON_CODES:
            raise ValueError(f"reason code {reason_code:#x} not allowed in PUBACK/PUBREC")
        qos = self._unacked.pop(packet_id, None)
        if qos is None:
            raise ValueError(f"no unacknowledged incoming PUBLISH with packet id {packet_id}")
        self._ack(packet_id, qos, reason_code, properties)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Send an application message; returns its packet id (0 for QoS 0).

        QoS 1/2 messages beyond the in-flight window are queued and sent as acks come
        in. Raises ``ValueError`` if the packet exceeds the peer's Maximum Packet Size.
        """
        self._check_can_publish()
        if not valid_topic_name(topic):
            raise ValueError(f"invalid topic name {topic!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
        if qos > self._peer_maximum_qos:
            raise ValueError(f"the peer accepts QoS {self._peer_maximum_qos} at most")
        props = dict(properties) if properties and self.version == 5 else {}
        pid = self._allocate_id() if qos else None
        packet = Publish(topic, bytes(payload), qos, retain, False, pid, props)
        try:
            data = self._encode(packet)
        except ValueError:
            self._free_id(pid)
            raise
        if len(data) > self._peer_max_packet_size:
            self._free_id(pid)
            raise ValueError(
                f"PUBLISH of {len(data)} bytes exceeds the peer's maximum packet size "
                f"{self._peer_max_packet_size}"
            )
        if self.state is ConnectionState.CONNECTED and not self._queued:
            if pid is None:
                self._out.append(data)
                return 0
            if len(self._inflight) < self._send_window:
                self._inflight[pid] = packet
                self._out.append(data)
                return pid
        self._queued.append(packet)
        return pid or 0

    def session_state(self) -> SessionState:
        """A snapshot of the unfinished QoS 1/2 work, for the session's next connection."""
        return SessionState(
            inflight=list(self._inflight.values()),
            queued=[p for p in self._queued if p.qos],
            awaiting_pubrel=set(self._awaiting_pubrel),
            next_packet_id=self._next_id,
        )

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete."""
        events: list[Event] = []
        if self.state is ConnectionState.CLOSED:
            return events
        self._feed(data, events)
        return events

    # -- internals

    def _feed(self, data: bytes | bytearray | memoryview, events: list[Event]) -> None:
        try:
            packets = self._parser.feed(data)
        except MQTTProtocolError as exc:
            self._violation(exc.reason_code, exc.message, events)
            return
        self._process(packets, events)
        error = self._parser.error
        if error is not None:
            self._violation(error.reason_code, error.message, events)

    def _process(self, packets: Iterable[Packet], events: list[Event]) -> None:
        for packet in packets:
            if self.state is ConnectionState.CLOSED:
                return
            self._handle(packet, events)

    def _handle(self, packet: Packet, events: list[Event]) -> None:
        raise NotImplementedError

    def _check_can_publish(self) -> None:
        if self.state is not ConnectionState.CONNECTED:
            raise RuntimeError(f"cannot publish in state {self.state.value}")

    def _encode(self, packet: Packet) -> bytes:
        return encode(packet, self.version or 4)

    def _send(self, packet: Packet) -> None:
        self._out.append(encode(packet, self.version or 4))

    def _violation(self, reason: int, message: str, events: list[Event]) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        if self.version == 5 and self.state is ConnectionState.CONNECTED:
            code = reason if reason in DISCONNECT_REASON_CODES else ReasonCode.PROTOCOL_ERROR
            self._send(Disconnect(code))
        elif (
            reason == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
            and self.state is ConnectionState.AWAIT_CONNECT
        ):
            # 3.1.1 3.1.2.2: answer an unsupported protocol level with return code 1.
            self._out.append(encode(ConnAck(False, 1), 4))
        self.state = ConnectionState.CLOSED
        events.append(ProtocolViolation(reason, message))

    def _allocate_id(self) -> int:
        used = self._ids_in_use
        if len(used) >= _MAX_PACKET_ID:
            raise RuntimeError("all 65535 packet identifiers are in use")
        pid = self._next_id
        while pid in used:
            pid = pid % _MAX_PACKET_ID + 1
        self._next_id = pid % _MAX_PACKET_ID + 1
        used.add(pid)
        return pid

    def _free_id(self, packet_id: int | None) -> None:
        if packet_id is not None:
            self._ids_in_use.discard(packet_id)

    def _pump(self) -> None:
        """Send queued messages while the in-flight window has room."""
        queued = self._queued
        while queued and self.state is ConnectionState.CONNECTED:
            packet = queued[0]
            if packet.qos:
                if len(self._inflight) >= self._send_window:
                    return
                self._inflight[packet.packet_id] = packet  # type: ignore[index]
            queued.popleft()
            self._send(packet)

    def _restore(self, state: SessionState, session_present: bool) -> None:
        """Take over ``state`` (ids already reserved); resend per the session outcome."""
        pending = self._queued
        self._queued = deque()
        if session_present:
            self._awaiting_pubrel = set(state.awaiting_pubrel)
        for item in state.inflight:
            if isinstance(item, PubRel):
                if session_present:
                    self._inflight[item.packet_id] = item
                    self._send(item)
                else:
                    # The receiver already owns a QoS 2 message whose PUBREC we had.
                    self._free_id(item.packet_id)
            else:
                packet = replace(item, dup=session_present)
                # Resend in the original order (4.6), within the window.
                if not self._queued and len(self._inflight) < self._send_window:
                    self._inflight[item.packet_id] = packet  # type: ignore[index]
                    self._send(packet)
                else:
                    self._queued.append(packet)
        self._queued.extend(state.queued)
        self._queued.extend(pending)
        self._pump()

    def _reserve(self, state: SessionState) -> None:
        for item in state.inflight:
            self._ids_in_use.add(item.packet_id)  # type: ignore[arg-type]
        for item in state.queued:
            self._ids_in_use.add(item.packet_id)  # type: ignore[arg-type]
        self._next_id = state.next_packet_id if 1 <= state.next_packet_id <= 0xFFFF else 1

    def _ack(
        self, packet_id: int, qos: int, reason_code: int, properties: Properties | None
    ) -> None:
        if self.version != 5:
            reason_code, properties = 0, None
        props = dict(properties) if properties else {}
        if qos == 1:
            self._send(PubAck(packet_id, reason_code, props))
        else:
            self._send(PubRec(packet_id, reason_code, props))
            if reason_code < 0x80:
                self._awaiting_pubrel.add(packet_id)

    # -- packet handlers shared by both roles

    def _on_publish(self, p: Publish, events: list[Event]) -> None:
        topic = p.topic
        if self.version == 5:
            alias = p.properties.get("topic_alias")
            if alias is not None:
                if alias > self._alias_max:
                    self._violation(
                        ReasonCode.TOPIC_ALIAS_INVALID, "topic alias out of range", events
                    )
                    return
                if topic:
                    self._aliases[alias] = topic
                else:
                    known = self._aliases.get(alias)
                    if known is None:
                        self._violation(ReasonCode.PROTOCOL_ERROR, "unknown topic alias", events)
                        return
                    topic = known
        qos = p.qos
        if not qos:
            events.append(PublishReceived(None, 0, topic, p.payload, p.retain, False, p.properties))
            return
        pid: int = p.packet_id  # type: ignore[assignment]
        if pid in self._unacked:
            return  # a resend of a message still being processed: its ack will follow
        if qos == 2 and pid in self._awaiting_pubrel:
            self._send(PubRec(pid))  # resend of a message already taken: ack, don't deliver
            return
        if (
            self.version == 5
            and len(self._unacked) + len(self._awaiting_pubrel) >= self._receive_maximum
        ):
            self._violation(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded", events)
            return
        events.append(PublishReceived(pid, qos, topic, p.payload, p.retain, p.dup, p.properties))
        if self._auto_ack:
            self._ack(pid, qos, 0, None)
        else:
            self._unacked[pid] = qos

    def _on_pubrel(self, p: PubRel) -> None:
        pid = p.packet_id
        if pid in self._awaiting_pubrel:
            self._awaiting_pubrel.discard(pid)
            self._send(PubComp(pid))
        else:
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.version == 5 else 0
            self._send(PubComp(pid, code))

    def _on_puback(self, p: PubAck, events: list[Event]) -> None:
        entry = self._inflight.get(p.packet_id)
        if isinstance(entry, Publish) and entry.qos == 1:
            self._finish(p.packet_id, p.reason_code, events)

    def _on_pubrec(self, p: PubRec, events: list[Event]) -> None:
        pid = p.packet_id
        entry = self._inflight.get(pid)
        if isinstance(entry, Publish) and entry.qos == 2:
            if p.reason_code >= 0x80:
                self._finish(pid, p.reason_code, events)
            else:
                release = PubRel(pid)
                self._inflight[pid] = release
                self._send(release)
        elif isinstance(entry, PubRel):
            self._send(entry)
        elif entry is None:
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.version == 5 else 0
            self._send(PubRel(pid, code))

    def _on_pubcomp(self, p: PubComp, events: list[Event]) -> None:
        if isinstance(self._inflight.get(p.packet_id), PubRel):
            self._finish(p.packet_id, p.reason_code, events)

    def _finish(self, packet_id: int, reason_code: int, events: list[Event]) -> None:
        del self._inflight[packet_id]
        self._ids_in_use.discard(packet_id)
        events.append(PublishAcked(packet_id, reason_code))
        self._pump()

    def _on_disconnect(self, p: Disconnect, events: list[Event]) -> None:
        self.state = ConnectionState.CLOSED
        events.append(DisconnectReceived(p.reason_code, p.properties))

    def _on_auth(self, p: Auth, events: list[Event]) -> None:
        if not self._enhanced_auth:
            self._violation(
                ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method", events
            )
        else:
            events.append(AuthReceived(p.reason_code, p.properties))

    def _unexpected(self, packet: Packet, events: list[Event]) -> None:
        name = packet.packet_type.name
        self._violation(
            ReasonCode.PROTOCOL_ERROR, f"unexpected {name} in state {self.state.value}", events
        )

    def send_auth(self, reason_code: int, properties: Properties | None = None) -> None:
        """Send an AUTH packet (5.0 enhanced authentication, after a method was named)."""
        if self.version != 5 or not self._enhanced_auth:
            raise RuntimeError("AUTH needs 5.0 and an authentication method")
        if self.state is ConnectionState.CLOSED:
            return
        self._send(Auth(reason_code, dict(properties or {})))


# ------------------------------------------------------------------------------ server


class ServerConnection(_Connection):
    """The server side of one client connection.

    ``max_packet_size``: largest packet accepted (advertised to 5.0 clients).
    ``max_inflight``: outgoing QoS 1/2 window (further capped by the client's Receive
    Maximum). ``receive_maximum``: incoming QoS 1/2 messages a 5.0 client may have
    unacknowledged (advertised; exceeding it is a violation); 3.1.1 clients cannot be
    told, so watch ``unacked_count``. ``topic_alias_maximum``: aliases 5.0 clients may use.
    """

    def __init__(
        self,
        max_packet_size: int,
        max_inflight: int = 20,
        *,
        receive_maximum: int = 100,
        topic_alias_maximum: int = 0,
    ) -> None:
        super().__init__(max_packet_size=max_packet_size, max_inflight=max_inflight, version=None)
        if not 1 <= receive_maximum <= 0xFFFF:
            raise ValueError("receive_maximum must be 1..65535")
        if not 0 <= topic_alias_maximum <= 0xFFFF:
            raise ValueError("topic_alias_maximum must be 0..65535")
        self.state = ConnectionState.AWAIT_CONNECT
        self._settings_receive_maximum = receive_maximum
        self._settings_alias_max = topic_alias_maximum
        self.connect_packet: Connect | None = None
        self._deferred_packets: list[Packet] = []
        self._deferred_data = bytearray()
        self._pending_subscribes: dict[int, int] = {}  # packet id -> number of filters
        self._pending_unsubscribes: dict[int, int] = {}

    @property
    def client_id(self) -> str | None:
        """The client id from CONNECT (or as assigned through ``accept``)."""
        return self.connect_packet.client_id if self.connect_packet else None

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        if self.state is ConnectionState.CLOSED:
            return events
        if self.state is ConnectionState.AWAIT_ACCEPT:
            # 5.0 3.1.4: nothing after CONNECT is processed before the CONNACK. Hold it,
            # up to one maximum packet; a client that pushes more before being accepted
            # is abusing the grace.
            if len(self._deferred_data) + len(data) > self._parser.max_packet_size:
                self._violation(ReasonCode.QUOTA_EXCEEDED, "too much data before CONNACK", events)
            else:
                self._deferred_data += data
            return events
        self._feed(data, events)
        return events

    def accept(
        self,
        session_present: bool = False,
        *,
        properties: Properties | None = None,
        resume: SessionState | None = None,
    ) -> list[Event]:
        """Send CONNACK success. Returns the events of packets the client sent right
        behind its CONNECT (they are held until now).

        5.0: ``properties`` go into the CONNACK; receive_maximum, maximum_packet_size and
        topic_alias_maximum are filled in from the constructor unless given, and a
        ``server_keep_alive`` given here becomes the negotiated ``keepalive``. A client
        that sent an empty client id needs ``assigned_client_identifier`` (caller's job).
        ``resume``: with ``session_present``, the stored ``SessionState`` of the session;
        its unacknowledged messages are resent (PUBLISH with DUP) at once.
        """
        if self.state is not ConnectionState.AWAIT_ACCEPT:
            raise RuntimeError(f"accept() in state {self.state.value}")
        props: Properties = {}
        if self.version == 5:
            props = dict(properties or {})
            if self._settings_receive_maximum != _DEFAULT_RECEIVE_MAXIMUM:
                props.setdefault("receive_maximum", self._settings_receive_maximum)
            if self._parser.max_packet_size < MAX_PACKET_SIZE:
                props.setdefault("maximum_packet_size", self._parser.max_packet_size)
            if self._settings_alias_max:
                props.setdefault("topic_alias_maximum", self._settings_alias_max)
            self._receive_maximum = props.get("receive_maximum", _DEFAULT_RECEIVE_MAXIMUM)
            self._alias_max = props.get("topic_alias_maximum", 0)
            if "server_keep_alive" in props:
                self.keepalive = props["server_keep_alive"]
            assigned = props.get("assigned_client_identifier")
            if assigned and self.connect_packet is not None:
                self.connect_packet.client_id = assigned
        self._send(ConnAck(session_present, 0, props))
        self.state = ConnectionState.CONNECTED
        if resume is not None and session_present:
            self._reserve(resume)
            self._restore(resume, True)
        events: list[Event] = []
        deferred, self._deferred_packets = self._deferred_packets, []
        self._process(deferred, events)
        data, self._deferred_data = self._deferred_data, bytearray()
        if data and self.state is not ConnectionState.CLOSED:
            self._feed(data, events)
        return events

    def refuse(self, reason: int, *, properties: Properties | None = None) -> None:
        """Send a CONNACK refusal; the connection is then CLOSED (send, then close).

        ``reason`` is a 5.0 reason code (e.g. 0x87 not authorized, 0x86 bad user name
        or password) or a 3.1.1 return code (1..5); it is mapped to what the client's
        version uses (0x87 <-> 5, 0x86 <-> 4, 0x85 <-> 2, 0x84 <-> 1, others -> 3).
        """
        if self.state is not ConnectionState.AWAIT_ACCEPT:
            raise RuntimeError(f"refuse() in state {self.state.value}")
        version = self.version or 4
        code = connack_code_for(reason, version)
        refused = code >= 0x80 if version == 5 else code != 0
        if not refused:
            raise ValueError("refuse() needs a failure reason")
        if version == 5 and code not in CONNACK_REASON_CODES:
            raise ValueError(f"reason code {code:#x} not allowed in CONNACK")
        props = dict(properties or {}) if version == 5 else {}
        self._send(ConnAck(False, code, props))
        self.state = ConnectionState.CLOSED

    def suback(
        self, packet_id: int, reason_codes: list[int], properties: Properties | None = None
    ) -> None:
        """Answer SUBSCRIBE ``packet_id``: one code per subscription, a granted QoS
        (0..2) or a failure (0x80; 5.0 may use e.g. 0x87, mapped to 0x80 for 3.1.1)."""
        if self.state is ConnectionState.CLOSED:
            return
        expected = self._pending_subscribes.pop(packet_id, None)
        if expected is None:
            raise ValueError(f"no SUBSCRIBE with packet id {packet_id} awaits a SUBACK")
        if len(reason_codes) != expected:
            self._pending_subscribes[packet_id] = expected
            raise ValueError(f"SUBSCRIBE {packet_id} had {expected} filters")
        if self.version == 5:
            bad = [c for c in reason_codes if c not in SUBACK_REASON_CODES]
            if bad:
                self._pending_subscribes[packet_id] = expected
                raise ValueError(f"invalid SUBACK reason codes {bad}")
            codes = list(reason_codes)
        else:
            codes = [c if c in (0, 1, 2) else 0x80 for c in reason_codes]
        props = dict(properties or {}) if self.version == 5 else {}
        self._send(SubAck(packet_id, codes, props))

    def unsuback(
        self,
        packet_id: int,
        reason_codes: list[int] | None = None,
        properties: Properties | None = None,
    ) -> None:
        """Answer UNSUBSCRIBE ``packet_id``; 5.0 codes default to success for each filter."""
        if self.state is ConnectionState.CLOSED:
            return
        expected = self._pending_unsubscribes.pop(packet_id, None)
        if expected is None:
            raise ValueError(f"no UNSUBSCRIBE with packet id {packet_id} awaits an UNSUBACK")
        if self.version == 5:
            codes = list(reason_codes) if reason_codes is not None else [0] * expected
            if len(codes) != expected or not UNSUBACK_REASON_CODES.issuperset(codes):
                self._pending_unsubscribes[packet_id] = expected
                raise ValueError(f"UNSUBACK {packet_id} needs {expected} valid reason codes")
            self._send(UnsubAck(packet_id, codes, dict(properties or {})))
        else:
            self._send(UnsubAck(packet_id))

    def disconnect(self, reason_code: int = 0, properties: Properties | None = None) -> None:
        """Close the session from our side: 5.0 sends DISCONNECT with ``reason_code``
        (e.g. 0x8B server shutting down, 0x8E session taken over, 0x8D keep alive
        timeout; a code DISCONNECT cannot carry becomes 0x80); 3.1.1 has no server
        DISCONNECT, so nothing is sent. Then close the transport."""
        if self.state is ConnectionState.CLOSED:
            return
        if self.version == 5 and self.state is ConnectionState.CONNECTED:
            if reason_code not in DISCONNECT_REASON_CODES:
                reason_code = ReasonCode.UNSPECIFIED_ERROR  # closing must not fail
            self._send(Disconnect(reason_code, dict(properties or {})))
        self.state = ConnectionState.CLOSED

    # -- handlers

    def _handle(self, packet: Packet, events: list[Event]) -> None:
        state = self.state
        if state is ConnectionState.AWAIT_ACCEPT:
            self._deferred_packets.append(packet)
        elif state is ConnectionState.AWAIT_CONNECT:
            if isinstance(packet, Connect):
                self._on_connect(packet, events)
            else:
                self._unexpected(packet, events)
        elif isinstance(packet, Publish):
            self._on_publish(packet, events)
        elif isinstance(packet, PubAck):
            self._on_puback(packet, events)
        elif isinstance(packet, PubRel):
            self._on_pubrel(packet)
        elif isinstance(packet, PubRec):
            self._on_pubrec(packet, events)
        elif isinstance(packet, PubComp):
            self._on_pubcomp(packet, events)
        elif isinstance(packet, Subscribe):
            self._pending_subscribes[packet.packet_id] = len(packet.subscriptions)
            events.append(
                SubscribeRequested(packet.packet_id, packet.subscriptions, packet.properties)
            )
        elif isinstance(packet, Unsubscribe):
            self._pending_unsubscribes[packet.packet_id] = len(packet.topic_filters)
            events.append(
                UnsubscribeRequested(packet.packet_id, packet.topic_filters, packet.properties)
            )
        elif isinstance(packet, PingReq):
            self._send(PingResp())
            events.append(PingReceived())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(packet, events)
        elif isinstance(packet, Auth):
            self._on_auth(packet, events)
        elif isinstance(packet, Connect):
            self._violation(ReasonCode.PROTOCOL_ERROR, "second CONNECT", events)
        else:
            self._unexpected(packet, events)

    def _on_connect(self, p: Connect, events: list[Event]) -> None:
        self.version = self._parser.version
        self.connect_packet = p
        self.keepalive = p.keepalive
        if self.version == 5:
            props = p.properties
            self._send_window = min(
                self._max_inflight, props.get("receive_maximum", _DEFAULT_RECEIVE_MAXIMUM)
            )
            self._peer_max_packet_size = props.get("maximum_packet_size", MAX_PACKET_SIZE)
            self._enhanced_auth = "authentication_method" in props
        elif not p.client_id and not p.clean_start:
            # 3.1.1 3.1.3.1: an empty client id needs a clean session.
            self._send(ConnAck(False, 2))
            self.state = ConnectionState.CLOSED
            events.append(
                ProtocolViolation(
                    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
                    "empty client id without clean session",
                )
            )
            return
        self.state = ConnectionState.AWAIT_ACCEPT
        events.append(ConnectRequested(p))


# ------------------------------------------------------------------------------ client


class ClientConnection(_Connection):
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
        self._receive_maximum = props.get("receive_maximum", _DEFAULT_RECEIVE_MAXIMUM)
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

    def _handle(self, packet: Packet, events: list[Event]) -> None:
        if self.state is ConnectionState.AWAIT_CONNACK:
            if isinstance(packet, ConnAck):
                self._on_connack(packet, events)
            elif isinstance(packet, Auth):
                self._on_auth(packet, events)
            elif isinstance(packet, Disconnect):
                self._on_disconnect(packet, events)
            else:
                self._unexpected(packet, events)
        elif isinstance(packet, Publish):
            self._on_publish(packet, events)
        elif isinstance(packet, PubAck):
            self._on_puback(packet, events)
        elif isinstance(packet, PubRel):
            self._on_pubrel(packet)
        elif isinstance(packet, PubRec):
            self._on_pubrec(packet, events)
        elif isinstance(packet, PubComp):
            self._on_pubcomp(packet, events)
        elif isinstance(packet, SubAck):
            self._on_suback(packet, events)
        elif isinstance(packet, UnsubAck):
            self._on_unsuback(packet, events)
        elif isinstance(packet, PingResp):
            events.append(PingRespReceived())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(packet, events)
        elif isinstance(packet, Auth):
            self._on_auth(packet, events)
        else:
            self._unexpected(packet, events)

    def _on_connack(self, p: ConnAck, events: list[Event]) -> None:
        if p.reason_code:
            self.state = ConnectionState.CLOSED
            self._queued.clear()
            events.append(ConnAckReceived(p.session_present, p.reason_code, p.properties))
            return
        self.state = ConnectionState.CONNECTED
        if self.version == 5:
            props = p.properties
            self._send_window = min(
                self._max_inflight, props.get("receive_maximum", _DEFAULT_RECEIVE_MAXIMUM)
            )
            self._peer_max_packet_size = props.get("maximum_packet_size", MAX_PACKET_SIZE)
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
