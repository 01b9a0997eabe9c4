"""The EnOS data subscription messages on the wire (data-out.md E), sans-io.

Every WebSocket binary frame is one protobuf (proto2) ``TransferPkg`` whose ``data`` is
the encoding of the message named by ``cmdId``. The encoding is written here by hand:
varints and length-delimited fields are all these messages use, and a hand-written codec
has no dependency, no generated code (the SDK's own needs a pure-Python protobuf
runtime) and is checked against the SDK's generated classes in
``tests/proto/test_subscription_wire.py``.

Decoding follows protobuf's rules: fields in any order, the last occurrence of a scalar
wins, unknown fields of wire types 0, 1, 2 and 5 are skipped; a truncated field, a varint
longer than 10 bytes, a group (wire types 3, 4), field number 0, invalid UTF-8 in a
string or a wrong wire type for a known field is a ``WireError``. Missing fields take
their zero value (proto2's required fields are checked by the session where they matter).
Encoding always writes every required field, even when it is zero or empty, since the
peer's proto2 decoder may insist on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

# -- cmdId (sub.proto's CmdId) ---------------------------------------------------------------
IDLE_REQ: Final = 0
IDLE_RSP: Final = 1
AUTH_REQ: Final = 2
AUTH_RSP: Final = 3
PULL_REQ: Final = 4
PULL_RSP: Final = 5
SUB_REQ: Final = 6
SUB_RSP: Final = 7
COMMIT_REQ: Final = 8
COMMIT_RSP: Final = 9
CLOSE_REQ: Final = 10
CLOSE_RSP: Final = 11

# -- subType / category: what a client subscribes to (the SDK's client classes) ----------------
SUB_REALTIME: Final = 0  # DataClient: time series, real-time channel
SUB_ALERT: Final = 1  # AlertClient
SUB_OFFLINE: Final = 3  # OfflineClient: time series, offline channel
SUB_EVENT: Final = 4  # EventClient
SUB_ADVANCED_ALERT: Final = 5  # AdvancedAlertClient

# -- auth_rsp / sub_rsp ack: 0 is success; EnOS documents no refusal codes, these are ours
ACK_OK: Final = 0
ACK_BAD_REQUEST: Final = 400  # malformed or inconsistent request
ACK_BAD_SIGN: Final = 401  # the signature does not match the service account's secret
ACK_FORBIDDEN: Final = 403  # the account may not read this job (or the job is stopped)
ACK_NOT_FOUND: Final = 404  # no such job for this account
ACK_CONFLICT: Final = 409  # subType/category does not match the job's type and channel
ACK_THROTTLED: Final = 429  # too many failed auths from the address, or the group is full
ACK_UNAVAILABLE: Final = 503  # the server is shutting down

NOT_MATCHED: Final = "_*NMM!_"
"""A message value the SDK skips (still committing its offset): a filler for a position a
filter left out. headrace's offsets need none (docs/protocols.md E)."""

_WT_VARINT: Final = 0
_WT_I64: Final = 1
_WT_LEN: Final = 2
_WT_I32: Final = 5
_U64: Final = (1 << 64) - 1


