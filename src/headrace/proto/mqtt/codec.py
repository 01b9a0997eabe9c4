"""Sans-io MQTT 3.1.1 / 5.0 wire codec: ``encode`` packets, ``Parser`` bytes back.

``encode(packet, version)`` serialises one ``packets.Packet`` (version 4 = 3.1.1,
5 = 5.0; 3 = 3.1 is accepted and encoded like 4 except CONNECT's protocol name).

``Parser(max_packet_size, version=None).feed(data)`` is incremental: give it bytes as
they arrive, in pieces of any size, and it returns the packets completed so far. It
learns the protocol version from the first packet (which must then be CONNECT) when
none is given. Limits are checked from the fixed header alone, before the body is
buffered, so a peer cannot make it hold more than ``max_packet_size`` bytes (plus the
current read). Any violation of the spec in the input raises ``MQTTProtocolError`` and
nothing else; after one the parser stays failed.

The PUBLISH decoder is the hot path: it works on ``memoryview`` slices and copies the
payload exactly once.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .errors import MQTTProtocolError, ReasonCode
from .packets import (
    MAX_PACKET_SIZE,
    MAX_REMAINING_LENGTH,
    PROPERTY_BY_ID,
    PROPERTY_BY_NAME,
    WILL_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    PropertyKind,
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

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_pack_u16 = _U16.pack
_pack_u32 = _U32.pack

_MALFORMED = ReasonCode.MALFORMED_PACKET
_PROTOCOL = ReasonCode.PROTOCOL_ERROR

# Reason codes each 5.0 packet may carry (spec 3.x.2.1); anything else is malformed.
PUBACK_REASON_CODES = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
_PUBREL_CODES = frozenset({0x00, 0x92})
CONNACK_REASON_CODES = frozenset(
    {0x00, *range(0x80, 0x8B), 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
)
SUBACK_REASON_CODES = frozenset(
    {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
)
_SUBACK_V4_CODES = frozenset({0x00, 0x01, 0x02, 0x80})
UNSUBACK_REASON_CODES = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
DISCONNECT_REASON_CODES = frozenset(
    {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90}
    | set(range(0x93, 0xA3))
)
_AUTH_CODES = frozenset({0x00, 0x18, 0x19})
_ACK_CODES = {
    PacketType.PUBACK: PUBACK_REASON_CODES,
    PacketType.PUBREC: PUBACK_REASON_CODES,
    PacketType.PUBREL: _PUBREL_CODES,
    PacketType.PUBCOMP: _PUBREL_CODES,
}
# Byte properties that must be 0 or 1, and integer properties that must not be 0.
_BOOL_PROPERTIES = frozenset(
    {
        "payload_format_indicator",
        "request_problem_information",
        "request_response_information",
        "maximum_qos",
        "retain_available",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    }
)
_NONZERO_PROPERTIES = frozenset(
    {"receive_maximum", "maximum_packet_size", "topic_alias", "subscription_identifier"}
)
# Fixed-header flags each packet type must carry (PUBLISH's vary and are checked apart).
_REQUIRED_FLAGS: dict[int, int] = {int(t): 0 for t in PacketType}
_REQUIRED_FLAGS[PacketType.PUBREL] = 2
_REQUIRED_FLAGS[PacketType.SUBSCRIBE] = 2
_REQUIRED_FLAGS[PacketType.UNSUBSCRIBE] = 2
# (protocol name, level) -> the version served: 3.1 is "MQIsdp" level 3, wire-compatible
# with 3.1.1 after CONNECT; "MQTT" level 3 names no protocol.
_PROTOCOLS = {("MQTT", 4): 4, ("MQTT", 5): 5, ("MQIsdp", 3): 4}


def _malformed(message: str) -> MQTTProtocolError:
    return MQTTProtocolError(_MALFORMED, message)


def _protocol(message: str) -> MQTTProtocolError:
    return MQTTProtocolError(_PROTOCOL, message)


# ---------------------------------------------------------------------------- encoding


def encode_varint(value: int) -> bytes:
    """The MQTT variable byte integer encoding of ``value`` (0..268,435,455)."""
    if value < 0x80:
        if value < 0:
            raise ValueError("variable byte integer must not be negative")
        return bytes((value,))
    if value > MAX_REMAINING_LENGTH:
        raise ValueError(f"variable byte integer too large: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} out of range: {value}")
    return _pack_u16(value)


def _packet_id(value: int | None) -> bytes:
    if value is None or not 1 <= value <= 0xFFFF:
        raise ValueError(f"packet id must be 1..65535, not {value!r}")
    return _pack_u16(value)


def _binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("binary field longer than 65535 bytes")
    return _pack_u16(len(data)) + data


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    if "\x00" in text:
        raise ValueError("string contains U+0000")
    return _pack_u16(len(data)) + data


def _encode_property(kind: PropertyKind, pid: bytes, value: Any, out: list[bytes]) -> None:
    if kind is PropertyKind.BYTE:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"byte property out of range: {value}")
        out.append(pid + bytes((value,)))
    elif kind is PropertyKind.TWO_BYTE:
        out.append(pid + _u16(value, "two byte property"))
    elif kind is PropertyKind.FOUR_BYTE:
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"four byte property out of range: {value}")
        out.append(pid + _pack_u32(value))
    elif kind is PropertyKind.VARINT:
        out.append(pid + encode_varint(value))
    elif kind is PropertyKind.UTF8:
        out.append(pid + _utf8(value))
    elif kind is PropertyKind.BINARY:
        out.append(pid + _binary(bytes(value)))
    else:
        key, val = value
        out.append(pid + _utf8(key) + _utf8(val))


def encode_properties(properties: Properties) -> bytes:
    """The 5.0 property block (length prefix included) for ``properties``."""
    if not properties:
        return b"\x00"
    parts: list[bytes] = []
    for name, value in properties.items():
        spec = PROPERTY_BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown MQTT property {name!r}")
        pid = bytes((spec.id,))
        if name in ("user_property", "subscription_identifier") and not isinstance(value, int):
            for item in value:
                _encode_property(spec.kind, pid, item, parts)
        else:
            _encode_property(spec.kind, pid, value, parts)
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def _check_qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
    return qos


def _enc_connect(p: Connect, version: int) -> tuple[int, list[bytes]]:
    if p.protocol_name is not None and p.protocol_level is not None:
        name, level = p.protocol_name, p.protocol_level
    elif version == 3:
        name, level = "MQIsdp", 3
    else:
        name, level = "MQTT", version
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        flags |= 0x04 | (_check_qos(will.qos) << 3) | (0x20 if will.retain else 0)
    if p.password is not None:
        flags |= 0x40
    if p.username is not None:
        flags |= 0x80
    parts = [_utf8(name), bytes((level, flags)), _u16(p.keepalive, "keepalive")]
    if version == 5:
        parts.append(encode_properties(p.properties))
    parts.append(_utf8(p.client_id))
    if will is not None:
        if version == 5:
            parts.append(encode_properties(will.properties))
        parts.append(_utf8(will.topic))
        parts.append(_binary(will.payload))
    if p.username is not None:
        parts.append(_utf8(p.username))
    if p.password is not None:
        parts.append(_binary(p.password))
    return 0, parts


def _enc_connack(p: ConnAck, version: int) -> tuple[int, list[bytes]]:
    parts = [bytes((1 if p.session_present else 0, p.reason_code))]
    if version == 5:
        parts.append(encode_properties(p.properties))
    return 0, parts


def _enc_publish(p: Publish, version: int) -> tuple[int, list[bytes]]:
    qos = _check_qos(p.qos)
    flags = (qos << 1) | (0x08 if p.dup else 0) | (0x01 if p.retain else 0)
    topic = p.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError("topic longer than 65535 bytes")
    parts = [_pack_u16(len(topic)), topic]
    if qos:
        parts.append(_packet_id(p.packet_id))
    if version == 5:
        parts.append(encode_properties(p.properties))
    parts.append(p.payload)
    return flags, parts


def _enc_ack(p: PubAck | PubRec | PubRel | PubComp, version: int) -> tuple[int, list[bytes]]:
    flags = 2 if isinstance(p, PubRel) else 0
    pid = _packet_id(p.packet_id)
    if version != 5 or (p.reason_code == 0 and not p.properties):
        return flags, [pid]
    if not p.properties:
        return flags, [pid, bytes((p.reason_code,))]
    return flags, [pid, bytes((p.reason_code,)), encode_properties(p.properties)]


def _enc_subscribe(p: Subscribe, version: int) -> tuple[int, list[bytes]]:
    parts = [_packet_id(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.properties))
    for s in p.subscriptions:
        options = _check_qos(s.qos)
        if version == 5:
            if s.retain_handling not in (0, 1, 2):
                raise ValueError("retain_handling must be 0, 1 or 2")
            options |= (
                (0x04 if s.no_local else 0)
                | (0x08 if s.retain_as_published else 0)
                | (s.retain_handling << 4)
            )
        parts.append(_utf8(s.topic_filter))
        parts.append(bytes((options,)))
    return 2, parts


def _enc_suback(p: SubAck, version: int) -> tuple[int, list[bytes]]:
    parts = [_packet_id(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.properties))
    parts.append(bytes(p.reason_codes))
    return 0, parts


def _enc_unsubscribe(p: Unsubscribe, version: int) -> tuple[int, list[bytes]]:
    parts = [_packet_id(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.properties))
    parts.extend(_utf8(f) for f in p.topic_filters)
    return 2, parts


def _enc_unsuback(p: UnsubAck, version: int) -> tuple[int, list[bytes]]:
    parts = [_packet_id(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.properties))
        parts.append(bytes(p.reason_codes))
    return 0, parts


def _enc_empty(p: Packet, version: int) -> tuple[int, list[bytes]]:
    return 0, []


def _enc_reason(p: Disconnect | Auth, version: int) -> tuple[int, list[bytes]]:
    if version != 5 or (p.reason_code == 0 and not p.properties):
        return 0, []
    if not p.properties:
        return 0, [bytes((p.reason_code,))]
    return 0, [bytes((p.reason_code,)), encode_properties(p.properties)]


_Encoder = Callable[[Any, int], tuple[int, list[bytes]]]
_ENCODERS: dict[type[Packet], _Encoder] = {
    Connect: _enc_connect,
    ConnAck: _enc_connack,
    Publish: _enc_publish,
    PubAck: _enc_ack,
    PubRec: _enc_ack,
    PubRel: _enc_ack,
    PubComp: _enc_ack,
    Subscribe: _enc_subscribe,
    SubAck: _enc_suback,
    Unsubscribe: _enc_unsubscribe,
    UnsubAck: _enc_unsuback,
    PingReq: _enc_empty,
    PingResp: _enc_empty,
    Disconnect: _enc_reason,
    Auth: _enc_reason,
}


def encode(packet: Packet, version: int) -> bytes:
    """Serialise ``packet`` for protocol ``version`` (3 or 4 = 3.1(.1), 5 = 5.0).

    Raises ``ValueError`` for a packet that cannot be expressed (QoS 3, packet id 0 on
    a QoS 1 PUBLISH, an AUTH in 3.1.1, ...): that is a bug of the caller, not input.
    """
    if version not in (3, 4, 5):
        raise ValueError(f"unsupported MQTT version {version!r}")
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    if version != 5 and isinstance(packet, Auth):
        raise ValueError("AUTH exists only in MQTT 5.0")
    flags, parts = encoder(packet, version)
    length = sum(map(len, parts))
    header = bytes((packet.packet_type << 4 | flags,)) + encode_varint(length)
    return b"".join((header, *parts))


# ---------------------------------------------------------------------------- decoding


class _Reader:
    """Bounds-checked cursor over one packet body."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def need(self, n: int) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise _malformed("packet is shorter than its fields")
        self.pos = pos + n
        return pos

    def u8(self) -> int:
        return self.buf[self.need(1)]

    def u16(self) -> int:
        p = self.need(2)
        b = self.buf
        return (b[p] << 8) | b[p + 1]

    def u32(self) -> int:
        p = self.need(4)
        return int.from_bytes(self.buf[p : p + 4], "big")

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise _malformed("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        n = self.u16()
        p = self.need(n)
        return self.buf[p : p + n].tobytes()

    def utf8(self) -> str:
        n = self.u16()
        p = self.need(n)
        return _decode_utf8(self.buf[p : p + n])

    def at_end(self) -> bool:
        return self.pos >= self.end

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise _malformed("unexpected bytes after the packet's fields")


def _decode_utf8(data: memoryview) -> str:
    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError:
        raise _malformed("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise _malformed("string contains U+0000")
    return text


def _read_properties(r: _Reader, where: int) -> Properties:
    length = r.varint()
    start = r.need(length)
    props: Properties = {}
    if not length:
        return props
    outer_end = r.end
    r.pos, r.end = start, start + length
    while r.pos < r.end:
        pid = r.varint()
        spec = PROPERTY_BY_ID.get(pid)
        if spec is None or where not in spec.packets:
            raise _malformed(f"property {pid:#x} not allowed in this packet")
        kind = spec.kind
        name = spec.name
        value: Any
        if kind is PropertyKind.BYTE:
            value = r.u8()
        elif kind is PropertyKind.TWO_BYTE:
            value = r.u16()
        elif kind is PropertyKind.FOUR_BYTE:
            value = r.u32()
        elif kind is PropertyKind.VARINT:
            value = r.varint()
        elif kind is PropertyKind.UTF8:
            value = r.utf8()
        elif kind is PropertyKind.BINARY:
            value = r.binary()
        else:
            value = (r.utf8(), r.utf8())
        if name in _BOOL_PROPERTIES and value > 1:
            raise _protocol(f"{name} must be 0 or 1")
        if name in _NONZERO_PROPERTIES and value == 0:
            raise _protocol(f"{name} must not be 0")
        if name == "user_property" or (
            name == "subscription_identifier" and where == PacketType.PUBLISH
        ):
            props.setdefault(name, []).append(value)
        elif name in props:
            raise _protocol(f"property {name} given twice")
        elif name == "subscription_identifier":
            props[name] = [value]
        else:
            props[name] = value
    r.end = outer_end
    return props


def _packet_id_of(r: _Reader) -> int:
    pid = r.u16()
    if pid == 0:
        raise _protocol("packet identifier 0")
    return pid


def _dec_connect(flags: int, body: memoryview, version: int) -> tuple[Connect, int]:
    """Decode CONNECT; returns the packet and the protocol version it establishes."""
    r = _Reader(body)
    name = r.utf8()
    level = r.u8()
    proto = _PROTOCOLS.get((name, level))
    if proto is None:
        raise MQTTProtocolError(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"unsupported protocol {name!r} level {level}",
        )
    cflags = r.u8()
    if cflags & 0x01:
        raise _malformed("CONNECT reserved flag set")
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 0x03
    will_retain = bool(cflags & 0x20)
    has_password = cflags & 0x40
    has_username = cflags & 0x80
    if will_qos == 3:
        raise _malformed("will QoS 3")
    if not will_flag and (will_qos or will_retain):
        raise _malformed("will QoS/retain set without a will")
    if proto == 4 and has_password and not has_username:
        raise _malformed("password without user name")
    keepalive = r.u16()
    props = _read_properties(r, PacketType.CONNECT) if proto == 5 else {}
    client_id = r.utf8()
    will = None
    if will_flag:
        will_props = _read_properties(r, WILL_PROPERTIES) if proto == 5 else {}
        will_topic = r.utf8()
        if not valid_topic_name(will_topic):
            raise MQTTProtocolError(ReasonCode.TOPIC_NAME_INVALID, "invalid will topic")
        will = Will(will_topic, r.binary(), will_qos, will_retain, will_props)
    username = r.utf8() if has_username else None
    password = r.binary() if has_password else None
    r.expect_end()
    packet = Connect(
        client_id=client_id,
        clean_start=bool(cflags & 0x02),
        keepalive=keepalive,
        username=username,
        password=password,
        will=will,
        properties=props,
        protocol_name=name,
        protocol_level=level,
    )
    return packet, proto


def _dec_connack(flags: int, body: memoryview, version: int) -> Packet:
    r = _Reader(body)
    ack_flags = r.u8()
    if ack_flags & 0xFE:
        raise _malformed("CONNACK reserved flags set")
    code = r.u8()
    props: Properties = {}
    if version == 5:
        if code not in CONNACK_REASON_CODES:
            raise _malformed(f"bad CONNACK reason code {code:#x}")
        if not r.at_end():
            props = _read_properties(r, PacketType.CONNACK)
    elif code > 5:
        raise _malformed(f"bad CONNACK return code {code}")
    r.expect_end()
    if code and ack_flags:
        raise _protocol("session present on a refused connection")
    return ConnAck(bool(ack_flags), code, props)


def _dec_publish(flags: int, body: memoryview, version: int) -> Packet:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise _malformed("PUBLISH with QoS 3")
    dup = bool(flags & 0x08)
    if dup and not qos:
        raise _malformed("DUP set on a QoS 0 PUBLISH")
    n = len(body)
    if n < 2:
        raise _malformed("PUBLISH too short")
    pos = 2 + ((body[0] << 8) | body[1])
    if pos > n:
        raise _malformed("PUBLISH topic runs past the packet")
    try:
        topic = str(body[2:pos], "utf-8")
    except UnicodeDecodeError:
        raise _malformed("topic is not well-formed UTF-8") from None
    if "+" in topic or "#" in topic or "\x00" in topic:
        if "\x00" in topic:
            raise _malformed("topic contains U+0000")
        raise MQTTProtocolError(ReasonCode.TOPIC_NAME_INVALID, "wildcard in PUBLISH topic")
    packet_id = None
    if qos:
        if pos + 2 > n:
            raise _malformed("PUBLISH too short for its packet id")
        packet_id = (body[pos] << 8) | body[pos + 1]
        if not packet_id:
            raise _protocol("packet identifier 0")
        pos += 2
    if version == 5:
        r = _Reader(body, pos)
        props = _read_properties(r, PacketType.PUBLISH)
        pos = r.pos
        if not topic and "topic_alias" not in props:
            raise _protocol("empty topic without a topic alias")
    else:
        props = {}
        if not topic:
            raise MQTTProtocolError(ReasonCode.TOPIC_NAME_INVALID, "empty PUBLISH topic")
    return Publish(topic, body[pos:].tobytes(), qos, bool(flags & 0x01), dup, packet_id, props)


def _dec_ack(ptype: PacketType, body: memoryview, version: int) -> Packet:
    r = _Reader(body)
    pid = _packet_id_of(r)
    code = 0
    props: Properties = {}
    if version == 5 and not r.at_end():
        code = r.u8()
        if code not in _ACK_CODES[ptype]:
            raise _malformed(f"bad reason code {code:#x} in {ptype.name}")
        if not r.at_end():
            props = _read_properties(r, ptype)
    r.expect_end()
    if ptype == PacketType.PUBACK:
        return PubAck(pid, code, props)
    if ptype == PacketType.PUBREC:
        return PubRec(pid, code, props)
    if ptype == PacketType.PUBREL:
        return PubRel(pid, code, props)
    return PubComp(pid, code, props)


def _dec_subscribe(flags: int, body: memoryview, version: int) -> Packet:
    r = _Reader(body)
    pid = _packet_id_of(r)
    props = _read_properties(r, PacketType.SUBSCRIBE) if version == 5 else {}
    subs: list[Subscription] = []
    while not r.at_end():
        topic_filter = r.utf8()
        options = r.u8()
        qos = options & 0x03
        if qos == 3:
            raise _malformed("subscription with QoS 3")
        if version == 5:
            retain_handling = (options >> 4) & 0x03
            if options & 0xC0 or retain_handling == 3:
                raise _malformed("bad subscription options")
            sub = Subscription(
                topic_filter, qos, bool(options & 0x04), bool(options & 0x08), retain_handling
            )
        else:
            if options & 0xFC:
                raise _malformed("subscription options reserved bits set")
            sub = Subscription(topic_filter, qos)
        if not valid_topic_filter(topic_filter, shared=version == 5):
            raise MQTTProtocolError(ReasonCode.TOPIC_FILTER_INVALID, "invalid topic filter")
        subs.append(sub)
    if not subs:
        raise _protocol("SUBSCRIBE without topic filters")
    return Subscribe(pid, subs, props)


def _dec_suback(flags: int, body: memoryview, version: int) -> Packet:
    r = _Reader(body)
    pid = _packet_id_of(r)
    props = _read_properties(r, PacketType.SUBACK) if version == 5 else {}
    codes = list(body[r.pos :])
    if not codes:
        raise _protocol("SUBACK without return codes")
    allowed = SUBACK_REASON_CODES if version == 5 else _SUBACK_V4_CODES
    if not allowed.issuperset(codes):
        raise _malformed("bad SUBACK return code")
    return SubAck(pid, codes, props)


def _dec_unsubscribe(flags: int, body: memoryview, version: int) -> Packet:
    r = _Reader(body)
    pid = _packet_id_of(r)
    props = _read_properties(r, PacketType.UNSUBSCRIBE) if version == 5 else {}
    filters: list[str] = []
    while not r.at_end():
        topic_filter = r.utf8()
        if not valid_topic_filter(topic_filter, shared=version == 5):
            raise MQTTProtocolError(ReasonCode.TOPIC_FILTER_INVALID, "invalid topic filter")
        filters.append(topic_filter)
    if not filters:
        raise _protocol("UNSUBSCRIBE without topic filters")
    return Unsubscribe(pid, filters, props)


def _dec_unsuback(flags: int, body: memoryview, version: int) -> Packet:
    r = _Reader(body)
    pid = _packet_id_of(r)
    if version != 5:
        r.expect_end()
        return UnsubAck(pid)
    props = _read_properties(r, PacketType.UNSUBACK)
    codes = list(body[r.pos :])
    if not codes:
        raise _protocol("UNSUBACK without reason codes")
    if not UNSUBACK_REASON_CODES.issuperset(codes):
        raise _malformed("bad UNSUBACK reason code")
    return UnsubAck(pid, codes, props)


def _dec_pingreq(flags: int, body: memoryview, version: int) -> Packet:
    if len(body):
        raise _malformed("PINGREQ with a body")
    return PingReq()


def _dec_pingresp(flags: int, body: memoryview, version: int) -> Packet:
    if len(body):
        raise _malformed("PINGRESP with a body")
    return PingResp()


def _dec_reason(
    ptype: PacketType, body: memoryview, version: int, allowed: frozenset[int]
) -> tuple[int, Properties]:
    if version != 5:
        if len(body):
            raise _malformed(f"{ptype.name} with a body")
        return 0, {}
    r = _Reader(body)
    code = 0
    props: Properties = {}
    if not r.at_end():
        code = r.u8()
        if code not in allowed:
            raise _malformed(f"bad {ptype.name} reason code {code:#x}")
        if not r.at_end():
            props = _read_properties(r, ptype)
    r.expect_end()
    return code, props


def _dec_disconnect(flags: int, body: memoryview, version: int) -> Packet:
    code, props = _dec_reason(PacketType.DISCONNECT, body, version, DISCONNECT_REASON_CODES)
    return Disconnect(code, props)


def _dec_auth(flags: int, body: memoryview, version: int) -> Packet:
    code, props = _dec_reason(PacketType.AUTH, body, version, _AUTH_CODES)
    return Auth(code, props)


def _dec_puback(flags: int, body: memoryview, version: int) -> Packet:
    return _dec_ack(PacketType.PUBACK, body, version)


def _dec_pubrec(flags: int, body: memoryview, version: int) -> Packet:
    return _dec_ack(PacketType.PUBREC, body, version)


def _dec_pubrel(flags: int, body: memoryview, version: int) -> Packet:
    return _dec_ack(PacketType.PUBREL, body, version)


def _dec_pubcomp(flags: int, body: memoryview, version: int) -> Packet:
    return _dec_ack(PacketType.PUBCOMP, body, version)


def _dec_connect_again(flags: int, body: memoryview, version: int) -> Packet:
    return _dec_connect(flags, body, version)[0]


_Decoder = Callable[[int, memoryview, int], Packet]
_DECODERS: dict[int, _Decoder] = {
    PacketType.CONNECT: _dec_connect_again,
    PacketType.CONNACK: _dec_connack,
    PacketType.PUBLISH: _dec_publish,
    PacketType.PUBACK: _dec_puback,
    PacketType.PUBREC: _dec_pubrec,
    PacketType.PUBREL: _dec_pubrel,
    PacketType.PUBCOMP: _dec_pubcomp,
    PacketType.SUBSCRIBE: _dec_subscribe,
    PacketType.SUBACK: _dec_suback,
    PacketType.UNSUBSCRIBE: _dec_unsubscribe,
    PacketType.UNSUBACK: _dec_unsuback,
    PacketType.PINGREQ: _dec_pingreq,
    PacketType.PINGRESP: _dec_pingresp,
    PacketType.DISCONNECT: _dec_disconnect,
    PacketType.AUTH: _dec_auth,
}
_PUBLISH = int(PacketType.PUBLISH)
_CONNECT = int(PacketType.CONNECT)
_AUTH = int(PacketType.AUTH)


class Parser:
    """Incremental MQTT packet parser.

    ``max_packet_size`` bounds a whole packet (fixed header included, as 5.0's Maximum
    Packet Size does); a larger one is refused with reason 0x95 as soon as its fixed
    header is in. ``version`` is 4 (3.1.1) or 5; ``None`` (a server) learns it from the
    CONNECT that must come first. The learnt version is in ``parser.version``.

    ``feed`` returns the packets completed by the data so far. When the input turns bad
    after some good packets in the same call, those packets are returned and the
    ``MQTTProtocolError`` is kept in ``parser.error`` and raised by the next ``feed``
    (call ``feed(b"")`` to surface it); otherwise it is raised at once.
    """

    __slots__ = ("_buf", "error", "max_packet_size", "version")

    def __init__(self, max_packet_size: int, version: int | None = None) -> None:
        if version is not None and version not in (3, 4, 5):
            raise ValueError(f"unsupported MQTT version {version!r}")
        if max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        self.max_packet_size = max_packet_size
        self.version: int | None = 4 if version == 3 else version
        self.error: MQTTProtocolError | None = None
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a packet not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        if self.error is not None:
            raise self.error
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray | memoryview = buf
        elif not data:
            return []
        else:
            src = data
        packets: list[Packet] = []
        pos = 0
        try:
            with memoryview(src) as mv:
                pos = self._parse(mv.cast("B") if mv.format != "B" else mv, packets)
        except MQTTProtocolError as exc:
            self.error = exc
        except (IndexError, ValueError, struct.error, OverflowError) as exc:
            # A gap in the explicit checks must still surface as a protocol error.
            self.error = _malformed(f"malformed packet ({type(exc).__name__})")
        if self.error is not None:
            self._buf = bytearray()
            if packets:
                return packets
            raise self.error
        if src is buf:
            if pos:
                # A fresh buffer rather than an in-place delete: no live view can block it.
                self._buf = buf[pos:]
        elif pos < len(src):
            self._buf = bytearray(src[pos:])
        return packets

    def _parse(self, mv: memoryview, packets: list[Packet]) -> int:
        n = len(mv)
        pos = 0
        max_size = self.max_packet_size
        decoders = _DECODERS
        while pos < n:
            first = mv[pos]
            ptype = first >> 4
            flags = first & 0x0F
            # Check the type byte before waiting for (or buffering) anything else.
            if ptype != _PUBLISH:
                if ptype == 0:
                    raise _malformed("reserved packet type 0")
                if self.version is None and ptype != _CONNECT:
                    raise _protocol("the first packet must be CONNECT")
                if ptype == _AUTH and self.version == 4:
                    raise _malformed("AUTH in MQTT 3.1.1")
                if flags != _REQUIRED_FLAGS[ptype]:
                    raise _malformed(f"bad fixed header flags for packet type {ptype}")
            elif self.version is None:
                raise _protocol("the first packet must be CONNECT")
            # Remaining length: 1..4 bytes.
            i = pos + 1
            length = 0
            shift = 0
            while True:
                if i >= n:
                    return pos
                byte = mv[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift == 28:
                    raise _malformed("remaining length longer than 4 bytes")
            end = i + length
            if end - pos > max_size:
                raise MQTTProtocolError(
                    ReasonCode.PACKET_TOO_LARGE,
                    f"packet of {end - pos} bytes exceeds the limit of {max_size}",
                )
            if end > n:
                return pos
            body = mv[i:end]
            if ptype == _PUBLISH:
                assert self.version is not None
                packets.append(_dec_publish(flags, body, self.version))
            elif ptype == _CONNECT:
                packet, version = _dec_connect(flags, body, self.version or 0)
                if self.version is None:
                    self.version = version
                packets.append(packet)
            else:
                assert self.version is not None
                packets.append(decoders[ptype](flags, body, self.version))
            pos = end
        return pos


def decode(data: bytes, version: int, max_packet_size: int = MAX_PACKET_SIZE) -> Packet:
    """Decode exactly one complete packet (a convenience for tests and tools)."""
    parser = Parser(max_packet_size, version)
    packets = parser.feed(data)
    if len(packets) != 1 or parser.buffered:
        raise _malformed(f"expected one packet, found {len(packets)} (or an incomplete one)")
    return packets[0]
