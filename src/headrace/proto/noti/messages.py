"""noti 1.0 messages: decoding and encoding of every command (docs/protocols.md C.2, C.3).

Decoding uses msgspec: fields may come in any order (a real client sends ``data`` before
``cmd``) and unknown fields are ignored. Encoding produces compact JSON lines ending in
``\\n``; the ``cmd`` field always comes first so that line-oriented tools can grep it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, Final, TypeAlias

import msgspec

from headrace.errors import ClientError, ServerError
from headrace.proto.noti.events import ClientEvent, EventPushed, InvalidMsg, LoginResult, Pong

MIN_PREFETCH: Final = 1
MAX_PREFETCH: Final = 32767

OUTBOUND_LINE_TARGET: Final = 8 * 1024
"""Outbound lines should stay under this where the payload allows (docs/protocols.md C.1):
one popular client drops longer lines. Not enforced here; the push side reports it."""

MAX_ERROR_MSG: Final = 256
"""``invalid_msg.msg`` is cut to this many characters so it never echoes a huge line."""


class ErrorCode(enum.IntEnum):
    """``invalid_msg.error_code`` values (docs/protocols.md C.2 decisions)."""

    INTERNAL = 4000
    NOT_LOGGED_IN = 4001
    MALFORMED = 4002
    UNKNOWN_DELIVERY = 4003
    ALREADY_LOGGED_IN = 4009


class NotiProtocolError(ClientError):
    """The peer broke the noti protocol; ``error_code`` is what ``invalid_msg`` carries."""

    code = "noti_protocol_error"

    def __init__(self, message: str, *, error_code: int = ErrorCode.MALFORMED) -> None:
        super().__init__(message)
        self.error_code = int(error_code)


class NotiUsageError(ServerError):
    """The local caller used a session wrongly (pushed beyond the window, accepted a login
    that was never requested...). Always a bug on our side, never the peer's."""

    code = "noti_usage_error"


class WindowFull(NotiUsageError):
    """``push`` called with no free prefetch slot."""

    code = "noti_window_full"


# -- client -> server ----------------------------------------------------------------------

Prefetch = Annotated[int, msgspec.Meta(ge=MIN_PREFETCH, le=MAX_PREFETCH)]


class LoginData(msgspec.Struct, frozen=True):
    enterprise_id: str
    enterprise_secret: str
    prefetch_count: Prefetch


class LoginRequest(msgspec.Struct, frozen=True, tag_field="cmd", tag="enterprise_login_req"):
    data: LoginData


class Ping(msgspec.Struct, frozen=True, tag_field="cmd", tag="enterprise_ping"):
    pass


class EventAck(msgspec.Struct, frozen=True, tag_field="cmd", tag="enterprise_event_ack"):
    # The seed says "fill in with the original data type": pushes carry an integer.
    delivery_id: int


ClientMessage: TypeAlias = LoginRequest | Ping | EventAck

_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)


def _malformed(exc: BaseException) -> NotiProtocolError:
    if isinstance(exc, RecursionError):
        text = "malformed message: nested too deeply"
    else:
        text = f"malformed message: {exc}"
    return NotiProtocolError(text[:MAX_ERROR_MSG], error_code=ErrorCode.MALFORMED)


def decode_client_message(line: bytes) -> ClientMessage:
    """Decode one line from a client; raise ``NotiProtocolError`` (4002) if malformed:
    bad JSON or UTF-8, not an object, unknown or missing ``cmd``, missing or bad field."""
    try:
        return _client_decoder.decode(line)
    except (msgspec.MsgspecError, RecursionError, ValueError) as exc:
        raise _malformed(exc) from None


_encoder: Final = msgspec.json.Encoder()


def encode_login_req(enterprise_id: str, enterprise_secret: str, prefetch_count: int) -> bytes:
    data = {
        "enterprise_id": enterprise_id,
        "enterprise_secret": enterprise_secret,
        "prefetch_count": prefetch_count,
    }
    return _encoder.encode({"cmd": "enterprise_login_req", "data": data}) + b"\n"


PING_LINE: Final = b'{"cmd":"enterprise_ping"}\n'


