"""MQTT 3.1.1 and 5.0 control packets as plain typed values.

One slotted dataclass per control packet; the same classes serve both protocol
versions, and fields a version does not have (reason codes and properties in 3.1.1)
are simply left at their defaults. ``codec.encode`` / ``codec.Parser`` turn them into
bytes and back.

MQTT 5 properties are kept generically in a ``dict`` keyed by property *name* (the
spec's name in snake case, e.g. ``"message_expiry_interval"``; see ``PROPERTIES``).
Values are ``int`` (byte, two/four byte and variable byte integers), ``str`` (UTF-8
strings) or ``bytes`` (binary data). The two properties that may occur more than once
are lists: ``"user_property"`` is a ``list[tuple[str, str]]`` in wire order and
``"subscription_identifier"`` a ``list[int]`` (a single ``int`` is accepted on encode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

Properties = dict[str, Any]

# The largest packet MQTT can express: 1 type byte + 4 length bytes + 268,435,455.
MAX_PACKET_SIZE = 268_435_460
MAX_REMAINING_LENGTH = 268_435_455


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class PropertyKind(IntEnum):
    BYTE = 1
    TWO_BYTE = 2
    FOUR_BYTE = 3
    VARINT = 4
    UTF8 = 5
    BINARY = 6
    UTF8_PAIR = 7


# Pseudo packet type for the will properties inside CONNECT.
WILL_PROPERTIES = 0


@dataclass(frozen=True, slots=True)
class PropertySpec:
    id: int
    name: str
    kind: PropertyKind
    packets: frozenset[int]  # packet types (or WILL_PROPERTIES) it may appear in


def _spec(pid: int, name: str, kind: PropertyKind, *packets: int) -> PropertySpec:
    return PropertySpec(pid, name, kind, frozenset(packets))


_P = PacketType
_K = PropertyKind
_W = WILL_PROPERTIES

# MQTT 5.0 spec table 2-4.
PROPERTIES: tuple[PropertySpec, ...] = (
    _spec(0x01, "payload_format_indicator", _K.BYTE, _P.PUBLISH, _W),
    _spec(0x02, "message_expiry_interval", _K.FOUR_BYTE, _P.PUBLISH, _W),
    _spec(0x03, "content_type", _K.UTF8, _P.PUBLISH, _W),
    _spec(0x08, "response_topic", _K.UTF8, _P.PUBLISH, _W),
    _spec(0x09, "correlation_data", _K.BINARY, _P.PUBLISH, _W),
    _spec(0x0B, "subscription_identifier", _K.VARINT, _P.PUBLISH, _P.SUBSCRIBE),
    _spec(0x11, "session_expiry_interval", _K.FOUR_BYTE, _P.CONNECT, _P.CONNACK, _P.DISCONNECT),
    _spec(0x12, "assigned_client_identifier", _K.UTF8, _P.CONNACK),
    _spec(0x13, "server_keep_alive", _K.TWO_BYTE, _P.CONNACK),
    _spec(0x15, "authentication_method", _K.UTF8, _P.CONNECT, _P.CONNACK, _P.AUTH),
    _spec(0x16, "authentication_data", _K.BINARY, _P.CONNECT, _P.CONNACK, _P.AUTH),
    _spec(0x17, "request_problem_information", _K.BYTE, _P.CONNECT),
    _spec(0x18, "will_delay_interval", _K.FOUR_BYTE, _W),
    _spec(0x19, "request_response_information", _K.BYTE, _P.CONNECT),
    _spec(0x1A, "response_information", _K.UTF8, _P.CONNACK),
    _spec(0x1C, "server_reference", _K.UTF8, _P.CONNACK, _P.DISCONNECT),
    _spec(
        0x1F,
        "reason_string",
        _K.UTF8,
        _P.CONNACK,
        _P.PUBACK,
        _P.PUBREC,
        _P.PUBREL,
        _P.PUBCOMP,
        _P.SUBACK,
        _P.UNSUBACK,
        _P.DISCONNECT,
        _P.AUTH,
    ),
    _spec(0x21, "receive_maximum", _K.TWO_BYTE, _P.CONNECT, _P.CONNACK),
    _spec(0x22, "topic_alias_maximum", _K.TWO_BYTE, _P.CONNECT, _P.CONNACK),
    _spec(0x23, "topic_alias", _K.TWO_BYTE, _P.PUBLISH),
    _spec(0x24, "maximum_qos", _K.BYTE, _P.CONNACK),
    _spec(0x25, "retain_available", _K.BYTE, _P.CONNACK),
    _spec(0x26, "user_property", _K.UTF8_PAIR, *range(1, 16), _W),
    _spec(0x27, "maximum_packet_size", _K.FOUR_BYTE, _P.CONNECT, _P.CONNACK),
    _spec(0x28, "wildcard_subscription_available", _K.BYTE, _P.CONNACK),
    _spec(0x29, "subscription_identifier_available", _K.BYTE, _P.CONNACK),
    _spec(0x2A, "shared_subscription_available", _K.BYTE, _P.CONNACK),
)
PROPERTY_BY_ID: dict[int, PropertySpec] = {p.id: p for p in PROPERTIES}
PROPERTY_BY_NAME: dict[str, PropertySpec] = {p.name: p for p in PROPERTIES}
# Properties kept as lists because they may repeat.
LIST_PROPERTIES = frozenset({"user_property", "subscription_identifier"})


class Packet:
    """Base of all control packets; ``packet_type`` names the wire type."""

    __slots__ = ()
    packet_type: ClassVar[PacketType]


@dataclass(slots=True)
class Will:
    """The will message carried in CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect(Packet):
    """CONNECT. ``protocol_name``/``protocol_level`` are filled in by the decoder; when
    left ``None`` the encoder derives them from its ``version`` argument."""

    packet_type: ClassVar[PacketType] = PacketType.CONNECT
    client_id: str
    clean_start: bool = True  # "clean session" in 3.1.1
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=dict)
    protocol_name: str | None = None
    protocol_level: int | None = None


