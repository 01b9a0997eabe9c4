"""Sans-io MQTT connection state machines, one per connection (h11 style): the part
both roles share. ``ServerConnection`` (``server``) is the broker side of one client
connection, ``ClientConnection`` (``client``) the client side for the SDK; what they
return is in ``events``. Neither does I/O or keeps time: give received bytes to
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from .codec import DISCONNECT_REASON_CODES, PUBACK_REASON_CODES, Parser, encode
from .errors import MQTTProtocolError, ReasonCode
from .events import (
    AuthReceived,
    ConnectionState,
    DisconnectReceived,
    Event,
    ProtocolViolation,
    PublishAcked,
    PublishReceived,
    SessionState,
)
from .packets import (
    MAX_PACKET_SIZE,
    Auth,
    ConnAck,
    Disconnect,
    Packet,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    valid_topic_name,
)

MAX_PACKET_ID = 0xFFFF
DEFAULT_RECEIVE_MAXIMUM = 0xFFFF

Handler = Callable[[Any, Any, list[Event]], None]
"""A dispatch table entry: ``handler(connection, packet, events)``, a plain function
(the method as defined in the class body) taking the packet class it is filed under."""

_CONNECTED = ConnectionState.CONNECTED
_CLOSED = ConnectionState.CLOSED


class Connection:
    """What both roles share: parsing, the outgoing buffer, the QoS flows and the
    packet dispatch.

    Dispatch (``_process``): ``_HANDLERS`` maps each packet class a role accepts to its
    handler, built once per class at the end of its body: this base files the packets
    both roles handle, each role's table extends it with its own. Packet classes are
    final, so ``type(packet)`` finds the entry; a packet without one is a protocol
    violation. The entries are the functions themselves, so a role that overrides a
    handler files the override in its table. Before CONNECTED, ``_admit`` first decides
    whether a packet is dispatched at all (held, refused, or let through).
    """

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
        self._receive_maximum = DEFAULT_RECEIVE_MAXIMUM
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

    def send_auth(self, reason_code: int, properties: Properties | None = None) -> None:
        """Send an AUTH packet (5.0 enhanced authentication, after a method was named)."""
        if self.version != 5 or not self._enhanced_auth:
            raise RuntimeError("AUTH needs 5.0 and an authentication method")
        if self.state is ConnectionState.CLOSED:
            return
        self._send(Auth(reason_code, dict(properties or {})))

    # -- internals

    def _feed(self, data: bytes | bytearray | memoryview, events: list[Event]) -> None:
        try:
            packets = self._parser.feed(data)
        except MQTTProtocolError as exc:
            self._violation(exc.reason_code, exc.message, events)
            return
        self._process(packets, events)
        error = self._parser.error
        # Behind a CONNECT awaiting its answer (server), the error waits in the parser
        # like the packets before it: accept() surfaces it, refuse() drops it.
        if error is not None and self.state is not ConnectionState.AWAIT_ACCEPT:
            self._violation(error.reason_code, error.message, events)

    def _process(self, packets: Iterable[Packet], events: list[Event]) -> None:
        """The dispatch: each packet to its role's handler (see the class docstring)."""
        handlers = self._HANDLERS
        for packet in packets:
            state = self.state
            if state is not _CONNECTED:
                if state is _CLOSED:
                    return
                if not self._admit(packet, events):
                    continue
            handler = handlers.get(type(packet))
            if handler is None:
                self._unexpected(packet, events)
            else:
                handler(self, packet, events)

    def _admit(self, packet: Packet, events: list[Event]) -> bool:
        """Before CONNECTED (and not CLOSED): whether ``packet`` is dispatched now. A
        role that holds or refuses packets in its opening states does so here."""
        return True

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
        if len(used) >= MAX_PACKET_ID:
            raise RuntimeError("all 65535 packet identifiers are in use")
        pid = self._next_id
        while pid in used:
            pid = pid % MAX_PACKET_ID + 1
        self._next_id = pid % MAX_PACKET_ID + 1
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

    def _take_peer_limits(self, props: Properties) -> None:
        """The 5.0 peer's Receive Maximum and Maximum Packet Size (CONNECT / CONNACK)."""
        self._send_window = min(
            self._max_inflight, props.get("receive_maximum", DEFAULT_RECEIVE_MAXIMUM)
        )
        self._peer_max_packet_size = props.get("maximum_packet_size", MAX_PACKET_SIZE)

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

    def _on_pubrel(self, p: PubRel, events: list[Event]) -> None:
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

    # The shared part of the dispatch table; each role's class extends it.
    _HANDLERS: ClassVar[Mapping[type[Packet], Handler]] = {
        Publish: _on_publish,
        PubAck: _on_puback,
        PubRec: _on_pubrec,
        PubRel: _on_pubrel,
        PubComp: _on_pubcomp,
        Disconnect: _on_disconnect,
        Auth: _on_auth,
    }
