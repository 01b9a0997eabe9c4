"""Paired MQTT client/server state machines, wired to each other with no I/O."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.proto.mqtt import (
    ClientConnection,
    ConnAck,
    ConnAckReceived,
    Connect,
    ConnectionState,
    ConnectRequested,
    Disconnect,
    DisconnectReceived,
    Event,
    Packet,
    Parser,
    PingReceived,
    PingRespReceived,
    ProtocolViolation,
    PubAck,
    PubComp,
    Publish,
    PublishAcked,
    PublishReceived,
    PubRec,
    PubRel,
    ServerConnection,
    SessionState,
    SubAck,
    SubAckReceived,
    Subscribe,
    SubscribeRequested,
    Subscription,
    UnsubAck,
    UnsubAckReceived,
    Unsubscribe,
    UnsubscribeRequested,
    encode,
)

VERSIONS = (4, 5)
LIMIT = 1 << 20


class Wire:
    """A client and a server joined by a lossless in-memory pipe."""

    def __init__(self, client: ClientConnection, server: ServerConnection) -> None:
        self.client = client
        self.server = server
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []

    def run(self) -> None:
        """Move bytes both ways until neither side has anything to say."""
        while True:
            up = self.client.data_to_send()
            if up:
                self.server_events += self.server.receive_data(up)
            down = self.server.data_to_send()
            if down:
                self.client_events += self.client.receive_data(down)
            if not up and not down:
                return

    def take(self) -> tuple[list[Event], list[Event]]:
        c, s = self.client_events, self.server_events
        self.client_events, self.server_events = [], []
        return c, s


def connected(version: int, **server_kwargs: int) -> Wire:
    client = ClientConnection(version)
    server = ServerConnection(LIMIT, **server_kwargs)
    wire = Wire(client, server)
    client.connect("dev-1", username="u", password="secret", keepalive=30)
    wire.run()
    (request,) = wire.server_events
    assert isinstance(request, ConnectRequested)
    wire.server_events.clear()
    assert server.accept() == []
    wire.run()
    assert wire.client_events == [ConnAckReceived(False, 0, wire.client_events[0].properties)]  # type: ignore[attr-defined]
    wire.take()
    return wire


def server_packets(data: bytes, version: int) -> list[Packet]:
    return Parser(LIMIT, version).feed(data)


def raw_client(version: int, **server_kwargs: int) -> ServerConnection:
    """A server that has accepted a CONNECT written by hand."""
    server = ServerConnection(LIMIT, **server_kwargs)
    events = server.receive_data(encode(Connect("raw"), version))
    assert isinstance(events[0], ConnectRequested)
    server.accept()
    server.data_to_send()
    return server


# ---------------------------------------------------------------------- connecting


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_and_accept(version: int) -> None:
    client = ClientConnection(version)
    server = ServerConnection(LIMIT)
    client.connect("dev-1", username="u", password="secret", keepalive=30, clean=False)
    events = server.receive_data(client.data_to_send())
    assert len(events) == 1 and isinstance(events[0], ConnectRequested)
    packet = events[0].packet
    assert (packet.client_id, packet.username, packet.password) == ("dev-1", "u", b"secret")
    assert packet.clean_start is False and packet.protocol_level == version
    assert server.state is ConnectionState.AWAIT_ACCEPT
    assert server.version == version and server.keepalive == 30 and server.client_id == "dev-1"
    server.accept(session_present=True)
    assert server.state is ConnectionState.CONNECTED
    (ack,) = client.receive_data(server.data_to_send())
    assert isinstance(ack, ConnAckReceived) and ack.session_present and ack.reason_code == 0
    assert client.state is ConnectionState.CONNECTED


@pytest.mark.parametrize(
    ("version", "reason", "wire_code"),
    [
        (4, 0x87, 5),  # not authorized, given as the 5.0 code
        (4, 5, 5),
        (4, 0x86, 4),
        (4, 0x85, 2),
        (4, 0x89, 3),
        (4, 0x80, 3),  # no 3.1.1 equivalent: server unavailable
        (5, 0x87, 0x87),
        (5, 5, 0x87),  # given as the 3.1.1 code
        (5, 0x86, 0x86),
    ],
)
def test_refuse_maps_the_reason_to_the_version(version: int, reason: int, wire_code: int) -> None:
    client = ClientConnection(version)
    server = ServerConnection(LIMIT)
    client.connect("dev-1")
    server.receive_data(client.data_to_send())
    server.refuse(reason)
    assert server.state is ConnectionState.CLOSED
    data = server.data_to_send()
    assert server_packets(data, version) == [ConnAck(False, wire_code)]
    (ack,) = client.receive_data(data)
    assert isinstance(ack, ConnAckReceived) and ack.reason_code == wire_code
    assert client.state is ConnectionState.CLOSED
    with pytest.raises(RuntimeError):
        server.accept()


def test_v5_connack_advertises_the_server_limits() -> None:
    client = ClientConnection(5)
    server = ServerConnection(65536, receive_maximum=10, topic_alias_maximum=5)
    client.connect("dev-1")
    server.receive_data(client.data_to_send())
    server.accept(properties={"server_keep_alive": 20, "assigned_client_identifier": "x"})
    (ack,) = client.receive_data(server.data_to_send())
    assert isinstance(ack, ConnAckReceived)
    assert ack.properties == {
        "server_keep_alive": 20,
        "assigned_client_identifier": "x",
        "receive_maximum": 10,
        "maximum_packet_size": 65536,
        "topic_alias_maximum": 5,
    }
    assert server.keepalive == client.keepalive == 20
    assert client.client_id == server.client_id == "x"


def test_v4_empty_client_id_needs_a_clean_session() -> None:
    server = ServerConnection(LIMIT)
    events = server.receive_data(encode(Connect("", clean_start=False), 4))
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x85
    assert server_packets(server.data_to_send(), 4) == [ConnAck(False, 2)]
    assert server.state is ConnectionState.CLOSED


def test_unsupported_protocol_level_gets_connack_1() -> None:
    server = ServerConnection(LIMIT)
    events = server.receive_data(bytes.fromhex("10 0d 00 04 4d 51 54 54 07 02 00 3c 00 01 78"))
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x84
    assert server.data_to_send() == bytes.fromhex("20 02 00 01")


def test_mqtt_named_level_3_is_not_a_protocol() -> None:
    # 3.1 is "MQIsdp" level 3; "MQTT" level 3 names no protocol: return code 1, closed.
    server = ServerConnection(LIMIT)
    connect = encode(Connect("c", protocol_name="MQTT", protocol_level=3), 4)
    events = server.receive_data(connect + encode(Publish("t", b"x"), 4))
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    assert events[0].reason_code == 0x84
    assert server_packets(server.data_to_send(), 4) == [ConnAck(False, 1)]
    assert server.state is ConnectionState.CLOSED
    assert server.receive_data(encode(Publish("t", b"x"), 4)) == []


def test_v5_connect_with_an_authentication_method_gets_0x8c() -> None:
    # No enhanced authentication is supported: CONNACK 0x8C, closed, nothing processed.
    client = ClientConnection(5)
    server = ServerConnection(LIMIT)
    client.connect("c", properties={"authentication_method": "SCRAM-SHA-1"})
    client.publish("t", b"early", 1)
    events = server.receive_data(client.data_to_send())
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    assert events[0].reason_code == 0x8C
    data = server.data_to_send()
    assert server_packets(data, 5) == [ConnAck(False, 0x8C)]
    assert server.state is ConnectionState.CLOSED
    with pytest.raises(RuntimeError):
        server.accept()
    (ack,) = client.receive_data(data)
    assert isinstance(ack, ConnAckReceived) and ack.reason_code == 0x8C
    assert client.state is ConnectionState.CLOSED


def test_packets_behind_connect_wait_for_accept() -> None:
    server = ServerConnection(LIMIT)
    data = encode(Connect("c"), 4) + encode(Publish("t/1", b"early", 1, packet_id=1), 4)
    events = server.receive_data(data)
    assert [type(e) for e in events] == [ConnectRequested]
    assert server.receive_data(encode(Publish("t/2", b"later"), 4)) == []
    events = server.accept()
    assert [(e.topic, e.payload) for e in events] == [("t/1", b"early"), ("t/2", b"later")]  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", VERSIONS)
def test_garbage_behind_connect_waits_for_the_answer(version: int) -> None:
    # Found by tests/unit/test_fuzz_mqtt.py: a bad packet read together with the CONNECT
    # closed the connection at once, so the caller's answer to ConnectRequested raised.
    connect = encode(Connect("c"), version)
    publish = encode(Publish("t/1", b"early", 1, packet_id=1), version)
    server = ServerConnection(LIMIT)
    events = server.receive_data(connect + publish + b"\x00\x00")
    assert [type(e) for e in events] == [ConnectRequested]
    assert server.state is ConnectionState.AWAIT_ACCEPT
    events = server.accept()
    assert [type(e) for e in events] == [PublishReceived, ProtocolViolation]
    assert server.state is ConnectionState.CLOSED
    ack, *rest = server_packets(server.data_to_send(), version)
    assert isinstance(ack, ConnAck) and ack.reason_code == 0
    assert rest == ([Disconnect(0x81)] if version == 5 else [])
    refused = ServerConnection(LIMIT)
    refused.receive_data(connect + b"\x00\x00")
    refused.refuse(0x87)
    refusal = ConnAck(False, 0x87 if version == 5 else 5)
    assert server_packets(refused.data_to_send(), version) == [refusal]
    assert refused.receive_data(b"") == []


def test_refused_client_gets_nothing_processed() -> None:
    server = ServerConnection(LIMIT)
    data = encode(Connect("c"), 4) + encode(Publish("t/1", b"early"), 4)
    server.receive_data(data)
    server.refuse(0x87)
    assert server.receive_data(encode(Publish("t/2", b"x"), 4)) == []
    assert server_packets(server.data_to_send(), 4) == [ConnAck(False, 5)]


def test_too_much_data_before_accept_is_a_violation() -> None:
    server = ServerConnection(1000)
    server.receive_data(encode(Connect("c"), 4))
    events = server.receive_data(b"\x30" * 1001)
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x97


def test_client_publishes_before_connack_are_sent_after_it() -> None:
    client = ClientConnection(4)
    server = ServerConnection(LIMIT)
    client.connect("c")
    pid = client.publish("a", b"1", 1)
    client.publish("b", b"2", 0)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [ConnectRequested]
    server.accept()
    client.receive_data(server.data_to_send())
    events = server.receive_data(client.data_to_send())
    assert [(e.topic, e.packet_id) for e in events] == [("a", pid), ("b", None)]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ QoS


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_client_to_server_publish(version: int, qos: int) -> None:
    wire = connected(version)
    pid = wire.client.publish("/sys/pk/integration/measurepoint/post", b'{"id":"1"}', qos)
    wire.run()
    client_events, server_events = wire.take()
    (received,) = server_events
    assert isinstance(received, PublishReceived)
    assert received.topic == "/sys/pk/integration/measurepoint/post"
    assert received.payload == b'{"id":"1"}' and received.qos == qos and not received.dup
    assert client_events == []
    if qos == 0:
        assert pid == 0 and received.packet_id is None
        return
    assert received.packet_id == pid
    assert wire.server.unacked_count == 1
    # Nothing is acknowledged until the store says so.
    assert wire.server.data_to_send() == b""
    wire.server.ack_publish(pid)
    wire.run()
    client_events, server_events = wire.take()
    assert client_events == [PublishAcked(pid, 0)]
    assert server_events == []
    assert wire.server.unacked_count == 0 and wire.client.inflight_count == 0


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_server_to_client_publish(version: int, qos: int) -> None:
    wire = connected(version)
    pid = wire.server.publish("/sys/pk/integration/measurepoint/post_reply", b"{}", qos)
    wire.run()
    client_events, server_events = wire.take()
    assert client_events == [
        PublishReceived(
            pid or None, qos, "/sys/pk/integration/measurepoint/post_reply", b"{}", False, False, {}
        )
    ]
    # The client acknowledges by itself.
    assert server_events == ([PublishAcked(pid, 0)] if qos else [])
    assert wire.server.inflight_count == 0


def test_qos2_flow_on_the_wire() -> None:
    server = raw_client(4)
    events = server.receive_data(encode(Publish("t", b"x", 2, packet_id=9), 4))
    assert isinstance(events[0], PublishReceived)
    server.ack_publish(9)
    assert server_packets(server.data_to_send(), 4) == [PubRec(9)]
    assert server.receive_data(encode(PubRel(9), 4)) == []
    assert server_packets(server.data_to_send(), 4) == [PubComp(9)]


@pytest.mark.parametrize("version", VERSIONS)
def test_resent_qos2_publish_is_not_delivered_twice(version: int) -> None:
    server = raw_client(version)
    first = Publish("t", b"once", 2, packet_id=5)
    assert len(server.receive_data(encode(first, version))) == 1
    # Resent while the store is still working on it: no event, no answer yet.
    dup = Publish("t", b"once", 2, dup=True, packet_id=5)
    assert server.receive_data(encode(dup, version)) == []
    assert server.data_to_send() == b""
    server.ack_publish(5)
    assert server_packets(server.data_to_send(), version) == [PubRec(5)]
    # Resent after PUBREC (the PUBREC was lost): answered again, not delivered.
    assert server.receive_data(encode(dup, version)) == []
    assert server_packets(server.data_to_send(), version) == [PubRec(5)]
    server.receive_data(encode(PubRel(5), version))
    assert server_packets(server.data_to_send(), version) == [PubComp(5)]
    # After PUBCOMP the id is free again: the next PUBLISH with it is a new message.
    events = server.receive_data(encode(Publish("t", b"new", 2, packet_id=5), version))
    assert [e.payload for e in events] == [b"new"]  # type: ignore[attr-defined]


def test_resent_qos1_publish_while_unacked_is_not_delivered_twice() -> None:
    server = raw_client(4)
    server.receive_data(encode(Publish("t", b"x", 1, packet_id=3), 4))
    assert server.receive_data(encode(Publish("t", b"x", 1, dup=True, packet_id=3), 4)) == []
    server.ack_publish(3)
    assert server_packets(server.data_to_send(), 4) == [PubAck(3)]


def test_pubrel_for_an_unknown_id_is_completed() -> None:
    server = raw_client(5)
    server.receive_data(encode(PubRel(77), 5))
    assert server_packets(server.data_to_send(), 5) == [PubComp(77, 0x92)]


def test_v5_publish_refused_by_the_application() -> None:
    server = raw_client(5)
    server.receive_data(encode(Publish("t", b"x", 1, packet_id=3), 5))
    server.ack_publish(3, 0x87, {"reason_string": "no permission"})
    assert server_packets(server.data_to_send(), 5) == [
        PubAck(3, 0x87, {"reason_string": "no permission"})
    ]
    server.receive_data(encode(Publish("t", b"x", 2, packet_id=4), 5))
    server.ack_publish(4, 0x97)
    assert server_packets(server.data_to_send(), 5) == [PubRec(4, 0x97)]
    # A failed PUBREC ends the flow: a PUBREL now is for an unknown id.
    server.receive_data(encode(PubRel(4), 5))
    assert server_packets(server.data_to_send(), 5) == [PubComp(4, 0x92)]


def test_v4_cannot_carry_a_refusal_reason() -> None:
    server = raw_client(4)
    server.receive_data(encode(Publish("t", b"x", 1, packet_id=3), 4))
    server.ack_publish(3, 0x87)
    assert server_packets(server.data_to_send(), 4) == [PubAck(3)]


def test_ack_misuse() -> None:
    server = raw_client(4)
    with pytest.raises(ValueError):
        server.ack_publish(1)
    server.receive_data(encode(Publish("t", b"x", 1, packet_id=1), 4))
    server.disconnect()
    server.ack_publish(1)  # late commit after the connection closed: ignored
    assert server.data_to_send() == b""


def test_client_rejects_a_v5_pubrec_failure_as_done() -> None:
    wire = connected(5)
    pid = wire.client.publish("t", b"x", 2)
    wire.run()
    wire.take()
    wire.server.ack_publish(pid, 0x80)
    wire.run()
    client_events, _ = wire.take()
    assert client_events == [PublishAcked(pid, 0x80)]
    assert wire.client.inflight_count == 0


# ----------------------------------------------------------------- in-flight window


@pytest.mark.parametrize("version", VERSIONS)
def test_outgoing_inflight_window(version: int) -> None:
    wire = connected(version, max_inflight=2)
    wire.client._auto_ack = False  # hold the client's acks to watch the window
    pids = [wire.server.publish(f"r/{i}", b"x", 1) for i in range(5)]
    assert pids == [1, 2, 3, 4, 5]
    assert wire.server.inflight_count == 2 and wire.server.queued_count == 3
    wire.run()
    client_events, _ = wire.take()
    assert [e.packet_id for e in client_events] == [1, 2]  # type: ignore[attr-defined]
    wire.client.ack_publish(1)
    wire.run()
    client_events, server_events = wire.take()
    assert server_events == [PublishAcked(1)]
    assert [e.packet_id for e in client_events] == [3]  # type: ignore[attr-defined]
    for pid in (2, 3):
        wire.client.ack_publish(pid)
    wire.run()
    client_events, server_events = wire.take()
    assert [e.packet_id for e in client_events] == [4, 5]  # type: ignore[attr-defined]
    for pid in (4, 5):
        wire.client.ack_publish(pid)
    wire.run()
    assert wire.server.inflight_count == 0 and wire.server.queued_count == 0


def test_v5_client_receive_maximum_caps_the_server_window() -> None:
    server = ServerConnection(LIMIT, max_inflight=10)
    server.receive_data(encode(Connect("c", properties={"receive_maximum": 1}), 5))
    server.accept()
    server.data_to_send()
    server.publish("a", b"1", 1)
    server.publish("b", b"2", 1)
    assert server.inflight_count == 1 and server.queued_count == 1


def test_v5_server_receive_maximum_is_enforced() -> None:
    server = raw_client(5, receive_maximum=2)
    for pid in (1, 2):
        assert len(server.receive_data(encode(Publish("t", b"x", 1, packet_id=pid), 5))) == 1
    events = server.receive_data(encode(Publish("t", b"x", 1, packet_id=3), 5))
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x93
    assert server_packets(server.data_to_send(), 5) == [Disconnect(0x93)]


def test_v5_client_obeys_the_server_receive_maximum() -> None:
    wire = connected(5, receive_maximum=2)
    for i in range(4):
        wire.client.publish("t", bytes([i]), 1)
    wire.run()
    _, server_events = wire.take()
    assert len(server_events) == 2  # the other two wait for acks
    for event in server_events:
        wire.server.ack_publish(event.packet_id)  # type: ignore[attr-defined]
    wire.run()
    _, server_events = wire.take()
    assert len(server_events) == 2


def test_peer_maximum_packet_size_is_respected() -> None:
    server = ServerConnection(LIMIT)
    server.receive_data(encode(Connect("c", properties={"maximum_packet_size": 100}), 5))
    server.accept()
    server.data_to_send()
    server.publish("t", b"x" * 50, 1)
    with pytest.raises(ValueError):
        server.publish("t", b"x" * 200, 1)
    assert server.inflight_count == 1


# ---------------------------------------------------------------- session resumption


@pytest.mark.parametrize("version", VERSIONS)
def test_server_resends_unacknowledged_messages_on_resume(version: int) -> None:
    wire = connected(version, max_inflight=2)
    q1 = wire.server.publish("r/1", b"one", 1)
    q2 = wire.server.publish("r/2", b"two", 2)
    q3 = wire.server.publish("r/3", b"three", 1)  # queued behind the window
    # The client gets only the QoS 2 message and answers PUBREC, then the line drops.
    down = server_packets(wire.server.data_to_send(), version)
    assert [p.packet_id for p in down] == [q1, q2]  # type: ignore[attr-defined]
    wire.server.receive_data(encode(PubRec(q2), version))
    wire.server.data_to_send()  # the PUBREL is lost too
    state = wire.server.session_state()
    assert [type(p) for p in state.inflight] == [Publish, PubRel]
    assert [p.packet_id for p in state.queued] == [q3]

    client = ClientConnection(version)
    server = ServerConnection(LIMIT, max_inflight=2)
    again = Wire(client, server)
    client.connect("dev-1", clean=False)
    again.run()
    server.accept(session_present=True, resume=state)
    resent = server_packets(server.data_to_send(), version)
    assert resent[0] == ConnAck(True, 0, resent[0].properties)  # type: ignore[attr-defined]
    assert resent[1:] == [Publish("r/1", b"one", 1, dup=True, packet_id=q1), PubRel(q2)]
    client.receive_data(b"".join(encode(p, version) for p in resent))  # acks r/1, completes q2
    again.run()
    _, server_events = again.take()
    # q3 went out once the window opened
    assert {e.packet_id for e in server_events if isinstance(e, PublishAcked)} == {q1, q2, q3}
    assert server.inflight_count == 0 and server.queued_count == 0


def test_server_remembers_qos2_ids_awaiting_pubrel_across_connections() -> None:
    server = raw_client(4)
    server.receive_data(encode(Publish("t", b"x", 2, packet_id=8), 4))
    server.ack_publish(8)
    state = server.session_state()
    assert state.awaiting_pubrel == {8}
    fresh = ServerConnection(LIMIT)
    fresh.receive_data(encode(Connect("raw", clean_start=False), 4))
    fresh.accept(session_present=True, resume=state)
    fresh.data_to_send()
    # The client resends the PUBLISH (its PUBREC was lost): not delivered again.
    assert fresh.receive_data(encode(Publish("t", b"x", 2, dup=True, packet_id=8), 4)) == []
    assert server_packets(fresh.data_to_send(), 4) == [PubRec(8)]


@pytest.mark.parametrize("session_present", [True, False])
def test_client_resends_on_resume(session_present: bool) -> None:
    client = ClientConnection(4)
    client.connect("c", clean=False)
    client.receive_data(encode(ConnAck(False, 0), 4))
    pid = client.publish("t", b"x", 1)
    client.data_to_send()  # lost on the way
    state = client.session_state()

    again = ClientConnection(4)
    again.connect("c", clean=False, resume=state)
    later = again.publish("t", b"y", 1)
    assert later != pid  # ids of the resumed session stay reserved
    again.data_to_send()
    again.receive_data(encode(ConnAck(session_present, 0), 4))
    sent = server_packets(again.data_to_send(), 4)
    assert sent == [
        Publish("t", b"x", 1, dup=session_present, packet_id=pid),
        Publish("t", b"y", 1, packet_id=later),
    ]


def test_session_state_is_plain_data() -> None:
    state = SessionState()
    assert state.inflight == [] and state.queued == [] and state.awaiting_pubrel == set()


# -------------------------------------------------------------- subscribe and ping


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "second", [Subscribe(1, [Subscription("b", 0)]), Unsubscribe(1, ["b"])], ids=["sub", "unsub"]
)
def test_a_packet_id_awaiting_its_ack_is_in_use(version: int, second: Packet) -> None:
    # Found by tests/unit/test_fuzz_mqtt.py: two requests with one id in one read asked
    # for two answers the connection could not give (the second suback raised).
    server = raw_client(version)
    first = encode(Subscribe(1, [Subscription("a", 0)]), version)
    events = server.receive_data(first + encode(second, version))
    assert [type(e) for e in events] == [SubscribeRequested, ProtocolViolation]
    assert events[1].reason_code == 0x91  # type: ignore[attr-defined]
    assert server.state is ConnectionState.CLOSED
    server.suback(1, [0])  # the answer due is a no-op now, not an error
    assert server_packets(server.data_to_send(), version) == (
        [Disconnect(0x82)] if version == 5 else []
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_subscribe_and_unsubscribe(version: int) -> None:
    wire = connected(version)
    pid = wire.client.subscribe([("/sys/pk/integration/+/post_reply", 1), "a/#"])
    wire.run()
    _, server_events = wire.take()
    assert server_events == [
        SubscribeRequested(
            pid,
            [Subscription("/sys/pk/integration/+/post_reply", 1), Subscription("a/#", 0)],
            {},
        )
    ]
    with pytest.raises(ValueError):
        wire.server.suback(pid, [1])  # one code per filter
    wire.server.suback(pid, [1, 0x87])
    wire.run()
    client_events, _ = wire.take()
    assert client_events == [SubAckReceived(pid, [1, 0x87 if version == 5 else 0x80], {})]

    pid = wire.client.unsubscribe(["a/#"])
    wire.run()
    _, server_events = wire.take()
    assert server_events == [UnsubscribeRequested(pid, ["a/#"], {})]
    wire.server.unsuback(pid)
    wire.run()
    client_events, _ = wire.take()
    assert client_events == [UnsubAckReceived(pid, [0] if version == 5 else [], {})]


def test_suback_on_the_wire_v4() -> None:
    server = raw_client(4)
    server.receive_data(encode(Subscribe(4, [Subscription("a", 2)]), 4))
    server.suback(4, [0x87])
    assert server_packets(server.data_to_send(), 4) == [SubAck(4, [0x80])]
    server.receive_data(bytes.fromhex("a2 05 00 05 00 01 61"))
    server.unsuback(5)
    assert server_packets(server.data_to_send(), 4) == [UnsubAck(5)]


@pytest.mark.parametrize("version", VERSIONS)
def test_ping(version: int) -> None:
    wire = connected(version)
    wire.client.ping()
    wire.run()
    client_events, server_events = wire.take()
    assert server_events == [PingReceived()]
    assert client_events == [PingRespReceived()]


# ---------------------------------------------------------------------- disconnect


@pytest.mark.parametrize("version", VERSIONS)
def test_client_disconnect(version: int) -> None:
    wire = connected(version)
    wire.client.disconnect()
    wire.run()
    _, server_events = wire.take()
    assert server_events == [DisconnectReceived(0, {})]
    assert wire.server.state is ConnectionState.CLOSED
    assert wire.server.receive_data(encode(Publish("t", b"x"), version)) == []


def test_server_disconnect() -> None:
    wire = connected(5)
    wire.server.disconnect(0x8B)
    wire.run()
    client_events, _ = wire.take()
    assert client_events == [DisconnectReceived(0x8B, {})]
    v4 = connected(4)
    v4.server.disconnect(0x8B)
    assert v4.server.data_to_send() == b""  # 3.1.1 servers just close
    assert v4.server.state is ConnectionState.CLOSED
    with pytest.raises(RuntimeError):
        v4.server.publish("t", b"x")


# ------------------------------------------------------------------ violations


def test_publish_before_connect() -> None:
    server = ServerConnection(LIMIT)
    events = server.receive_data(encode(Publish("t", b"x"), 4))
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    assert events[0].reason_code == 0x82
    assert server.state is ConnectionState.CLOSED
    assert server.data_to_send() == b""


@pytest.mark.parametrize("version", VERSIONS)
def test_second_connect(version: int) -> None:
    wire = connected(version)
    events = wire.server.receive_data(encode(Connect("again"), version))
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x82
    sent = server_packets(wire.server.data_to_send(), version)
    assert sent == ([Disconnect(0x82)] if version == 5 else [])


@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_packet_after_connect(version: int) -> None:
    wire = connected(version)
    good = encode(Publish("t", b"ok"), version)
    events = wire.server.receive_data(good + bytes.fromhex("36 05 00 01 74 00 01"))
    assert isinstance(events[0], PublishReceived)  # what came before still counts
    assert isinstance(events[1], ProtocolViolation) and events[1].reason_code == 0x81
    assert len(events) == 2
    sent = server_packets(wire.server.data_to_send(), version)
    assert sent == ([Disconnect(0x81)] if version == 5 else [])
    assert wire.server.receive_data(good) == []


def test_oversize_packet_from_client() -> None:
    server = ServerConnection(1000)
    server.receive_data(encode(Connect("c"), 5))
    server.accept()
    server.data_to_send()
    events = server.receive_data(b"\x30\xff\xff\x03")  # announces ~64 KB
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x95
    assert server_packets(server.data_to_send(), 5) == [Disconnect(0x95)]


@pytest.mark.parametrize("packet", [ConnAck(), SubAck(1, [0]), UnsubAck(1)])
def test_server_only_packets_from_a_client(packet: Packet) -> None:
    server = raw_client(4)
    events = server.receive_data(encode(packet, 4))
    assert isinstance(events[0], ProtocolViolation)


def test_client_expects_connack_first() -> None:
    client = ClientConnection(4)
    client.connect("c")
    events = client.receive_data(encode(Publish("t", b"x"), 4))
    assert isinstance(events[0], ProtocolViolation)
    assert client.state is ConnectionState.CLOSED


def test_auth_without_a_method_is_a_violation() -> None:
    server = raw_client(5)
    events = server.receive_data(bytes.fromhex("f0 00"))
    assert isinstance(events[0], ProtocolViolation)


def test_topic_aliases() -> None:
    server = raw_client(5, topic_alias_maximum=4)
    first = Publish("long/topic/name", b"1", properties={"topic_alias": 2})
    second = Publish("", b"2", properties={"topic_alias": 2})
    events = server.receive_data(encode(first, 5) + encode(second, 5))
    assert [(e.topic, e.payload) for e in events] == [  # type: ignore[attr-defined]
        ("long/topic/name", b"1"),
        ("long/topic/name", b"2"),
    ]
    events = server.receive_data(encode(Publish("", b"3", properties={"topic_alias": 3}), 5))
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x82
    server = raw_client(5, topic_alias_maximum=4)
    events = server.receive_data(encode(Publish("t", b"", properties={"topic_alias": 5}), 5))
    assert isinstance(events[0], ProtocolViolation) and events[0].reason_code == 0x94


def test_wrong_state_calls_are_caller_bugs() -> None:
    server = ServerConnection(LIMIT)
    with pytest.raises(RuntimeError):
        server.accept()
    with pytest.raises(RuntimeError):
        server.publish("t", b"x")
    client = ClientConnection(4)
    with pytest.raises(RuntimeError):
        client.publish("t", b"x")
    client.connect("c")
    with pytest.raises(RuntimeError):
        client.connect("c")
    with pytest.raises(ValueError):
        client.publish("a/#", b"x")
    with pytest.raises(ValueError):
        client.subscribe(["a#"])


# ------------------------------------------------------------------- property test


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=40, deadline=None)
@given(
    qos_list=st.lists(st.integers(0, 2), min_size=1, max_size=25),
    seed=st.integers(0, 2**32),
    chunk=st.integers(1, 64),
)
def test_every_message_arrives_exactly_once_in_any_ack_order_and_chunking(
    version: int, qos_list: list[int], seed: int, chunk: int
) -> None:
    """Client publishes a burst, bytes arrive in arbitrary pieces, the server stores
    and acks in a random order: each message is delivered once and every QoS>0 one
    is acknowledged."""
    rng = random.Random(seed)
    wire = connected(version, receive_maximum=5)
    sent: dict[bytes, int] = {}
    for i, qos in enumerate(qos_list):
        payload = b"m%d" % i
        sent[payload] = wire.client.publish("t", payload, qos)
    delivered: list[PublishReceived] = []
    acked: list[int] = []
    for _ in range(200):
        up = wire.client.data_to_send()
        for i in range(0, len(up), chunk):
            for event in wire.server.receive_data(up[i : i + chunk]):
                assert isinstance(event, PublishReceived)
                delivered.append(event)
        pending = [e.packet_id for e in delivered if e.packet_id is not None]
        pending = [p for p in pending if p in wire.server._unacked]
        rng.shuffle(pending)
        for pid in pending[: rng.randint(0, len(pending))]:
            wire.server.ack_publish(pid)
        down = wire.server.data_to_send()
        for i in range(0, len(down), chunk):
            for event in wire.client.receive_data(down[i : i + chunk]):
                assert isinstance(event, PublishAcked)
                acked.append(event.packet_id)
        if not up and not down and not wire.server._unacked:
            break
    assert sorted(e.payload for e in delivered) == sorted(sent)
    assert sorted(acked) == sorted(pid for pid in sent.values() if pid)
    assert wire.client.inflight_count == 0 and wire.client.queued_count == 0


def test_mqtt_31_client() -> None:
    client = ClientConnection(3)
    server = ServerConnection(LIMIT)
    client.connect("old-device")
    (request,) = server.receive_data(client.data_to_send())
    assert isinstance(request, ConnectRequested)
    assert (request.packet.protocol_name, request.packet.protocol_level) == ("MQIsdp", 3)
    assert server.version == 4  # 3.1 is wire-compatible with 3.1.1 after CONNECT
    server.accept()
    client.receive_data(server.data_to_send())
    pid = client.publish("t", b"x", 1)
    (event,) = server.receive_data(client.data_to_send())
    assert isinstance(event, PublishReceived) and event.packet_id == pid


def test_client_respects_the_server_maximum_qos() -> None:
    client = ClientConnection(5)
    client.connect("c")
    client.receive_data(encode(ConnAck(False, 0, {"maximum_qos": 1}), 5))
    client.publish("t", b"x", 1)
    with pytest.raises(ValueError):
        client.publish("t", b"x", 2)


def test_refuse_needs_a_failure_code() -> None:
    for version in VERSIONS:
        server = ServerConnection(LIMIT)
        server.receive_data(encode(Connect("c"), version))
        with pytest.raises(ValueError):
            server.refuse(0)
        with pytest.raises(ValueError):
            server.refuse(0x8F if version == 5 else 9)  # not a CONNACK code
        server.refuse(0x86)
        assert server.state is ConnectionState.CLOSED


_ANY_PACKET = st.one_of(
    st.builds(Publish, st.sampled_from(["t", "a/b"]), st.binary(max_size=8)),
    st.builds(
        lambda qos, pid, dup: Publish("t", b"x", qos, False, dup, pid),
        st.integers(1, 2),
        st.integers(1, 4),
        st.booleans(),
    ),
    st.builds(PubAck, st.integers(1, 4)),
    st.builds(PubRec, st.integers(1, 4)),
    st.builds(PubRel, st.integers(1, 4)),
    st.builds(PubComp, st.integers(1, 4)),
    st.builds(lambda pid: Subscribe(pid, [Subscription("a/+", 1)]), st.integers(1, 4)),
    st.builds(lambda pid: SubAck(pid, [1]), st.integers(1, 4)),
    st.builds(lambda pid: UnsubAck(pid), st.integers(1, 4)),
    st.just(Connect("again")),
    st.just(ConnAck()),
    st.just(Disconnect()),
)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.one_of(_ANY_PACKET, st.binary(min_size=1, max_size=12)), max_size=12),
    chunk=st.integers(1, 16),
)
def test_no_input_makes_either_side_raise(
    version: int, items: list[Packet | bytes], chunk: int
) -> None:
    """Whatever a peer sends, the state machines answer with events, never exceptions."""
    stream = b"".join(i if isinstance(i, bytes) else encode(i, version) for i in items)
    server = raw_client(version)
    client = ClientConnection(version)
    client.connect("c")
    client.receive_data(encode(ConnAck(), version))
    for side in (server, client):
        for i in range(0, len(stream), chunk):
            for event in side.receive_data(stream[i : i + chunk]):
                if isinstance(event, PublishReceived) and side is server and event.packet_id:
                    side.ack_publish(event.packet_id)  # the client acks by itself
            side.data_to_send()
        if side.state is not ConnectionState.CLOSED:
            assert side.state is ConnectionState.CONNECTED
