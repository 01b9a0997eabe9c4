"""Sans-io MQTT 3.1.1 / 5.0: packets, wire codec and connection state machines.

No I/O and no clock here: ``headrace.server.mqtt`` (asyncio) and the client SDK feed
received bytes in and write out what the state machines want sent.

- ``packets``: one dataclass per control packet; 5.0 properties as a name-keyed dict.
- ``codec``: ``encode(packet, version)`` and the incremental ``Parser``.
- ``events``: connection states, the events the state machines return, ``SessionState``.
- ``connection``: what both roles share (buffers, QoS 1/2 flows, packet dispatch).
- ``server`` / ``client``: ``ServerConnection`` / ``ClientConnection``.
- ``errors``: ``MQTTProtocolError`` (bad peer input, with a 5.0 reason code).
"""

from .client import ClientConnection
from .codec import Parser, decode, encode, encode_properties, encode_varint
from .errors import ConnackCode, MQTTProtocolError, ReasonCode, connack_code_for
from .events import (
    AuthReceived,
    ConnAckReceived,
    ConnectionState,
    ConnectRequested,
    DisconnectReceived,
    Event,
    PingReceived,
    PingRespReceived,
    ProtocolViolation,
    PublishAcked,
    PublishReceived,
    SessionState,
    SubAckReceived,
    SubscribeRequested,
    UnsubAckReceived,
    UnsubscribeRequested,
)
from .packets import (
    MAX_PACKET_SIZE,
    PROPERTIES,
    PROPERTY_BY_ID,
    PROPERTY_BY_NAME,
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
    PropertySpec,
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
from .server import ServerConnection

__all__ = [
    "MAX_PACKET_SIZE",
    "PROPERTIES",
    "PROPERTY_BY_ID",
    "PROPERTY_BY_NAME",
    "Auth",
    "AuthReceived",
    "ClientConnection",
    "ConnAck",
    "ConnAckReceived",
    "ConnackCode",
    "Connect",
    "ConnectRequested",
    "ConnectionState",
    "Disconnect",
    "DisconnectReceived",
    "Event",
    "MQTTProtocolError",
    "Packet",
    "PacketType",
    "Parser",
    "PingReceived",
    "PingReq",
    "PingResp",
    "PingRespReceived",
    "Properties",
    "PropertyKind",
    "PropertySpec",
    "ProtocolViolation",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "PublishAcked",
    "PublishReceived",
    "ReasonCode",
    "ServerConnection",
    "SessionState",
    "SubAck",
    "SubAckReceived",
    "Subscribe",
    "SubscribeRequested",
    "Subscription",
    "UnsubAck",
    "UnsubAckReceived",
    "Unsubscribe",
    "UnsubscribeRequested",
    "Will",
    "connack_code_for",
    "decode",
    "encode",
    "encode_properties",
    "encode_varint",
    "valid_topic_filter",
    "valid_topic_name",
]