class WireError(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


def subscription_sign(access_key: str, secret: str, sub_id: str) -> str:
    """The AuthReq ``sign``: lower hex SHA-256 of ``"access_key" + key + "access_secret" +
    secret + "sub_id" + subId`` (the service account's key and secret)."""
    text = "access_key" + access_key + "access_secret" + secret + "sub_id" + sub_id
    return hashlib.sha256(text.encode()).hexdigest()


# -- primitives ---------------------------------------------------------------------------------


def _varint(value: int, out: bytearray) -> None:
    value &= _U64  # negative int32/int64: ten bytes of two's complement, as protobuf does
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _key(number: int, wire_type: int, out: bytearray) -> None:
    _varint((number << 3) | wire_type, out)


def _put_int(number: int, value: int, out: bytearray) -> None:
    _key(number, _WT_VARINT, out)
    _varint(value, out)


def _put_bytes(number: int, value: bytes, out: bytearray) -> None:
    _key(number, _WT_LEN, out)
    _varint(len(value), out)
    out += value


def _put_str(number: int, value: str, out: bytearray) -> None:
    _put_bytes(number, value.encode(), out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field: an int for varints and fixed
    fields, the bytes of a length-delimited one."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == _WT_VARINT:
            value, pos = _read_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == _WT_LEN:
            length, pos = _read_varint(data, pos)
            if length > end - pos:
                raise WireError("truncated length-delimited field")
            yield number, wire_type, data[pos : pos + length]
            pos += length
        elif wire_type == _WT_I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64 field")
            yield number, wire_type, int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire_type == _WT_I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32 field")
            yield number, wire_type, int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _int64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _uint32(v: int) -> int:
    return v & 0xFFFFFFFF


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise WireError("string field is not UTF-8") from None


# A schema: field number -> (attribute, kind); kinds below.
_Schema = dict[int, tuple[str, str]]

_SCALARS: dict[str, Callable[[int], int | bool]] = {
    "int32": _int32,
    "int64": _int64,
    "uint32": _uint32,
    "bool": bool,
}


def _decode_into(obj: object, schema: _Schema, data: bytes) -> None:
    for number, wire_type, value in _fields(data):
        spec = schema.get(number)
        if spec is None:
            continue  # unknown field: skipped
        name, kind = spec
        if kind in _SCALARS:
            if wire_type != _WT_VARINT:
                raise WireError(f"field {name} expects a varint")
            assert isinstance(value, int)
            setattr(obj, name, _SCALARS[kind](value))
            continue
        if wire_type != _WT_LEN:
            raise WireError(f"field {name} expects a length-delimited value")
        assert isinstance(value, bytes)
        if kind == "string":
            setattr(obj, name, _text(value))
        elif kind == "bytes":
            setattr(obj, name, value)
        else:  # a repeated or nested message: kind is the name of a decoder below
            _NESTED[kind](obj, name, value)


# -- messages -------------------------------------------------------------------------------------


@dataclass(slots=True)
class TransferPkg:
    cmdId: int = 0
    data: bytes = b""
    seqId: int = 0
    zip: bool = False
    ver: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.cmdId, out)
        _put_bytes(2, self.data, out)
        _put_int(3, self.seqId, out)
        _put_int(4, int(self.zip), out)
        _put_int(5, self.ver, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> TransferPkg:
        pkg = cls()
        _decode_into(
            pkg,
            {
                1: ("cmdId", "int32"),
                2: ("data", "bytes"),
                3: ("seqId", "int32"),
                4: ("zip", "bool"),
                5: ("ver", "uint32"),
            },
            data,
        )
        return pkg


@dataclass(slots=True)
class IdleReq:
    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, data: bytes) -> IdleReq:
        _decode_into(cls(), {}, data)  # still checked: a client must send valid protobuf
        return cls()


@dataclass(slots=True)
class IdleRsp:
    svrTime: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.svrTime, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> IdleRsp:
        m = cls()
        _decode_into(m, {1: ("svrTime", "int64")}, data)
        return m


@dataclass(slots=True)
class AuthReq:
    accessKey: str = ""
    subId: str = ""
    sign: str = ""
    subType: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        _put_str(1, self.accessKey, out)
        _put_str(2, self.subId, out)
        _put_str(3, self.sign, out)
        _put_int(4, self.subType, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> AuthReq:
        m = cls()
        _decode_into(
            m,
            {
                1: ("accessKey", "string"),
                2: ("subId", "string"),
                3: ("sign", "string"),
                4: ("subType", "int32"),
            },
            data,
        )
        return m


@dataclass(slots=True)
class AuthRsp:
    ack: int = 0
    msg: str = ""
    channelId: str = ""

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.ack, out)
        _put_str(2, self.msg, out)
        _put_str(3, self.channelId, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> AuthRsp:
        m = cls()
        _decode_into(
            m, {1: ("ack", "int32"), 2: ("msg", "string"), 3: ("channelId", "string")}, data
        )
        return m


@dataclass(slots=True)
class SubReq:
    category: int = 0
    clientId: str = ""
    subId: str = ""
    accessKey: str = ""
    consumerGroup: str = ""

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.category, out)
        _put_str(2, self.clientId, out)
        _put_str(3, self.subId, out)
        _put_str(4, self.accessKey, out)
        _put_str(5, self.consumerGroup, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> SubReq:
        m = cls()
        _decode_into(
            m,
            {
                1: ("category", "int32"),
                2: ("clientId", "string"),
                3: ("subId", "string"),
                4: ("accessKey", "string"),
                5: ("consumerGroup", "string"),
            },
            data,
        )
        return m


@dataclass(slots=True)
class SubRsp:
    ack: int = 0
    channelId: str = ""
    msg: str = ""

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.ack, out)
        _put_str(2, self.channelId, out)
        _put_str(3, self.msg, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> SubRsp:
        m = cls()
        _decode_into(
            m, {1: ("ack", "int32"), 2: ("channelId", "string"), 3: ("msg", "string")}, data
        )
        return m


@dataclass(slots=True)
class PullReq:
    id: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.id, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> PullReq:
        m = cls()
        _decode_into(m, {1: ("id", "int64")}, data)
        return m


@dataclass(slots=True)
class Message:
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    key: str = ""
    value: str = ""

    def encode_into(self, out: bytearray) -> None:
        _put_str(1, self.topic, out)
        _put_int(2, self.partition, out)
        _put_int(3, self.offset, out)
        _put_int(4, self.timestamp, out)
        _put_str(5, self.key, out)
        _put_str(6, self.value, out)

    @classmethod
    def decode(cls, data: bytes) -> Message:
        m = cls()
        _decode_into(
            m,
            {
                1: ("topic", "string"),
                2: ("partition", "int32"),
                3: ("offset", "int64"),
                4: ("timestamp", "int64"),
                5: ("key", "string"),
                6: ("value", "string"),
            },
            data,
        )
        return m


def encode_message(
    topic: bytes, partition: int, offset: int, ts: int, key: str, value: str
) -> bytes:
    """One encoded ``Message`` (the hot path of a pull: no object per message); ``topic``
    is its UTF-8 encoding, shared by every message of a job."""
    out = bytearray()
    _put_bytes(1, topic, out)
    _put_int(2, partition, out)
    _put_int(3, offset, out)
    _put_int(4, ts, out)
    _put_str(5, key, out)
    _put_str(6, value, out)
    return bytes(out)


@dataclass(slots=True)
class PullRsp:
    id: int = 0
    code: int = 0
    messages: list[Message] = field(default_factory=list)  # msgDTO.messages

    def encode(self) -> bytes:
        encoded = []
        for m in self.messages:
            inner = bytearray()
            m.encode_into(inner)
            encoded.append(bytes(inner))
        return encode_pull_rsp(self.id, self.code, encoded)

    @classmethod
    def decode(cls, data: bytes) -> PullRsp:
        m = cls()
        _decode_into(m, {1: ("id", "int64"), 2: ("code", "int32"), 3: ("messages", "dto")}, data)
        return m


def encode_pull_rsp(pull_id: int, code: int, encoded: list[bytes]) -> bytes:
    """A ``PullRsp`` around messages encoded by ``encode_message``."""
    dto = bytearray()
    for m in encoded:
        _put_bytes(1, m, dto)
    out = bytearray()
    _put_int(1, pull_id, out)
    _put_int(2, code, out)
    _put_bytes(3, bytes(dto), out)  # msgDTO is required: written even when empty
    return bytes(out)


@dataclass(slots=True)
class Commit:
    topic: str = ""
    partition: int = 0
    offset: int = 0

    def encode_into(self, out: bytearray) -> None:
        _put_str(1, self.topic, out)
        _put_int(2, self.partition, out)
        _put_int(3, self.offset, out)

    @classmethod
    def decode(cls, data: bytes) -> Commit:
        m = cls()
        _decode_into(
            m, {1: ("topic", "string"), 2: ("partition", "int32"), 3: ("offset", "int64")}, data
        )
        return m


@dataclass(slots=True)
class CommitDTO:
    commits: list[Commit] = field(default_factory=list)

    def encode(self) -> bytes:
        out = bytearray()
        for c in self.commits:
            inner = bytearray()
            c.encode_into(inner)
            _put_bytes(1, bytes(inner), out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> CommitDTO:
        m = cls()
        _decode_into(m, {1: ("commits", "commit")}, data)
        return m


@dataclass(slots=True)
class CloseReq:
    id: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        _put_int(1, self.id, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> CloseReq:
        m = cls()
        _decode_into(m, {1: ("id", "int64")}, data)
        return m


def _add_dto(obj: object, name: str, raw: bytes) -> None:
    # msgDTO: MessageDTO{messages=1 repeated Message}; a repeated msgDTO merges
    messages: list[Message] = getattr(obj, name)
    for number, wire_type, value in _fields(raw):
        if number == 1:
            if wire_type != _WT_LEN:
                raise WireError("field messages expects a length-delimited value")
            assert isinstance(value, bytes)
            messages.append(Message.decode(value))


def _add_commit(obj: object, name: str, raw: bytes) -> None:
    commits: list[Commit] = getattr(obj, name)
    commits.append(Commit.decode(raw))


_NESTED: dict[str, Callable[[object, str, bytes], None]] = {
    "dto": _add_dto,
    "commit": _add_commit,
}

MESSAGE_TYPES: Final[dict[int, type]] = {
    IDLE_REQ: IdleReq,
    IDLE_RSP: IdleRsp,
    AUTH_REQ: AuthReq,
    AUTH_RSP: AuthRsp,
    PULL_REQ: PullReq,
    PULL_RSP: PullRsp,
    SUB_REQ: SubReq,
    SUB_RSP: SubRsp,
    COMMIT_REQ: CommitDTO,
    CLOSE_REQ: CloseReq,
}
"""The message each cmdId carries (commit_rsp and close_rsp carry nothing)."""
