"""The server side of one MQTT client connection (sans-io; see ``connection``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .codec import (
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    SUBACK_REASON_CODES,
    UNSUBACK_REASON_CODES,
)
from .connection import DEFAULT_RECEIVE_MAXIMUM, Connection, Handler
from .errors import ReasonCode, connack_code_for
from .events import (
    ConnectionState,
    ConnectRequested,
    Event,
    PingReceived,
    ProtocolViolation,
    SessionState,
    SubscribeRequested,
    UnsubscribeRequested,
)
from .packets import (
    MAX_PACKET_SIZE,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)


class ServerConnection(Connection):
    """The server side of one client connection.

    ``max_packet_size``: largest packet accepted (advertised to 5.0 clients).
    ``max_inflight``: outgoing QoS 1/2 window (further capped by the client's Receive
    Maximum). ``receive_maximum``: incoming QoS 1/2 messages a 5.0 client may have
    unacknowledged (advertised; exceeding it is a violation); 3.1.1 clients cannot be
    told, so watch ``unacked_count``. ``topic_alias_maximum``: aliases 5.0 clients may use.

    Refused by the connection itself (CONNACK, CLOSED, ``ProtocolViolation``): a protocol
    name or level it does not serve (3.1.1 return code 1), a 5.0 CONNECT naming an
    authentication method (0x8C: no enhanced authentication is supported), a 3.1.1
    empty client id without clean session (return code 2).
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
            if self._settings_receive_maximum != DEFAULT_RECEIVE_MAXIMUM:
                props.setdefault("receive_maximum", self._settings_receive_maximum)
            if self._parser.max_packet_size < MAX_PACKET_SIZE:
                props.setdefault("maximum_packet_size", self._parser.max_packet_size)
            if self._settings_alias_max:
                props.setdefault("topic_alias_maximum", self._settings_alias_max)
            self._receive_maximum = props.get("receive_maximum", DEFAULT_RECEIVE_MAXIMUM)
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
        if self.state is not ConnectionState.CLOSED:
            self._feed(data, events)  # b"" too: an error read behind the CONNECT surfaces
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

    # -- dispatch

    def _admit(self, packet: Packet, events: list[Event]) -> bool:
        state = self.state
        if state is ConnectionState.AWAIT_ACCEPT:
            # 5.0 3.1.4: nothing after CONNECT is processed before the CONNACK; held
            # until accept() (refuse() closes).
            self._deferred_packets.append(packet)
            return False
        if state is ConnectionState.AWAIT_CONNECT and type(packet) is not Connect:
            self._unexpected(packet, events)
            return False
        return True

    def _on_connect(self, p: Connect, events: list[Event]) -> None:
        if self.state is not ConnectionState.AWAIT_CONNECT:
            self._violation(ReasonCode.PROTOCOL_ERROR, "second CONNECT", events)
            return
        self.version = self._parser.version
        self.connect_packet = p
        self.keepalive = p.keepalive
        if self.version == 5:
            props = p.properties
            if "authentication_method" in props:
                # 5.0 3.1.2.11.9: we support no enhanced authentication method.
                self._refuse_connect(
                    ReasonCode.BAD_AUTHENTICATION_METHOD,
                    "enhanced authentication is not supported",
                    events,
                )
                return
            self._take_peer_limits(props)
        elif not p.client_id and not p.clean_start:
            # 3.1.1 3.1.3.1: an empty client id needs a clean session.
            self._refuse_connect(
                ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id without clean session",
                events,
            )
            return
        self.state = ConnectionState.AWAIT_ACCEPT
        events.append(ConnectRequested(p))

    def _refuse_connect(self, reason: ReasonCode, message: str, events: list[Event]) -> None:
        """Refuse a CONNECT on the protocol's own grounds (the application never sees
        it): CONNACK with ``reason`` in the client's version, closed, a violation."""
        self._send(ConnAck(False, connack_code_for(reason, self.version or 4)))
        self.state = ConnectionState.CLOSED
        events.append(ProtocolViolation(reason, message))

    def _on_subscribe(self, p: Subscribe, events: list[Event]) -> None:
        if self._id_in_use(p.packet_id, events):
            return
        self._pending_subscribes[p.packet_id] = len(p.subscriptions)
        events.append(SubscribeRequested(p.packet_id, p.subscriptions, p.properties))

    def _on_unsubscribe(self, p: Unsubscribe, events: list[Event]) -> None:
        if self._id_in_use(p.packet_id, events):
            return
        self._pending_unsubscribes[p.packet_id] = len(p.topic_filters)
        events.append(UnsubscribeRequested(p.packet_id, p.topic_filters, p.properties))

    def _id_in_use(self, packet_id: int, events: list[Event]) -> bool:
        """A (UN)SUBSCRIBE whose id still awaits our answer (2.2.1): a violation, since
        the caller owes one answer per id."""
        if packet_id in self._pending_subscribes or packet_id in self._pending_unsubscribes:
            self._violation(
                ReasonCode.PACKET_IDENTIFIER_IN_USE, f"packet id {packet_id} is in use", events
            )
            return True
        return False

    def _on_pingreq(self, p: PingReq, events: list[Event]) -> None:
        self._send(PingResp())
        events.append(PingReceived())

    _HANDLERS: ClassVar[Mapping[type[Packet], Handler]] = {
        **Connection._HANDLERS,
        Connect: _on_connect,
        Subscribe: _on_subscribe,
        Unsubscribe: _on_unsubscribe,
        PingReq: _on_pingreq,
    }
