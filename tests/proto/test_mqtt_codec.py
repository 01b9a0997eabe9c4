"""MQTT codec: round trips, spec byte vectors, fragmentation, fuzzing, limits."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headrace.proto.mqtt import (
    MAX_PACKET_SIZE,
    PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MQTTProtocolError,
    Packet,
    PacketType,
    Parser,
    PingReq,
    PingResp,
    PropertyKind,
    PropertySpec,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode,
    encode,
    encode_varint,
    valid_topic_filter,
)
from headrace.proto.mqtt.codec import (
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    PUBACK_REASON_CODES,
    SUBACK_REASON_CODES,
    UNSUBACK_REASON_CODES,
)
from headrace.proto.mqtt.packets import WILL_PROPERTIES

VERSIONS = (4, 5)

# ------------------------------------------------------------------------- strategies

_chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


def texts(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(_chars, min_size=min_size, max_size=max_size)


_level = st.text(
    st.characters(exclude_characters="\x00+#/", exclude_categories=("Cs",)), max_size=6
)
topic_names = st.lists(_level, min_size=1, max_size=4).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(_level, st.just("+")), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    result = "/".join(levels)
    assume(result)
    return result


packet_ids = st.integers(1, 0xFFFF)
_BOOL_PROPS = {
    "payload_format_indicator",
    "request_problem_information",
    "request_response_information",
    "maximum_qos",
    "retain_available",
    "wildcard_subscription_available",
    "subscription_identifier_available",
    "shared_subscription_available",
}
_NONZERO_PROPS = {"receive_maximum", "maximum_packet_size", "topic_alias"}


def _value(spec: PropertySpec, where: int) -> st.SearchStrategy[Any]:
    kind = spec.kind
    if spec.name == "user_property":
        return st.lists(st.tuples(texts(), texts()), min_size=1, max_size=3)
    if spec.name == "subscription_identifier":
        most = 3 if where == PacketType.PUBLISH else 1
        return st.lists(st.integers(1, 268_435_455), min_size=1, max_size=most)
    if kind is PropertyKind.BYTE:
        return st.integers(0, 1) if spec.name in _BOOL_PROPS else st.integers(0, 255)
    low = 1 if spec.name in _NONZERO_PROPS else 0
    if kind is PropertyKind.TWO_BYTE:
        return st.integers(low, 0xFFFF)
    if kind is PropertyKind.FOUR_BYTE:
        return st.integers(low, 0xFFFFFFFF)
    if kind is PropertyKind.UTF8:
        return texts()
    return st.binary(max_size=10)


@st.composite
def properties(draw: st.DrawFn, where: int, version: int) -> dict[str, Any]:
    if version != 5:
        return {}
    specs = [p for p in PROPERTIES if where in p.packets]
    chosen = draw(st.lists(st.sampled_from(specs), unique=True, max_size=4))
    return {spec.name: draw(_value(spec, where)) for spec in chosen}


@st.composite
def connects(draw: st.DrawFn, version: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names),
            draw(st.binary(max_size=20)),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(properties(WILL_PROPERTIES, version)),
        )
    username = draw(st.none() | texts())
    password = draw(st.none() | st.binary(max_size=20))
    if version == 4 and username is None:
        password = None
    return Connect(
        client_id=draw(texts()),
        clean_start=draw(st.booleans()),
        keepalive=draw(st.integers(0, 0xFFFF)),
        username=username,
        password=password,
        will=will,
        properties=draw(properties(PacketType.CONNECT, version)),
        protocol_name="MQTT",
        protocol_level=version,
    )


@st.composite
def connacks(draw: st.DrawFn, version: int) -> ConnAck:
    codes = sorted(CONNACK_REASON_CODES) if version == 5 else list(range(6))
    code = draw(st.sampled_from(codes))
    present = draw(st.booleans()) if code == 0 else False
    return ConnAck(present, code, draw(properties(PacketType.CONNACK, version)))


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        topic=draw(topic_names),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_ids) if qos else None,
        properties=draw(properties(PacketType.PUBLISH, version)),
    )


@st.composite
def acks(draw: st.DrawFn, version: int) -> Packet:
    cls = draw(st.sampled_from([PubAck, PubRec, PubRel, PubComp]))
    if version == 5:
        allowed = PUBACK_REASON_CODES if cls in (PubAck, PubRec) else {0, 0x92}
        code = draw(st.sampled_from(sorted(allowed)))
    else:
        code = 0
    props = draw(properties(cls.packet_type, version))
    return cls(draw(packet_ids), code, props)  # type: ignore[call-arg]


@st.composite
def subscribes(draw: st.DrawFn, version: int) -> Subscribe:
    subs = []
    for _ in range(draw(st.integers(1, 4))):
        if version == 5:
            subs.append(
                Subscription(
                    draw(topic_filters()),
                    draw(st.integers(0, 2)),
                    draw(st.booleans()),
                    draw(st.booleans()),
                    draw(st.integers(0, 2)),
                )
            )
        else:
            subs.append(Subscription(draw(topic_filters()), draw(st.integers(0, 2))))
    return Subscribe(draw(packet_ids), subs, draw(properties(PacketType.SUBSCRIBE, version)))


@st.composite
def subacks(draw: st.DrawFn, version: int) -> SubAck:
    allowed = sorted(SUBACK_REASON_CODES) if version == 5 else [0, 1, 2, 0x80]
    codes = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=5))
    return SubAck(draw(packet_ids), codes, draw(properties(PacketType.SUBACK, version)))


@st.composite
def unsubscribes(draw: st.DrawFn, version: int) -> Unsubscribe:
    filters = draw(st.lists(topic_filters(), min_size=1, max_size=4))
    return Unsubscribe(draw(packet_ids), filters, draw(properties(PacketType.UNSUBSCRIBE, version)))


@st.composite
def unsubacks(draw: st.DrawFn, version: int) -> UnsubAck:
    if version != 5:
        return UnsubAck(draw(packet_ids))
    codes = draw(st.lists(st.sampled_from(sorted(UNSUBACK_REASON_CODES)), min_size=1, max_size=4))
    return UnsubAck(draw(packet_ids), codes, draw(properties(PacketType.UNSUBACK, version)))


@st.composite
def disconnects(draw: st.DrawFn, version: int) -> Disconnect:
    if version != 5:
        return Disconnect()
    code = draw(st.sampled_from(sorted(DISCONNECT_REASON_CODES)))
    return Disconnect(code, draw(properties(PacketType.DISCONNECT, version)))


@st.composite
def auths(draw: st.DrawFn) -> Auth:
    code = draw(st.sampled_from([0x00, 0x18, 0x19]))
    return Auth(code, draw(properties(PacketType.AUTH, 5)))


def packets(version: int) -> st.SearchStrategy[Packet]:
    """Any valid packet except CONNECT (which sets the version of a stream)."""
    options: list[st.SearchStrategy[Any]] = [
        connacks(version),
        publishes(version),
        acks(version),
        subscribes(version),
        subacks(version),
        unsubscribes(version),
        unsubacks(version),
        st.just(PingReq()),
        st.just(PingResp()),
        disconnects(version),
    ]
    if version == 5:
        options.append(auths())
    return st.one_of(options)


def all_packets(version: int) -> st.SearchStrategy[Packet]:
    return st.one_of(connects(version), packets(version))


def parse(data: bytes, version: int | None, max_packet_size: int = MAX_PACKET_SIZE) -> list[Packet]:
    return Parser(max_packet_size, version).feed(data)


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("version", VERSIONS)
@given(data=st.data())
def test_round_trip_every_packet_type(version: int, data: st.DataObject) -> None:
    packet = data.draw(all_packets(version))
    wire = encode(packet, version)
    assert parse(wire, version) == [packet]
    assert decode(wire, version) == packet


@pytest.mark.parametrize(
    "strategy",
    [
        connects,
        connacks,
        publishes,
        acks,
        subscribes,
        subacks,
        unsubscribes,
        unsubacks,
        disconnects,
    ],
)
@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=40)
@given(data=st.data())
def test_round_trip_each_type(strategy: Any, version: int, data: st.DataObject) -> None:
    packet = data.draw(strategy(version))
    assert decode(encode(packet, version), version) == packet


@given(packet=auths())
def test_round_trip_auth(packet: Auth) -> None:
    assert decode(encode(packet, 5), 5) == packet


@pytest.mark.parametrize("version", VERSIONS)
@given(data=st.data())
def test_stream_learns_version_and_survives_any_fragmentation(
    version: int, data: st.DataObject
) -> None:
    connect = data.draw(connects(version))
    rest = data.draw(st.lists(packets(version), max_size=8))
    stream = b"".join(encode(p, version) for p in [connect, *rest])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = Parser(MAX_PACKET_SIZE)  # no version: learnt from CONNECT
    got: list[Packet] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got += parser.feed(stream[last:cut])
        last = cut
    assert got == [connect, *rest]
    assert parser.version == version
    assert parser.buffered == 0


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=30)
@given(data=st.data())
def test_one_byte_at_a_time_gives_the_same_packets(version: int, data: st.DataObject) -> None:
    items = data.draw(st.lists(all_packets(version), min_size=1, max_size=5))
    stream = b"".join(encode(p, version) for p in items)
    parser = Parser(MAX_PACKET_SIZE, version)
    got: list[Packet] = []
    for i in range(len(stream)):
        got += parser.feed(stream[i : i + 1])
    assert got == items
    # memoryview and bytearray inputs work the same
    assert Parser(MAX_PACKET_SIZE, version).feed(memoryview(stream)) == items
    assert Parser(MAX_PACKET_SIZE, version).feed(bytearray(stream)) == items


def test_varint_boundaries() -> None:
    for value, wire in [
        (0, "00"),
        (127, "7f"),
        (128, "8001"),
        (321, "c102"),
        (16_383, "ff7f"),
        (16_384, "808001"),
        (2_097_151, "ffff7f"),
        (2_097_152, "80808001"),
        (268_435_455, "ffffff7f"),
    ]:
        assert encode_varint(value).hex() == wire
    with pytest.raises(ValueError):
        encode_varint(268_435_456)


# ---------------------------------------------------------------- spec byte vectors

# Written by hand from the spec's field tables, so the codec is not only checked
# against itself.
VECTORS: list[tuple[str, int, Packet]] = [
    # CONNECT 3.1.1, clean session, keepalive 60, client id "abc" (spec 3.1)
    (
        "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63",
        4,
        Connect("abc", True, 60, protocol_name="MQTT", protocol_level=4),
    ),
    # CONNECT 3.1.1 with user name, password, will QoS 1 retained, keepalive 10
    (
        "10 1d 00 04 4d 51 54 54 04 ee 00 0a 00 02 63 31 00 01 77 00 03 62 79 65"
        " 00 01 75 00 02 70 77",
        4,
        Connect(
            "c1",
            True,
            10,
            "u",
            b"pw",
            Will("w", b"bye", 1, True),
            protocol_name="MQTT",
            protocol_level=4,
        ),
    ),
    # CONNECT 3.1 (MQIsdp, level 3), not clean, keepalive 0
    (
        "10 0f 00 06 4d 51 49 73 64 70 03 00 00 00 00 01 78",
        4,
        Connect("x", False, 0, protocol_name="MQIsdp", protocol_level=3),
    ),
    # CONNECT 5.0 with Session Expiry Interval 30
    (
        "10 15 00 04 4d 51 54 54 05 02 00 3c 05 11 00 00 00 1e 00 03 61 62 63",
        5,
        Connect(
            "abc",
            True,
            60,
            properties={"session_expiry_interval": 30},
            protocol_name="MQTT",
            protocol_level=5,
        ),
    ),
    # CONNACK 3.1.1, session present, accepted
    ("20 02 01 00", 4, ConnAck(True, 0)),
    # CONNACK 3.1.1 refused: not authorized
    ("20 02 00 05", 4, ConnAck(False, 5)),
    # CONNACK 5.0 refused 0x87, no properties
    ("20 03 00 87 00", 5, ConnAck(False, 0x87)),
    # PUBLISH QoS 1, topic "a/b", packet id 10, payload "hi"
    ("32 09 00 03 61 2f 62 00 0a 68 69", 4, Publish("a/b", b"hi", 1, packet_id=10)),
    # PUBLISH QoS 2 DUP retained, topic "t", packet id 0x0102, empty payload
    ("3d 05 00 01 74 01 02", 4, Publish("t", b"", 2, True, True, 0x0102)),
    # PUBLISH 5.0 QoS 0 with Content Type "j" and a user property (k, v)
    (
        "30 11 00 01 74 0b 03 00 01 6a 26 00 01 6b 00 01 76 68 69",
        5,
        Publish("t", b"hi", properties={"content_type": "j", "user_property": [("k", "v")]}),
    ),
    # PUBACK 3.1.1 and 5.0 short forms
    ("40 02 00 07", 4, PubAck(7)),
    ("40 02 00 07", 5, PubAck(7)),
    ("40 03 00 05 10", 5, PubAck(5, 0x10)),
    ("50 02 00 07", 4, PubRec(7)),
    ("62 02 00 07", 4, PubRel(7)),
    ("70 02 00 07", 4, PubComp(7)),
    ("70 03 00 07 92", 5, PubComp(7, 0x92)),
    # SUBSCRIBE packet id 10, "a/#" at QoS 1
    ("82 08 00 0a 00 03 61 2f 23 01", 4, Subscribe(10, [Subscription("a/#", 1)])),
    # SUBSCRIBE 5.0: no local + retain as published + retain handling 2, QoS 2
    (
        "82 07 00 0a 00 00 01 78 2e",
        5,
        Subscribe(10, [Subscription("x", 2, True, True, 2)]),
    ),
    # SUBACK packet id 1: QoS 0 granted, QoS 1 granted, failure (spec 3.9.3)
    ("90 05 00 01 00 01 80", 4, SubAck(1, [0, 1, 0x80])),
    ("90 06 00 01 00 00 01 87", 5, SubAck(1, [0, 1, 0x87])),
    ("a2 05 00 02 00 01 78", 4, Unsubscribe(2, ["x"])),
    ("b0 02 00 02", 4, UnsubAck(2)),
    ("b0 04 00 02 00 11", 5, UnsubAck(2, [0x11])),
    ("c0 00", 4, PingReq()),
    ("d0 00", 4, PingResp()),
    ("e0 00", 4, Disconnect()),
    ("e0 00", 5, Disconnect()),
    ("e0 01 8e", 5, Disconnect(0x8E)),
    ("f0 00", 5, Auth()),
]


@pytest.mark.parametrize(("wire", "version", "packet"), VECTORS)
def test_spec_vectors(wire: str, version: int, packet: Packet) -> None:
    data = bytes.fromhex(wire)
    assert decode(data, version) == packet
    if isinstance(packet, Connect) and packet.protocol_level == 3:
        assert encode(packet, 3) == data
        assert encode(Connect("x", False, 0), 3) == data  # name/level derived
    else:
        assert encode(packet, version) == data


def test_remaining_length_of_321_bytes_uses_two_bytes() -> None:
    packet = Publish("t", b"x" * 318)  # 2 + 1 + 318 = 321 bytes of body
    data = encode(packet, 4)
    assert data[:3] == bytes.fromhex("30 c1 02")
    assert decode(data, 4) == packet


def test_connect_version_derived_when_not_given() -> None:
    assert encode(Connect("abc"), 4) == bytes.fromhex(VECTORS[0][0])
    assert encode(Connect("abc", properties={"session_expiry_interval": 30}), 5) == bytes.fromhex(
        VECTORS[3][0]
    )


# ------------------------------------------------------------------------ validation

# (wire, version or None for a server's fresh parser, expected reason code)
BAD: list[tuple[str, int | None, int]] = [
    ("41 02 00 01", 4, 0x81),  # PUBACK with reserved flag bits
    ("60 02 00 01", 4, 0x81),  # PUBREL must carry flags 0010
    ("80 06 00 01 00 01 61 00", 4, 0x81),  # SUBSCRIBE must carry flags 0010
    ("30 ff ff ff ff 01", 4, 0x81),  # remaining length longer than 4 bytes
    ("30 ff ff ff ff", 4, 0x81),  # ... detected before the 5th byte arrives
    ("00 00", 4, 0x81),  # packet type 0
    ("f0 00", 4, 0x81),  # AUTH in 3.1.1
    ("c0 00", None, 0x82),  # first packet is not CONNECT
    ("32 05 00 01 74 00 00", 4, 0x82),  # packet id 0
    ("36 05 00 01 74 00 01", 4, 0x81),  # QoS 3
    ("38 03 00 01 74", 4, 0x81),  # DUP on QoS 0
    ("30 05 00 02 c3 28 00", 4, 0x81),  # topic not UTF-8
    ("30 06 00 03 ed a0 80 00", 4, 0x81),  # topic holds an encoded surrogate
    ("30 04 00 01 00 41", 4, 0x81),  # topic holds U+0000
    ("30 03 00 01 23", 4, 0x90),  # '#' in a PUBLISH topic
    ("30 05 00 03 61 2f 2b", 4, 0x90),  # '+' in a PUBLISH topic
    ("30 03 00 00 41", 4, 0x90),  # empty topic (3.1.1)
    ("30 04 00 00 00 41", 5, 0x82),  # empty topic without alias (5.0)
    ("30 03 00 05 61", 4, 0x81),  # topic runs past the packet
    ("82 02 00 01", 4, 0x82),  # SUBSCRIBE without filters
    ("82 06 00 01 00 01 61 04", 4, 0x81),  # subscription options reserved bits
    ("82 06 00 01 00 01 61 03", 4, 0x81),  # subscription QoS 3
    ("82 07 00 01 00 00 01 61 30", 5, 0x81),  # retain handling 3
    ("82 07 00 01 00 02 61 23 00", 4, 0x8F),  # filter "a#"
    ("82 05 00 01 00 00 00", 4, 0x8F),  # empty topic filter
    ("a2 02 00 01", 4, 0x82),  # UNSUBSCRIBE without filters
    ("90 03 00 01 03", 4, 0x81),  # SUBACK code 3
    ("90 02 00 01", 4, 0x82),  # SUBACK without codes
    ("40 03 00 01 00", 4, 0x81),  # PUBACK with a byte too many (3.1.1)
    ("40 01 00", 4, 0x81),  # PUBACK too short
    ("40 03 00 01 42", 5, 0x81),  # PUBACK reason code not allowed
    ("20 02 02 00", 4, 0x81),  # CONNACK reserved flags
    ("20 02 00 06", 4, 0x81),  # CONNACK return code 6
    ("20 02 01 05", 4, 0x82),  # session present on a refusal
    ("c0 01 00", 4, 0x81),  # PINGREQ with a body
    ("e0 01 00", 4, 0x81),  # DISCONNECT with a body (3.1.1)
    ("e0 01 05", 5, 0x81),  # DISCONNECT reason not allowed
    ("b0 03 00 01 00", 4, 0x81),  # UNSUBACK with a body (3.1.1)
    # 5.0 properties
    ("30 0a 00 01 74 06 03 00 01 6a 03 00", 5, 0x81),  # property runs past its block
    ("30 0c 00 01 74 08 03 00 01 6a 03 00 01 6b", 5, 0x82),  # content type twice
    ("30 09 00 01 74 05 11 00 00 00 1e", 5, 0x81),  # session expiry in PUBLISH
    ("30 05 00 01 74 01 7f", 5, 0x81),  # unknown property id
    ("30 06 00 01 74 02 01 02", 5, 0x82),  # payload format indicator 2
    ("30 07 00 01 74 03 23 00 00", 5, 0x82),  # topic alias 0
    ("30 04 00 01 74 05", 5, 0x81),  # property length past the packet
    ("30 05 00 01 74 ff ff", 5, 0x81),  # property length varint runs out
    ("40 04 00 01 00 ff", 5, 0x81),  # PUBACK property length past the packet
    # CONNECT
    ("10 0d 00 04 4d 51 54 54 06 02 00 3c 00 01 78", None, 0x84),  # level 6
    ("10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 78", None, 0x81),  # reserved flag
    ("10 0d 00 04 4d 51 54 54 04 1e 00 3c 00 01 78", None, 0x81),  # will QoS 3
    ("10 0d 00 04 4d 51 54 54 04 22 00 3c 00 01 78", None, 0x81),  # will retain, no will
    ("10 0d 00 04 4d 51 54 54 04 42 00 3c 00 01 78", None, 0x81),  # password, no user
    ("10 0e 00 04 4d 51 54 54 04 02 00 3c 00 01 78 00", None, 0x81),  # trailing byte
    ("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 00", None, 0x81),  # U+0000 client id
    ("10 0d 00 04 41 42 43 44 04 02 00 3c 00 01 78", None, 0x84),  # protocol "ABCD"
    ("10 0d 00 04 4d 51 54 54 03 02 00 3c 00 01 78", None, 0x84),  # "MQTT" level 3
    ("10 0f 00 06 4d 51 49 73 64 70 04 02 00 3c 00 01 78", None, 0x84),  # "MQIsdp" level 4
    (
        "10 13 00 04 4d 51 54 54 04 06 00 3c 00 01 78 00 01 2b 00 01 61",
        None,
        0x90,
    ),  # will topic "+"
]


@pytest.mark.parametrize(("wire", "version", "reason"), BAD)
def test_bad_input_is_refused_with_its_reason(wire: str, version: int | None, reason: int) -> None:
    data = bytes.fromhex(wire)
    with pytest.raises(MQTTProtocolError) as info:
        parse(data, version)
    assert info.value.reason_code == reason, info.value.message
    # byte by byte gives the same verdict, no later than the last byte
    parser = Parser(MAX_PACKET_SIZE, version)
    with pytest.raises(MQTTProtocolError) as info:
        for i in range(len(data)):
            assert parser.feed(data[i : i + 1]) == []
    assert info.value.reason_code == reason


def test_error_after_good_packets_is_raised_by_the_next_feed() -> None:
    parser = Parser(1000, 4)
    good = encode(PingReq(), 4)
    assert parser.feed(good + bytes.fromhex("41 02 00 01")) == [PingReq()]
    assert parser.error is not None
    with pytest.raises(MQTTProtocolError):
        parser.feed(b"")
    with pytest.raises(MQTTProtocolError):  # stays failed
        parser.feed(good)


def test_protocol_error_shape() -> None:
    exc = MQTTProtocolError(ReasonCode.MALFORMED_PACKET, "bad")
    assert exc.reason_code == 0x81 and exc.message == "bad"
    assert "0x81" in repr(exc)


@pytest.mark.parametrize(
    ("packet", "version"),
    [
        (Publish("t", b"", 3), 4),
        (Publish("t", b"", 1), 4),  # no packet id
        (Publish("t", b"", 1, packet_id=0), 4),
        (Auth(), 4),
        (Subscribe(1, [Subscription("a", 1, retain_handling=3)]), 5),
        (Publish("t", properties={"no_such_property": 1}), 5),
        (Connect("x" * 70_000), 4),
        (Connect("a\x00b"), 4),
    ],
)
def test_encode_refuses_what_cannot_be_expressed(packet: Packet, version: int) -> None:
    with pytest.raises(ValueError):
        encode(packet, version)


def test_topic_filter_rules() -> None:
    for good in ["a", "#", "+", "a/#", "+/+", "a/+/b", "/", "a//b", "+/#", "$SYS/#"]:
        assert valid_topic_filter(good), good
    for bad in ["", "a#", "a/#/b", "a+", "+a/b", "#/a", "a/b#"]:
        assert not valid_topic_filter(bad), bad
    assert valid_topic_filter("$share/g/a/+", shared=True)
    assert not valid_topic_filter("$share/g", shared=True)
    assert not valid_topic_filter("$share//a", shared=True)
    assert not valid_topic_filter("$share/+/a", shared=True)


# ---------------------------------------------------------------------- size limits


def test_oversize_packet_refused_from_its_header_alone() -> None:
    parser = Parser(1024, 4)
    header = b"\x30" + encode_varint(10_000_000)  # a PUBLISH announcing 10 MB
    with pytest.raises(MQTTProtocolError) as info:
        parser.feed(header)
    assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert parser.buffered == 0


def test_size_limit_counts_the_whole_packet() -> None:
    limit = 200
    exact = encode(Publish("t", b"x" * 194), 4)  # 1 type + 2 length + 197 body bytes
    assert len(exact) == limit
    assert len(parse(exact, 4, limit)) == 1
    over = encode(Publish("t", b"x" * 195), 4)
    with pytest.raises(MQTTProtocolError) as info:
        parse(over[:3], 4, limit)  # refused before the body
    assert info.value.reason_code == 0x95


@given(chunks=st.lists(st.integers(1, 700), min_size=1, max_size=30))
def test_buffer_never_exceeds_the_limit(chunks: list[int]) -> None:
    limit = 512
    stream = b"".join(encode(Publish("a/b", b"p" * n, 1, packet_id=1), 4) for n in (10, 400, 490))
    parser = Parser(limit, 4)
    pos = 0
    got = 0
    for size in chunks:
        got += len(parser.feed(stream[pos : pos + size]))
        assert parser.buffered <= limit
        pos += size
    got += len(parser.feed(stream[pos:]))
    assert got == 3


# ---------------------------------------------------------------------------- fuzzing


def _feed_all(data: bytes, version: int | None, chunk: int | None = None) -> None:
    """Feed ``data``; anything but packets or MQTTProtocolError fails the test."""
    parser = Parser(4096, version)
    try:
        if chunk is None:
            parser.feed(data)
        else:
            for i in range(0, len(data), chunk):
                parser.feed(data[i : i + chunk])
        parser.feed(b"")
    except MQTTProtocolError as exc:
        assert isinstance(exc.reason_code, int) and 0x80 <= exc.reason_code <= 0xA2


@settings(max_examples=500)
@given(
    data=st.binary(max_size=200),
    version=st.sampled_from([None, 4, 5]),
    chunk=st.none() | st.integers(1, 8),
)
def test_random_bytes_raise_only_protocol_errors(
    data: bytes, version: int | None, chunk: int | None
) -> None:
    _feed_all(data, version, chunk)


@pytest.mark.parametrize("version", VERSIONS)
@given(first=st.integers(0, 255), data=st.binary(max_size=64))
def test_random_bodies_behind_every_header_byte(version: int, first: int, data: bytes) -> None:
    # A well-formed length with a random body reaches deep into each decoder.
    _feed_all(bytes((first,)) + encode_varint(len(data)) + data, version)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_truncation_and_corruption_of_valid_packets(
    version: int, data: st.DataObject
) -> None:
    packet = data.draw(all_packets(version))
    wire = encode(packet, version)
    # Cut short: the parser waits for the rest, silently.
    for cut in range(len(wire)):
        assert Parser(MAX_PACKET_SIZE, version).feed(wire[:cut]) == []
    # Body cut short but the length field rewritten to match: decodes or is refused.
    header_len = 2
    while wire[header_len - 1] & 0x80:
        header_len += 1
    body = wire[header_len:]
    for cut in range(len(body)):
        _feed_all(wire[:1] + encode_varint(cut) + body[:cut], version)
    # Every byte corrupted in several ways.
    masks = [0x01, 0x80, 0xFF, data.draw(st.integers(1, 255))]
    for i in range(len(wire)):
        for mask in masks:
            corrupted = bytearray(wire)
            corrupted[i] ^= mask
            _feed_all(bytes(corrupted), version)


@pytest.mark.parametrize(("wire", "version", "packet"), VECTORS)
def test_every_byte_value_at_every_position_of_the_vectors(
    wire: str, version: int, packet: Packet
) -> None:
    data = bytearray.fromhex(wire)
    for i in range(len(data)):
        original = data[i]
        for value in range(256):
            data[i] = value
            _feed_all(bytes(data), version)
        data[i] = original


# ----------------------------------------------------------------------- performance


def test_publish_decode_is_cheap() -> None:
    """The server's hot path: 1000 PUBLISHes of 100 KB, read in 64 KiB pieces."""
    payload = os.urandom(100_000)
    one = encode(Publish("/sys/pk/integration/measurepoint/post", payload, 1, packet_id=1), 4)
    stream = one * 1000
    parser = Parser(1 << 20, 4)
    start = time.perf_counter()
    count = 0
    for i in range(0, len(stream), 65536):
        count += len(parser.feed(stream[i : i + 65536]))
    elapsed = time.perf_counter() - start
    assert count == 1000
    # Typically ~0.05 s; the bound only catches an accidental per-byte loop or a
    # quadratic buffer (either costs tens of seconds).
    assert elapsed < 3.0, elapsed
