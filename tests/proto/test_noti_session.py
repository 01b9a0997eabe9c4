"""Paired noti client/server sessions with no I/O (protocols.md C)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.proto.noti import (
    MAX_PREFETCH,
    OUTBOUND_LINE_TARGET,
    Acked,
    ClientEvent,
    ClientSession,
    ClientState,
    CloseRequired,
    ErrorCode,
    EventPushed,
    InvalidMsg,
    LoginRequested,
    LoginResult,
    MessageRejected,
    NotiUsageError,
    PingReceived,
    Pong,
    ServerEvent,
    ServerSession,
    ServerState,
    WindowFull,
)


class Pair:
    """A client and a server session wired back to back."""

    def __init__(self, *, max_line: int | None = None) -> None:
        self.client = ClientSession()
        self.server: ServerSession[str] = (
            ServerSession() if max_line is None else ServerSession(max_line=max_line)
        )

    def to_server(self, raw: bytes | None = None) -> list[ServerEvent[str]]:
        data = self.client.data_to_send() if raw is None else raw
        return self.server.receive_data(data)

    def to_client(self) -> list[ClientEvent]:
        return self.client.receive_data(self.server.data_to_send())

    def login(self, prefetch: int = 5) -> None:
        self.client.login("ent-1", "s3cret", prefetch)
        events = self.to_server()
        assert events == [LoginRequested("ent-1", "s3cret", prefetch)]
        self.server.accept_login()
        assert self.to_client() == [LoginResult(True, "ok")]

    def reject(self, raw: bytes) -> InvalidMsg:
        """Send a raw line, expect exactly one invalid_msg back and no close."""
        events = self.to_server(raw)
        assert len(events) == 1 and isinstance(events[0], MessageRejected), events
        answer = self.to_client()
        assert len(answer) == 1 and isinstance(answer[0], InvalidMsg), answer
        assert answer[0].error_code == events[0].error_code
        assert not self.server.closed
        return answer[0]


def event(n: int = 0) -> dict[str, Any]:
    return {
        "event_type": "device_status_kv",
        "product_key": "pk-1",
        "did": f"dev-{n}",
        "mac": "",
        "group_id": "",
        "created_at": 1700000000.25 + n,
        "data": {"temp": 21.5, "n": n},
    }


# -- login ---------------------------------------------------------------------------------


def test_login_accept() -> None:
    pair = Pair()
    assert pair.server.state.name == "AWAIT_LOGIN"
    assert pair.server.window_free() == 0
    pair.login(prefetch=7)
    assert pair.server.state is ServerState.LOGGED_IN
    assert pair.client.state is ClientState.LOGGED_IN
    assert pair.server.enterprise_id == "ent-1"
    assert pair.server.window_free() == 7


def test_login_wire_format() -> None:
    client = ClientSession()
    client.login("e", "s", 5)
    assert json.loads(client.data_to_send()) == {
        "cmd": "enterprise_login_req",
        "data": {"enterprise_id": "e", "enterprise_secret": "s", "prefetch_count": 5},
    }
    server: ServerSession[int] = ServerSession()
    server.receive_data(
        b'{"data":{"enterprise_id":"e","enterprise_secret":"s","prefetch_count":5},"cmd":"enterprise_login_req"}\n'
    )
    server.accept_login()
    assert server.data_to_send() == (
        b'{"cmd":"enterprise_login_res","data":{"result":true,"msg":"ok"}}\n'
    )


def test_login_refuse_closes() -> None:
    pair = Pair()
    pair.client.login("ent-1", "wrong", 5)
    [requested] = pair.to_server()
    assert isinstance(requested, LoginRequested)
    assert "wrong" not in repr(requested)
    pair.server.refuse_login("bad enterprise_secret")
    assert pair.server.state is ServerState.CLOSED
    assert pair.server.close_reason is not None
    assert pair.to_client() == [LoginResult(False, "bad enterprise_secret")]
    assert pair.client.state is ClientState.CLOSED
    # Nothing more is handled after close.
    assert pair.server.receive_data(b'{"cmd":"enterprise_ping"}\n') == []
    assert pair.server.data_to_send() == b""
    with pytest.raises(NotiUsageError):
        pair.server.push(event(), "t")


def test_accept_without_login_request_is_a_usage_error() -> None:
    server: ServerSession[int] = ServerSession()
    with pytest.raises(NotiUsageError):
        server.accept_login()
    with pytest.raises(NotiUsageError):
        server.refuse_login("x")


def test_double_login_4009() -> None:
    pair = Pair()
    pair.login()
    pair.client.login("ent-1", "s3cret", 5)
    answer = pair.reject(pair.client.data_to_send())
    assert answer.error_code == ErrorCode.ALREADY_LOGGED_IN
    assert pair.server.state is ServerState.LOGGED_IN


def test_second_login_while_pending_4009() -> None:
    pair = Pair()
    pair.client.login("ent-1", "s3cret", 5)
    pair.client.login("ent-1", "s3cret", 5)
    events = pair.to_server()
    assert isinstance(events[0], LoginRequested)
    assert events[1] == MessageRejected(4009, "already logged in")
    pair.server.accept_login()
    assert [type(e) for e in pair.to_client()] == [InvalidMsg, LoginResult]


def test_before_login_4001() -> None:
    pair = Pair()
    pair.client.ack(1)
    answer = pair.reject(pair.client.data_to_send())
    assert answer.error_code == ErrorCode.NOT_LOGGED_IN
    # ...also while the login is pending.
    pair.client.login("ent-1", "s3cret", 5)
    assert isinstance(pair.to_server()[0], LoginRequested)
    pair.client.ack(1)
    assert pair.to_server() == [MessageRejected(4001, "not logged in")]


def test_ping_before_login_4001() -> None:
    """Before a login is requested a ping is not answered in kind: a connection that never
    logs in gets nothing for its pings (the edge closes it at its login deadline)."""
    pair = Pair()
    pair.client.ping()
    answer = pair.reject(pair.client.data_to_send())
    assert answer.error_code == ErrorCode.NOT_LOGGED_IN
    assert pair.server.state is ServerState.AWAIT_LOGIN
    pair.login()
    pair.client.ping()
    assert pair.to_server() == [PingReceived()]
    assert pair.to_client() == [Pong()]


# -- ping ----------------------------------------------------------------------------------


def test_ping_pong() -> None:
    pair = Pair()
    pair.login()
    pair.client.ping()
    pair.client.ping()
    assert pair.to_server() == [PingReceived(), PingReceived()]
    assert pair.server.data_to_send() == b'{"cmd":"enterprise_pong"}\n' * 2


# -- pushes, acks and the window -------------------------------------------------------------


@pytest.mark.parametrize("prefetch", [1, 5])
def test_window_respected_exactly(prefetch: int) -> None:
    pair = Pair()
    pair.login(prefetch)
    for i in range(prefetch):
        assert pair.server.can_push()
        assert pair.server.window_free() == prefetch - i
        assert pair.server.push(event(i), f"row-{i}") == i + 1
    assert not pair.server.can_push()
    assert pair.server.window_free() == 0
    with pytest.raises(WindowFull):
        pair.server.push(event(99), "row-99")
    # The failed push consumed nothing.
    assert pair.server.unacked_count == prefetch
    pushed = pair.to_client()
    assert pushed == [EventPushed(i + 1, event(i)) for i in range(prefetch)]
    # Acking one frees exactly one slot.
    pair.client.ack(1)
    assert pair.to_server() == [Acked(1, "row-0")]
    assert pair.server.window_free() == 1
    assert pair.server.push(event(prefetch), "next") == prefetch + 1
    assert not pair.server.can_push()
    # Ack everything, window fully open again.
    for delivery_id in range(2, prefetch + 2):
        pair.client.ack(delivery_id)
    acked = pair.to_server()
    assert [a.delivery_id for a in acked if isinstance(a, Acked)] == list(range(2, prefetch + 2))
    assert pair.server.window_free() == prefetch
    assert pair.server.unacked_tags() == []


def test_push_wire_format() -> None:
    pair = Pair()
    pair.login()
    pair.server.push({"event_type": "device_offline", "did": "d"}, "t")
    line = pair.server.data_to_send()
    assert line == (
        b'{"cmd":"enterprise_event_push","delivery_id":1,"event_type":"device_offline","did":"d"}\n'
    )


def test_push_drops_reserved_keys_and_accepts_preencoded() -> None:
    pair = Pair()
    pair.login()
    pair.server.push({"cmd": "x", "delivery_id": 77, "did": "d"}, "a")
    pair.server.push(b'{"did":"e","data":{"k":1}}', "b")
    pair.server.push({}, "c")
    assert pair.to_client() == [
        EventPushed(1, {"did": "d"}),
        EventPushed(2, {"did": "e", "data": {"k": 1}}),
        EventPushed(3, {}),
    ]
    with pytest.raises(ValueError):
        pair.server.push(b"[1]", "d")
    with pytest.raises(TypeError):
        pair.server.push({"x": object()}, "e")
    # Failed encodes record nothing and consume no delivery_id.
    assert pair.server.unacked_tags() == ["a", "b", "c"]
    assert pair.server.push({}, "f") == 4


def test_ack_unknown_4003() -> None:
    pair = Pair()
    pair.login()
    pair.server.push(event(), "t")
    pair.to_client()
    pair.client.ack(2)
    answer = pair.reject(pair.client.data_to_send())
    assert answer.error_code == ErrorCode.UNKNOWN_DELIVERY
    assert pair.server.unacked_tags() == ["t"]


def test_double_ack_4003() -> None:
    pair = Pair()
    pair.login()
    pair.server.push(event(), "t")
    pair.client.ack(1)
    assert pair.to_server() == [Acked(1, "t")]
    pair.server.data_to_send()
    pair.client.ack(1)
    assert pair.reject(pair.client.data_to_send()).error_code == 4003


def test_unacked_tags_in_push_order() -> None:
    pair = Pair()
    pair.login(10)
    for i in range(8):
        pair.server.push(event(i), f"row-{i}")
    for delivery_id in (2, 5, 1, 8):
        pair.client.ack(delivery_id)
    pair.to_server()
    assert pair.server.unacked_tags() == ["row-2", "row-3", "row-5", "row-6"]
    pair.server.close("peer gone")
    assert pair.server.closed
    assert pair.server.unacked_tags() == ["row-2", "row-3", "row-5", "row-6"]


def test_delivery_ids_increase_per_connection() -> None:
    first, second = Pair(), Pair()
    first.login(3)
    second.login(3)
    assert [first.server.push(event(), "x") for _ in range(3)] == [1, 2, 3]
    assert second.server.push(event(), "y") == 1


# -- malformed input: 4002 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json\n",
        b"[]\n",
        b'"enterprise_ping"\n',
        b"\xff\xfe\n",
        b'{"cmd":"enterprise_ping"} trailing\n',
        b'{"cmd":"enterprise_pang"}\n',
        b'{"cmd":7}\n',
        b'{"no_cmd":1}\n',
        b'{"cmd":"enterprise_login_req"}\n',
        b'{"cmd":"enterprise_login_req","data":null}\n',
        b'{"cmd":"enterprise_login_req","data":{"enterprise_id":"e","enterprise_secret":"s"}}\n',
        b'{"cmd":"enterprise_login_req","data":{"enterprise_id":"e","enterprise_secret":"s","prefetch_count":0}}\n',
        b'{"cmd":"enterprise_login_req","data":{"enterprise_id":"e","enterprise_secret":"s","prefetch_count":32768}}\n',
        b'{"cmd":"enterprise_login_req","data":{"enterprise_id":"e","enterprise_secret":"s","prefetch_count":"5"}}\n',
        b'{"cmd":"enterprise_login_req","data":{"enterprise_id":1,"enterprise_secret":"s","prefetch_count":5}}\n',
        b'{"cmd":"enterprise_event_ack"}\n',
        b'{"cmd":"enterprise_event_ack","delivery_id":"1"}\n',
        b'{"cmd":"enterprise_event_ack","delivery_id":true}\n',
        b'{"cmd":"enterprise_ping","x":' + b"[" * 5000 + b"]" * 5000 + b"}\n",
    ],
)
def test_malformed_4002(raw: bytes) -> None:
    pair = Pair()
    answer = pair.reject(raw)
    assert answer.error_code == ErrorCode.MALFORMED
    assert pair.server.state is ServerState.AWAIT_LOGIN
    # The connection is still usable afterwards.
    pair.login()


def test_malformed_after_login_keeps_session() -> None:
    pair = Pair()
    pair.login()
    pair.server.push(event(), "t")
    pair.to_client()
    assert pair.reject(b'{"cmd":"enterprise_event_ack","delivery_id":1.5}\n').error_code == 4002
    pair.client.ack(1)
    assert pair.to_server() == [Acked(1, "t")]


def test_prefetch_bounds_accepted() -> None:
    for prefetch in (1, MAX_PREFETCH):
        Pair().login(prefetch)
    with pytest.raises(ValueError):
        ClientSession().login("e", "s", 0)
    with pytest.raises(ValueError):
        ClientSession().login("e", "s", MAX_PREFETCH + 1)


def test_unknown_cmd_error_does_not_echo_huge_value() -> None:
    pair = Pair()
    answer = pair.reject(b'{"cmd":"' + b"x" * 60000 + b'"}\n')
    assert len(answer.msg) <= 256


def test_fields_in_any_order_and_unknown_fields_ignored() -> None:
    pair = Pair()
    events = pair.to_server(
        b'{"data":{"prefetch_count":3,"extra":[1,2],"enterprise_secret":"s",'
        b'"enterprise_id":"e"},"version":"1.0","cmd":"enterprise_login_req"}\n'
    )
    assert events == [LoginRequested("e", "s", 3)]
    pair.server.accept_login()
    pair.to_client()
    pair.server.push(event(), "t")
    assert pair.to_server(b'{"delivery_id":1,"x":{"y":null},"cmd":"enterprise_event_ack"}\n') == [
        Acked(1, "t")
    ]
    assert pair.to_server(b'{"ts":1,"cmd":"enterprise_ping"}\n') == [PingReceived()]


def test_crlf_and_blank_lines_tolerated() -> None:
    pair = Pair()
    pair.to_server(b"\r\n\n   \n")
    assert pair.server.data_to_send() == b""
    pair.login()
    assert pair.to_server(b'{"cmd":"enterprise_ping"}\r\n') == [PingReceived()]


# -- framing ---------------------------------------------------------------------------------


def test_incomplete_line_waits_for_newline() -> None:
    pair = Pair()
    pair.login()
    assert pair.to_server(b'{"cmd":"enterprise_ping"}') == []
    assert pair.server.data_to_send() == b""
    assert pair.to_server(b"\n") == [PingReceived()]


def test_byte_at_a_time() -> None:
    pair = Pair()
    pair.client.login("ent-1", "s3cret", 2)
    pair.client.ping()
    stream = pair.client.data_to_send()
    events: list[ServerEvent[str]] = []
    for i in range(len(stream)):
        events += pair.server.receive_data(stream[i : i + 1])
    assert events == [LoginRequested("ent-1", "s3cret", 2), PingReceived()]
    pair.server.accept_login()
    pair.server.push(event(1), "a")
    pair.server.push(event(2), "b")
    out = pair.server.data_to_send()
    received: list[ClientEvent] = []
    for i in range(len(out)):
        received += pair.client.receive_data(out[i : i + 1])
    assert received == [
        Pong(),
        LoginResult(True, "ok"),
        EventPushed(1, event(1)),
        EventPushed(2, event(2)),
    ]


def test_many_messages_in_one_read() -> None:
    pair = Pair()
    pair.login(3)
    for i in range(3):
        pair.server.push(event(i), f"t{i}")
    pair.to_client()
    for delivery_id in (3, 1, 2):
        pair.client.ack(delivery_id)
    pair.client.ping()
    assert pair.to_server() == [Acked(3, "t2"), Acked(1, "t0"), Acked(2, "t1"), PingReceived()]


def test_over_long_line_invalid_msg_then_close() -> None:
    pair = Pair(max_line=150)
    pair.login()
    pair.server.push(event(), "t")
    pair.to_client()
    # Lines before the over-long one in the same read are still handled.
    raw = b'{"cmd":"enterprise_event_ack","delivery_id":1}\n' + b"x" * 300 + b"\n"
    events = pair.to_server(raw)
    assert events[0] == Acked(1, "t")
    assert isinstance(events[1], MessageRejected) and events[1].error_code == 4002
    assert isinstance(events[2], CloseRequired)
    assert pair.server.closed
    [answer] = pair.to_client()
    assert isinstance(answer, InvalidMsg) and answer.error_code == 4002
    assert pair.server.receive_data(b'{"cmd":"enterprise_ping"}\n') == []


def test_over_long_partial_line_closes_early() -> None:
    """No newline needed: a partial line over the limit already cannot become valid."""
    pair = Pair(max_line=100)
    assert pair.to_server(b"x" * 100) == []
    events = pair.to_server(b"y")
    assert [type(e) for e in events] == [MessageRejected, CloseRequired]
    assert pair.server.closed


def test_line_at_limit_accepted() -> None:
    line = b'{"cmd":"enterprise_ping","pad":"' + b"p" * 100 + b'"}'
    pair = Pair(max_line=len(line))
    pair.login()
    assert pair.to_server(line + b"\r") == []
    assert pair.to_server(b"\n") == [PingReceived()]
    assert pair.to_server(line + b"\n") == [PingReceived()]
    assert not pair.server.closed


def test_default_limit_64k() -> None:
    pair = Pair()
    pad = b"p" * (64 * 1024)
    events = pair.to_server(b'{"cmd":"enterprise_ping","pad":"' + pad + b'"}\n')
    assert isinstance(events[-1], CloseRequired)


# -- client side -----------------------------------------------------------------------------


def test_client_rejects_malformed_server_output() -> None:
    from headrace.proto.noti import NotiProtocolError

    client = ClientSession()
    client.login("e", "s")
    with pytest.raises(NotiProtocolError):
        client.receive_data(b'{"cmd":"enterprise_surprise"}\n')
    assert client.state is ClientState.CLOSED
    with pytest.raises(NotiUsageError):
        client.ping()


def test_client_reads_original_invalid_msg_without_code() -> None:
    client = ClientSession()
    assert client.receive_data(b'{"cmd":"invalid_msg","msg":"bad"}\n') == [InvalidMsg("bad", None)]


# -- outbound size -----------------------------------------------------------------------------


def test_typical_push_lines_under_8k() -> None:
    base = {
        "product_key": "a" * 32,
        "did": "d" * 22,
        "mac": "aa:bb:cc:dd:ee:ff",
        "group_id": "g" * 32,
        "created_at": 1718000000.123456,
    }
    events = [
        {
            **base,
            "event_type": "device_online",
            "ip": "203.0.113.77",
            "country": "中国",
            "region": "广东",
            "city": "深圳",
        },
        {**base, "event_type": "device_offline"},
        {
            **base,
            "event_type": "attr_fault",
            "event_id": str(uuid.uuid4()),
            "data": {"attr_name": "fault_overheat", "attr_displayname": "过热故障", "value": 1},
        },
        {
            **base,
            "event_type": "device_status_raw",
            "data": base64.b64encode(bytes(range(256)) * 16).decode(),
        },
        {
            **base,
            "event_type": "device_status_kv",
            "data": {f"measurepoint_{i:03d}": i * 1.5 for i in range(150)},
        },
    ]
    pair = Pair()
    pair.login(len(events))
    for i, ev in enumerate(events):
        pair.server.push(ev, str(i))
    out = pair.server.data_to_send()
    lines = out.split(b"\n")[:-1]
    assert len(lines) == len(events)
    for line in lines:
        assert len(line) + 1 < OUTBOUND_LINE_TARGET, line[:80]
    assert pair.client.receive_data(out) == [EventPushed(i + 1, ev) for i, ev in enumerate(events)]


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    server: ServerSession[int] = ServerSession(max_line=256)
    for chunk in chunks:
        events = server.receive_data(chunk)
        for ev in events:
            assert isinstance(
                ev, LoginRequested | Acked | PingReceived | MessageRejected | CloseRequired
            )
            if isinstance(ev, LoginRequested):
                server.accept_login()
    # Whatever was sent, the output is whole JSON lines.
    out = server.data_to_send()
    if out:
        assert out.endswith(b"\n")
        for line in out.split(b"\n")[:-1]:
            json.loads(line)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_messages = st.fixed_dictionaries(
    {},
    optional={
        "cmd": st.sampled_from(
            ["enterprise_login_req", "enterprise_ping", "enterprise_event_ack", "other"]
        )
        | st.text(max_size=5),
        "delivery_id": st.integers(-2, 10) | _json_values,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "enterprise_id": st.text(max_size=5) | _json_values,
                "enterprise_secret": st.text(max_size=5),
                "prefetch_count": st.integers(-1, 40000) | _json_values,
            },
        )
        | _json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_messages, max_size=15), st.integers(0, 5))
def test_random_messages_keep_invariants(messages: list[dict[str, Any]], pushes: int) -> None:
    pair = Pair()
    stream = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
    acked: list[int] = []
    for ev in pair.to_server(stream):
        if isinstance(ev, LoginRequested):
            pair.server.accept_login()
            for i in range(min(pushes, pair.server.window_free())):
                pair.server.push(event(i), str(i))
        elif isinstance(ev, Acked):
            acked.append(ev.delivery_id)
    assert not pair.server.closed
    assert len(acked) == len(set(acked))
    assert 0 <= pair.server.window_free() <= pair.server.prefetch_count
    # Every line sent is one the client can read.
    for got in pair.to_client():
        assert isinstance(got, LoginResult | Pong | EventPushed | InvalidMsg)
