"""MQTT reason codes and the one error the codec raises for bad peer input.

``MQTTProtocolError`` is what the parser and the connection state machines raise (or
report) when the *peer* sends something the spec forbids. It carries the MQTT 5 reason
code that says why (0x81 malformed, 0x82 protocol error, 0x95 packet too large, ...);
for a 3.1.1 peer the code is only informative, since 3.1.1 has no reason codes outside
CONNACK. Mistakes by *our* caller (publishing on a closed connection, acking an unknown
packet id) raise ``ValueError`` / ``RuntimeError`` instead: they are bugs, not input.
"""

from __future__ import annotations

from enum import IntEnum

from headrace.errors import ClientError


class ReasonCode(IntEnum):
    """MQTT 5.0 reason codes (spec 2.4). Values below 0x80 mean success."""

    SUCCESS = 0x00  # also NORMAL_DISCONNECTION and GRANTED_QOS_0
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnackCode(IntEnum):
    """MQTT 3.1.1 CONNACK return codes (spec 3.1.1, 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


# CONNACK refusal: 5.0 reason -> 3.1.1 return code (anything unlisted -> server unavailable).
_V5_TO_V3_CONNACK = {
    0x00: 0,
    0x84: 1,
    0x85: 2,
    0x88: 3,
    0x89: 3,
    0x86: 4,
    0x87: 5,
    0x8A: 5,
    0x8C: 4,
}
_V3_TO_V5_CONNACK = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


def connack_code_for(reason: int, version: int) -> int:
    """The CONNACK code for ``reason`` on a connection of ``version`` (4 or 5).

    ``reason`` may be given either as a 5.0 reason code (>= 0x80, or 0) or as a
    3.1.1 return code (1..5); it is mapped to the form the version uses.
    """
    if version == 5:
        return _V3_TO_V5_CONNACK.get(reason, reason) if reason < 0x80 else reason
    if reason < 0x80:
        if reason in _V3_TO_V5_CONNACK:
            return reason
        raise ValueError(f"not a CONNACK code: {reason:#x}")
    return _V5_TO_V3_CONNACK.get(reason, ConnackCode.SERVER_UNAVAILABLE)


class MQTTProtocolError(ClientError):
    """The peer broke the MQTT spec; the connection must be closed.

    ``reason_code`` is the MQTT 5 reason code (``ReasonCode``) describing the fault.
    """

    code = "mqtt_protocol_error"

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code

    def __repr__(self) -> str:
        return f"MQTTProtocolError({self.reason_code:#04x}, {self.message!r})"

    def __reduce__(self) -> tuple[type[MQTTProtocolError], tuple[int, str]]:
        return (MQTTProtocolError, (self.reason_code, self.message))