@dataclass(slots=True)
class ConnAck(Packet):
    """CONNACK. ``reason_code`` is the 3.1.1 return code (0..5) or the 5.0 reason code."""

    packet_type: ClassVar[PacketType] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Publish(Packet):
    """PUBLISH. ``packet_id`` is ``None`` for QoS 0 and 1..65535 otherwise."""

    packet_type: ClassVar[PacketType] = PacketType.PUBLISH
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubAck(Packet):
    packet_type: ClassVar[PacketType] = PacketType.PUBACK
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubRec(Packet):
    packet_type: ClassVar[PacketType] = PacketType.PUBREC
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubRel(Packet):
    packet_type: ClassVar[PacketType] = PacketType.PUBREL
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubComp(Packet):
    packet_type: ClassVar[PacketType] = PacketType.PUBCOMP
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (the 5.0 ones default off;
    3.1.1 carries only ``qos``)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe(Packet):
    packet_type: ClassVar[PacketType] = PacketType.SUBSCRIBE
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubAck(Packet):
    """SUBACK: one code per filter: granted QoS 0..2, or 0x80 (3.1.1) / a 5.0 failure
    reason code."""

    packet_type: ClassVar[PacketType] = PacketType.SUBACK
    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe(Packet):
    packet_type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE
    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck(Packet):
    """UNSUBACK; ``reason_codes`` (one per filter) exist only in 5.0 and are empty in 3.1.1."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBACK
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PingReq(Packet):
    packet_type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(slots=True)
class PingResp(Packet):
    packet_type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(slots=True)
class Disconnect(Packet):
    """DISCONNECT; reason code and properties exist only in 5.0."""

    packet_type: ClassVar[PacketType] = PacketType.DISCONNECT
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Auth(Packet):
    """AUTH (5.0 only)."""

    packet_type: ClassVar[PacketType] = PacketType.AUTH
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


PACKET_CLASSES: dict[PacketType, type[Packet]] = {
    PacketType.CONNECT: Connect,
    PacketType.CONNACK: ConnAck,
    PacketType.PUBLISH: Publish,
    PacketType.PUBACK: PubAck,
    PacketType.PUBREC: PubRec,
    PacketType.PUBREL: PubRel,
    PacketType.PUBCOMP: PubComp,
    PacketType.SUBSCRIBE: Subscribe,
    PacketType.SUBACK: SubAck,
    PacketType.UNSUBSCRIBE: Unsubscribe,
    PacketType.UNSUBACK: UnsubAck,
    PacketType.PINGREQ: PingReq,
    PacketType.PINGRESP: PingResp,
    PacketType.DISCONNECT: Disconnect,
    PacketType.AUTH: Auth,
}


def valid_topic_name(topic: str) -> bool:
    """A topic a PUBLISH may carry: non-empty, no wildcards, no U+0000."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def valid_topic_filter(topic_filter: str, *, shared: bool = False) -> bool:
    """A topic filter a SUBSCRIBE/UNSUBSCRIBE may carry (spec 4.7).

    ``+`` must fill a whole level, ``#`` must be the whole last level. With
    ``shared`` (5.0), ``$share/{name}/{filter}`` is checked as a shared subscription.
    """
    if not topic_filter or "\x00" in topic_filter:
        return False
    if shared and topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) != 3 or not parts[1] or "+" in parts[1] or "#" in parts[1]:
            return False
        return valid_topic_filter(parts[2])
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True
