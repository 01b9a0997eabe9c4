"""Our state machines against an independent MQTT implementation: paho-mqtt.

A real ``paho.mqtt.client.Client`` talks to a ``ServerConnection`` over a socketpair
(no network): paho's encoder produces what we decode, and paho's decoder checks what
we encode. The only thing patched is how paho opens its socket.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho_client
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from headrace.proto.mqtt import (
    ConnectRequested,
    DisconnectReceived,
    Event,
    PingReceived,
    ProtocolViolation,
    PublishAcked,
    PublishReceived,
    ServerConnection,
    SubscribeRequested,
    UnsubscribeRequested,
)

PROTOCOLS = {4: paho_client.MQTTv311, 5: paho_client.MQTTv5}


class Harness:
    def __init__(self, version: int, **client_kwargs: Any) -> None:
        self.version = version
        self.ours, theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.client = paho_client.Client(
            paho_client.CallbackAPIVersion.VERSION2,
            client_id="paho-1",
            protocol=PROTOCOLS[version],
            **client_kwargs,
        )
        self.client._create_socket = lambda: theirs  # type: ignore[method-assign]
        self.server = ServerConnection(1 << 20)
        self.calls: list[tuple[str, Any]] = []
        self.client.on_connect = lambda c, u, flags, rc, props: self.calls.append(
            ("connect", (flags.session_present, rc.value))
        )
        self.client.on_publish = lambda c, u, mid, rc, props: self.calls.append(("publish", mid))
        self.client.on_message = lambda c, u, msg: self.calls.append(
            ("message", (msg.topic, msg.payload, msg.qos))
        )
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.calls.append(
            ("subscribe", (mid, [code.value for code in codes]))
        )
        self.client.on_unsubscribe = lambda c, u, mid, codes, props: self.calls.append(
            ("unsubscribe", mid)
        )

    def close(self) -> None:
        self.client._sock_close()
        self.ours.close()

    def _recv(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.ours.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def pump(self) -> list[Event]:
        """Exchange bytes until both sides are quiet; returns the server's events."""
        events: list[Event] = []
        for _ in range(100):
            self.client.loop_write()
            up = self._recv()
            if up:
                events += self.server.receive_data(up)
            down = self.server.data_to_send()
            if down:
                self.ours.sendall(down)
            for _ in range(20):
                self.client.loop_read()
            if not up and not down and not self.client.want_write():
                return events
        raise AssertionError("no quiet point")

    def connect(self, **connect_kwargs: Any) -> ConnectRequested:
        self.client.connect("localhost", 1883, keepalive=30, **connect_kwargs)
        events = self.pump()
        assert len(events) == 1 and isinstance(events[0], ConnectRequested)
        return events[0]


