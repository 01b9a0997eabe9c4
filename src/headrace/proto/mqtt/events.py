"""The data of the MQTT connection state machines: their states, the events
``receive_data`` returns, and the ``SessionState`` carried between connections.

Plain data, no behaviour: ``connection``, ``server`` and ``client`` produce these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .packets import Connect, Properties, Publish, PubRel, Subscription


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
