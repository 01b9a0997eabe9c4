"""Property fuzzing of the MQTT codec and server state machine (bounded examples).

What tests/proto/test_mqtt_codec.py does not already cover: packets hypothesis builds
from arbitrary field values (not only valid ones), arbitrary input cut at arbitrary
points compared with the same input read at once, and a fresh server connection fed
whatever a client may send before and after its CONNECT.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.proto.mqtt import (
    ConnectionState,
    ConnectRequested,
    MQTTProtocolError,
    Parser,
    ProtocolViolation,
    PublishReceived,
    ServerConnection,
    SubscribeRequested,
    UnsubscribeRequested,
    encode,
)
from headrace.proto.mqtt import packets as pkt
from tests.proto import test_mqtt_codec as valid

LIMIT = 4096
# bounded for the suite; FUZZ_EXAMPLES=20000 digs deeper by hand
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ------------------------------------------------------------- packets of any field values

_text = st.text(max_size=8)  # U+0000 and lone surrogates included
_int = st.integers(-2, 2**32 + 1)
_code = st.integers(-1, 256)
_ids = st.none() | st.integers(-1, 0x10000)


def _any_value(spec: pkt.PropertySpec) -> st.SearchStrategy[Any]:
    if spec.name == "user_property":
        return st.lists(st.tuples(_text, _text), max_size=2)
    if spec.name == "subscription_identifier":
        return _int | st.lists(_int, max_size=2)
    if spec.kind is pkt.PropertyKind.UTF8:
        return _text
    if spec.kind is pkt.PropertyKind.BINARY:
        return st.binary(max_size=6)
    return _int


def _any_properties(where: int) -> st.SearchStrategy[dict[str, Any]]:
    specs = [p for p in pkt.PROPERTIES if where in p.packets]
    return st.lists(st.sampled_from(specs), unique=True, max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({s.name: _any_value(s) for s in chosen})
    )


_subscription = st.builds(
    pkt.Subscription, _text, st.integers(-1, 3), st.booleans(), st.booleans(), st.integers(-1, 3)
)
ANY_PACKET = st.one_of(
    st.builds(
        pkt.Connect,
        client_id=_text,
        clean_start=st.booleans(),
        keepalive=_int,
        username=st.none() | _text,
        password=st.none() | st.binary(max_size=6),
        will=st.none()
        | st.builds(
            pkt.Will,
            _text,
            st.binary(max_size=6),
            st.integers(-1, 3),
            st.booleans(),
            _any_properties(pkt.WILL_PROPERTIES),
        ),
        properties=_any_properties(pkt.PacketType.CONNECT),
        protocol_name=st.none() | st.sampled_from(["MQTT", "MQIsdp", "MQTTX"]),
        protocol_level=st.none() | st.integers(0, 6),
    ),
    st.builds(pkt.ConnAck, st.booleans(), _code, _any_properties(pkt.PacketType.CONNACK)),
    st.builds(
        pkt.Publish,
        _text,
        st.binary(max_size=8),
        st.integers(-1, 3),
        st.booleans(),
        st.booleans(),
        _ids,
        _any_properties(pkt.PacketType.PUBLISH),
    ),
    *(
        st.builds(cls, _ids, _code, _any_properties(cls.packet_type))
        for cls in (pkt.PubAck, pkt.PubRec, pkt.PubRel, pkt.PubComp)
    ),
    *(
        st.builds(cls, _ids, st.lists(items, max_size=3), _any_properties(cls.packet_type))
        for cls, items in (
            (pkt.Subscribe, _subscription),
            (pkt.SubAck, _code),
            (pkt.Unsubscribe, _text),
            (pkt.UnsubAck, _code),
        )
    ),
    *(
        st.builds(cls, _code, _any_properties(cls.packet_type))
        for cls in (pkt.Disconnect, pkt.Auth)
    ),
    st.just(pkt.PingReq()),
    st.just(pkt.PingResp()),
)


@FUZZ
@given(packet=ANY_PACKET, version=st.sampled_from([3, 4, 5]))
def test_whatever_encode_writes_decodes_to_the_same_bytes(packet: pkt.Packet, version: int) -> None:
    """``encode`` refuses what it cannot express with ValueError/TypeError only; what it
    writes, the parser either refuses with a protocol error (the encoder does not check
    semantics: reason codes, topic rules) or decodes into a packet whose encoding is
    canonical: it decodes to the same packet and encodes to the same bytes again (the
    first encoding may differ in form only: an empty user_property list, 5.0 fields on
    3.1.1)."""
    try:
        wire = encode(packet, version)
    except (ValueError, TypeError):
        return
    parser = Parser(LIMIT << 8, None if isinstance(packet, pkt.Connect) else min(version, 5))
    try:
        decoded = parser.feed(wire)
    except MQTTProtocolError as exc:
        assert 0x80 <= exc.reason_code <= 0xA2
        assert not exc.message.startswith("malformed packet ("), exc.message  # a checks gap
        return
    assert len(decoded) == 1 and parser.buffered == 0
    version = parser.version
    assert version is not None
    canonical = encode(decoded[0], version)
    again = Parser(LIMIT << 8, None if isinstance(packet, pkt.Connect) else version).feed(canonical)
    assert again == decoded
    assert encode(again[0], version) == canonical


# --------------------------------------------------------- any bytes, cut anywhere


def _outcome(parser: Parser, pieces: list[bytes]) -> tuple[list[pkt.Packet], str | None, int]:
    """Packets, the protocol error's reason and message (None: none) and what is left
    buffered, feeding ``pieces`` one by one. Nothing but MQTTProtocolError may escape."""
    got: list[pkt.Packet] = []
    try:
        for piece in [*pieces, b""]:
            got += parser.feed(piece)
    except MQTTProtocolError as exc:
        assert 0x80 <= exc.reason_code <= 0xA2
        assert not exc.message.startswith("malformed packet ("), exc.message  # a checks gap
        return got, f"{exc.reason_code:#x} {exc.message}", 0
    return got, None, parser.buffered


@st.composite
def streams(draw: st.DrawFn) -> tuple[int | None, bytes]:
    """A version (None: a server's fresh parser) and bytes: valid packets, then noise or
    a corrupted packet, in any mix."""
    version = draw(st.sampled_from([None, 4, 5]))
    wire_version = version or draw(st.sampled_from([4, 5]))
    parts: list[bytes] = []
    if version is None and draw(st.booleans()):
        parts.append(encode(draw(valid.connects(wire_version)), wire_version))
    for p in draw(st.lists(valid.packets(wire_version), max_size=3)):
        parts.append(encode(p, wire_version))
    tail = draw(st.sampled_from(["none", "noise", "corrupt", "cut"]))
    if tail == "noise":
        parts.append(draw(st.binary(min_size=1, max_size=40)))
    elif tail != "none":
        wire = bytearray(encode(draw(valid.all_packets(wire_version)), wire_version))
        if tail == "corrupt":
            i = draw(st.integers(0, len(wire) - 1))
            wire[i] ^= draw(st.integers(1, 255))
        else:
            wire = wire[: draw(st.integers(0, len(wire) - 1))]
        parts.append(bytes(wire))
    return version, b"".join(parts)


@FUZZ
@given(stream=streams(), data=st.data())
def test_any_bytes_cut_anywhere_read_as_in_one_piece(
    stream: tuple[int | None, bytes], data: st.DataObject
) -> None:
    version, wire = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    whole = _outcome(Parser(LIMIT, version), [wire])
    assert _outcome(Parser(LIMIT, version), pieces) == whole
    # a parser that failed stays failed
    if whole[1] is not None:
        parser = Parser(LIMIT, version)
        _outcome(parser, [wire])
        assert _outcome(parser, [encode(pkt.PingReq(), 4)])[1] == whole[1]


# ------------------------------------------------------------ the server state machine


@FUZZ
@given(data=st.data())
def test_a_fresh_server_survives_any_client(data: st.DataObject) -> None:
    """Any CONNECT (or none), then valid packets and noise in any chunks: the server
    answers with events, never an exception, and a violation leaves it closed."""
    version = data.draw(st.sampled_from([4, 5]))
    parts: list[bytes] = []
    if data.draw(st.booleans()):
        parts.append(encode(data.draw(valid.connects(version)), version))
    for item in data.draw(
        st.lists(st.one_of(valid.packets(version), st.binary(min_size=1, max_size=12)), max_size=8)
    ):
        parts.append(item if isinstance(item, bytes) else encode(item, version))
    wire = b"".join(parts)
    chunk = data.draw(st.integers(1, 64))
    server = ServerConnection(LIMIT, max_inflight=4, receive_maximum=8)
    for i in range(0, len(wire), chunk):
        events = deque(server.receive_data(wire[i : i + chunk]))
        while events:
            event = events.popleft()
            if isinstance(event, ConnectRequested):
                if data.draw(st.booleans()):
                    events.extend(server.accept())
                else:
                    server.refuse(0x87)
            elif isinstance(event, PublishReceived) and event.packet_id is not None:
                server.ack_publish(event.packet_id)
            elif isinstance(event, SubscribeRequested):
                server.suback(event.packet_id, [0] * len(event.subscriptions))
            elif isinstance(event, UnsubscribeRequested):
                server.unsuback(event.packet_id)
            elif isinstance(event, ProtocolViolation):
                assert server.state is ConnectionState.CLOSED
        server.data_to_send()
    assert server.state in (
        ConnectionState.AWAIT_CONNECT,
        ConnectionState.AWAIT_ACCEPT,
        ConnectionState.CONNECTED,
        ConnectionState.CLOSED,
    )