def encode_ping() -> bytes:
    return PING_LINE


def encode_ack(delivery_id: int) -> bytes:
    return b'{"cmd":"enterprise_event_ack","delivery_id":%d}\n' % delivery_id


# -- server -> client ----------------------------------------------------------------------

PONG_LINE: Final = b'{"cmd":"enterprise_pong"}\n'
LOGIN_OK_LINE: Final = b'{"cmd":"enterprise_login_res","data":{"result":true,"msg":"ok"}}\n'

_PUSH_PREFIX: Final = b'{"cmd":"enterprise_event_push","delivery_id":'
_PUSH_RESERVED: Final = frozenset({"cmd", "delivery_id"})


def encode_login_res(result: bool, msg: str = "ok") -> bytes:
    if result and msg == "ok":
        return LOGIN_OK_LINE
    body = {"cmd": "enterprise_login_res", "data": {"result": result, "msg": msg}}
    return _encoder.encode(body) + b"\n"


def encode_pong() -> bytes:
    return PONG_LINE


def encode_invalid_msg(msg: str, error_code: int) -> bytes:
    body = {"cmd": "invalid_msg", "msg": msg[:MAX_ERROR_MSG], "error_code": int(error_code)}
    return _encoder.encode(body) + b"\n"


def encode_event_push(delivery_id: int, event: Mapping[str, Any] | bytes) -> bytes:
    """One ``enterprise_event_push`` line: ``cmd`` and ``delivery_id``, then the event.

    ``event`` is a mapping of the C.3 fields (``event_type``, ``product_key``, ``did``...),
    or the same already encoded as one compact JSON object (as a queue may store it), which
    is spliced in without re-encoding; it must not contain ``cmd`` or ``delivery_id``.
    A mapping's own ``cmd``/``delivery_id`` keys are dropped. Raises ``TypeError`` or
    ``msgspec.EncodeError`` for values JSON cannot hold, ``ValueError`` for bad bytes.
    """
    if isinstance(event, bytes | bytearray | memoryview):
        body = bytes(event).strip()
        if not (body.startswith(b"{") and body.endswith(b"}")) or b"\n" in body:
            raise ValueError("a pre-encoded event must be one JSON object on one line")
    else:
        if not _PUSH_RESERVED.isdisjoint(event.keys()):
            event = {k: v for k, v in event.items() if k not in _PUSH_RESERVED}
        body = _encoder.encode(event)
    head = _PUSH_PREFIX + b"%d" % delivery_id
    inner = body[1:-1]
    if not inner.strip():
        return head + b"}\n"
    return head + b"," + inner + b"}\n"


# Server messages as the client sees them.


class _LoginResData(msgspec.Struct, frozen=True):
    result: bool
    msg: str = ""


class _LoginRes(msgspec.Struct, frozen=True):
    data: _LoginResData


class _InvalidMsg(msgspec.Struct, frozen=True):
    msg: str = ""
    error_code: int | None = None


_object_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def decode_server_message(line: bytes) -> ClientEvent:
    """Decode one line from a server; raise ``NotiProtocolError`` if malformed.

    An event push keeps every field except ``cmd`` and ``delivery_id`` in ``event``.
    """
    try:
        obj = _object_decoder.decode(line)
        cmd = obj.get("cmd")
        if cmd == "enterprise_event_push":
            delivery_id = obj.pop("delivery_id", None)
            del obj["cmd"]
            if type(delivery_id) is not int or delivery_id < 1:
                raise ValueError("delivery_id must be a positive integer")
            return EventPushed(delivery_id, obj)
        if cmd == "enterprise_pong":
            return Pong()
        if cmd == "enterprise_login_res":
            res = msgspec.convert(obj, _LoginRes).data
            return LoginResult(res.result, res.msg)
        if cmd == "invalid_msg":
            bad = msgspec.convert(obj, _InvalidMsg)
            return InvalidMsg(bad.msg, bad.error_code)
        raise ValueError(f"unknown cmd {cmd!r}"[:MAX_ERROR_MSG])
    except (msgspec.MsgspecError, RecursionError, ValueError) as exc:
        raise _malformed(exc) from None
