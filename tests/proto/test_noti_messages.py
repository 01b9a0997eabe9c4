"""noti message codec: wire shapes and round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.errors import ClientError
from headrace.proto.noti import (
    ErrorCode,
    EventPushed,
    InvalidMsg,
    LoginResult,
    NotiProtocolError,
    Pong,
    decode_client_message,
    decode_server_message,
    encode_event_push,
    encode_invalid_msg,
    encode_login_res,
)
from headrace.proto.noti.messages import (
    EventAck,
    LoginData,
    LoginRequest,
    Ping,
    encode_ack,
    encode_login_req,
    encode_ping,
    encode_pong,
)


def test_error_codes() -> None:
    assert {c.name: int(c) for c in ErrorCode} == {
        "INTERNAL": 4000,
        "NOT_LOGGED_IN": 4001,
        "MALFORMED": 4002,
        "UNKNOWN_DELIVERY": 4003,
        "ALREADY_LOGGED_IN": 4009,
    }
    err = NotiProtocolError("x", error_code=ErrorCode.UNKNOWN_DELIVERY)
    assert isinstance(err, ClientError)
    assert err.error_code == 4003 and type(err.error_code) is int


def test_server_lines() -> None:
    assert encode_login_res(True) == (
        b'{"cmd":"enterprise_login_res","data":{"result":true,"msg":"ok"}}\n'
    )
    assert encode_login_res(False, "bad secret") == (
        b'{"cmd":"enterprise_login_res","data":{"result":false,"msg":"bad secret"}}\n'
    )
    assert encode_pong() == b'{"cmd":"enterprise_pong"}\n'
    assert encode_invalid_msg("nope", ErrorCode.MALFORMED) == (
        b'{"cmd":"invalid_msg","msg":"nope","error_code":4002}\n'
    )
    assert len(json.loads(encode_invalid_msg("m" * 10000, 4002))["msg"]) == 256


def test_client_lines_decode_back() -> None:
    assert decode_client_message(encode_login_req("e", "s", 5)) == LoginRequest(
        LoginData("e", "s", 5)
    )
    assert decode_client_message(encode_ping()) == Ping()
    assert decode_client_message(encode_ack(42)) == EventAck(42)


def test_server_lines_decode_back() -> None:
    assert decode_server_message(encode_login_res(False, "no")) == LoginResult(False, "no")
    assert decode_server_message(encode_pong()) == Pong()
    assert decode_server_message(encode_invalid_msg("m", 4001)) == InvalidMsg("m", 4001)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{}",
        b'{"cmd":"enterprise_event_push"}',
        b'{"cmd":"enterprise_event_push","delivery_id":0}',
        b'{"cmd":"enterprise_event_push","delivery_id":true}',
        b'{"cmd":"enterprise_login_res"}',
        b'{"cmd":"enterprise_login_res","data":{"result":"yes"}}',
        b'{"cmd":"invalid_msg","msg":3}',
        b"[]",
    ],
)
def test_malformed_server_lines(line: bytes) -> None:
    with pytest.raises(NotiProtocolError):
        decode_server_message(line)


_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
_values = st.recursive(
    _scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2**40), st.dictionaries(st.text(max_size=12), _values, max_size=8))
def test_event_push_round_trip(delivery_id: int, event: dict[str, Any]) -> None:
    line = encode_event_push(delivery_id, event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b'{"cmd":"enterprise_event_push","delivery_id":')
    expected = {k: v for k, v in event.items() if k not in ("cmd", "delivery_id")}
    assert decode_server_message(line) == EventPushed(delivery_id, expected)
    # Pre-encoded events splice to the same line.
    body = json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert decode_server_message(encode_event_push(delivery_id, body)) == EventPushed(
        delivery_id, expected
    )