@pytest.fixture(params=[4, 5], ids=["mqtt311", "mqtt5"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(request.param)
    yield h
    h.close()


def accept(h: Harness) -> None:
    h.connect()
    h.server.accept()
    assert h.pump() == []
    assert h.client.is_connected()


def test_paho_connect_with_will_and_credentials(harness: Harness) -> None:
    h = harness
    h.client.username_pw_set("%channel%&pk", "0123abcd")
    h.client.will_set("will/topic", b"gone", qos=1, retain=True)
    request = h.connect()
    packet = request.packet
    assert packet.client_id == "paho-1"
    assert packet.username == "%channel%&pk" and packet.password == b"0123abcd"
    assert packet.keepalive == 30 and packet.clean_start
    assert packet.protocol_level == h.version
    assert packet.will is not None
    assert (packet.will.topic, packet.will.payload, packet.will.qos, packet.will.retain) == (
        "will/topic",
        b"gone",
        1,
        True,
    )
    h.server.accept(session_present=False)
    h.pump()
    assert ("connect", (False, 0)) in h.calls
    assert h.client.is_connected()


def test_paho_refused(harness: Harness) -> None:
    h = harness
    h.connect()
    h.server.refuse(0x87)
    h.pump()
    expected = 0x87 if h.version == 5 else 5
    assert h.calls[0][0] == "connect"
    # paho maps 3.1.1 return codes onto 5.0 reason codes in its callback
    assert h.calls[0][1][1] in (expected, 0x87)
    assert not h.client.is_connected()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_publishes_to_us(harness: Harness, qos: int) -> None:
    h = harness
    accept(h)
    payload = bytes(range(256)) * 400  # 100 KB, crosses socket reads
    info = h.client.publish("/sys/pk/integration/measurepoint/post", payload, qos=qos)
    events = h.pump()
    assert len(events) == 1 and isinstance(events[0], PublishReceived)
    event = events[0]
    assert event.topic == "/sys/pk/integration/measurepoint/post"
    assert event.payload == payload and event.qos == qos
    if qos:
        assert event.packet_id == info.mid
        assert not info.is_published()
        h.server.ack_publish(info.mid)
        assert h.pump() == []
    assert info.is_published()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_we_publish_to_paho(harness: Harness, qos: int) -> None:
    h = harness
    accept(h)
    pid = h.server.publish("/sys/pk/integration/measurepoint/post_reply", b'{"code":200}', qos)
    events = h.pump()
    assert ("message", ("/sys/pk/integration/measurepoint/post_reply", b'{"code":200}', qos)) in (
        h.calls
    )
    assert events == ([PublishAcked(pid, 0)] if qos else [])


def test_paho_subscribe_unsubscribe_ping(harness: Harness) -> None:
    h = harness
    accept(h)
    _, mid = h.client.subscribe([("/sys/pk/integration/+/post_reply", 1), ("other/#", 2)])
    events = h.pump()
    assert len(events) == 1 and isinstance(events[0], SubscribeRequested)
    subs = events[0].subscriptions
    assert [(s.topic_filter, s.qos) for s in subs] == [
        ("/sys/pk/integration/+/post_reply", 1),
        ("other/#", 2),
    ]
    h.server.suback(mid, [1, 0x80])
    h.pump()
    assert ("subscribe", (mid, [1, 0x80])) in h.calls

    _, mid = h.client.unsubscribe("other/#")
    events = h.pump()
    assert events == [UnsubscribeRequested(mid, ["other/#"], events[0].properties)]  # type: ignore[attr-defined]
    h.server.unsuback(mid)
    h.pump()
    assert ("unsubscribe", mid) in h.calls

    # paho pings from loop_misc() once keepalive has passed; send one directly.
    h.client._send_pingreq()
    assert h.pump() == [PingReceived()]

    h.client.disconnect()
    events = h.pump()
    assert len(events) == 1 and isinstance(events[0], DisconnectReceived)


def test_paho_v5_properties() -> None:
    h = Harness(5)
    try:
        connect_props = PahoProperties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 3600
        connect_props.ReceiveMaximum = 7
        request = h.connect(properties=connect_props)
        assert request.packet.properties == {
            "session_expiry_interval": 3600,
            "receive_maximum": 7,
        }
        h.server.accept(properties={"server_keep_alive": 15})
        h.pump()
        assert h.client.is_connected()

        props = PahoProperties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = ("source", "offline")
        props.UserProperty = ("batch", "7")
        props.CorrelationData = b"\x01\x02"
        props.MessageExpiryInterval = 60
        h.client.publish("t", b"{}", qos=1, properties=props)
        (event,) = h.pump()
        assert isinstance(event, PublishReceived)
        assert event.properties == {
            "content_type": "application/json",
            "user_property": [("source", "offline"), ("batch", "7")],
            "correlation_data": b"\x01\x02",
            "message_expiry_interval": 60,
        }
        h.server.ack_publish(event.packet_id, 0x10)  # type: ignore[arg-type]
        h.pump()
        assert ("publish", event.packet_id) in h.calls

        h.server.publish(
            "r", b"x", 1, properties={"user_property": [("a", "b")], "content_type": "c"}
        )
        h.pump()
        assert ("message", ("r", b"x", 1)) in h.calls

        h.server.disconnect(0x8B)
        h.pump()
    finally:
        h.close()


def test_paho_v5_authentication_method_is_refused_0x8c() -> None:
    h = Harness(5)
    try:
        connect_props = PahoProperties(PacketTypes.CONNECT)
        connect_props.AuthenticationMethod = "SCRAM-SHA-1"
        connect_props.AuthenticationData = b"client-first"
        h.client.connect("localhost", 1883, keepalive=30, properties=connect_props)
        events = h.pump()
        assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
        assert events[0].reason_code == 0x8C
        assert h.calls == [("connect", (False, 0x8C))]  # Bad authentication method
        assert not h.client.is_connected()
    finally:
        h.close()
