"""The server's subscription session state machine, fed the SDK's own packages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.proto.subscription import (
    AuthRequested,
    CloseRequested,
    CommitRequested,
    IdleRequested,
    PullRequested,
    ServerSession,
    State,
    SubscribeRequested,
    Violation,
    encode_message,
    wire,
)

sub_pb2 = pytest.importorskip("enos_subscribe.proto.sub_pb2")
core = pytest.importorskip("enos_subscribe.core")


def pkg(cmd: int, msg: object, seq: int = 0) -> bytes:
    return wire.TransferPkg(cmd, msg.SerializeToString(), seq).encode()  # type: ignore[attr-defined]


def auth(ak: str = "ak", sub: str = "sub-1") -> bytes:
    req = sub_pb2.AuthReq(accessKey=ak, subId=sub, subType=0)
    req.sign = core.sign(access_key=ak, sub_id=sub, secret="s")
    return core.build_pkg(wire.AUTH_REQ, req.SerializeToString())


def sub_req(group: str = "g") -> bytes:
    req = sub_pb2.SubReq(
        category=0, clientId="host", subId="sub-1", accessKey="ak", consumerGroup=group
    )
    return core.build_pkg(wire.SUB_REQ, req.SerializeToString())


def parse(raw: bytes) -> tuple[type, object]:
    return core.pkg_parser(raw)  # type: ignore[no-any-return]


def subscribed() -> ServerSession:
    s = ServerSession()
    [ev] = s.receive_message(auth())
    assert ev == AuthRequested(
        "ak", "sub-1", core.sign(access_key="ak", sub_id="sub-1", secret="s"), 0
    )
    s.accept_auth("chan")
    [ok] = s.messages_to_send()
    kind, rsp = parse(ok)
    assert kind is sub_pb2.AuthRsp and rsp.ack == 0 and rsp.channelId == "chan"
    [ev] = s.receive_message(sub_req())
    assert ev == SubscribeRequested(0, "host", "sub-1", "ak", "g")
    s.accept_sub()
    [ok] = s.messages_to_send()
    kind, rsp = parse(ok)
    assert kind is sub_pb2.SubRsp and rsp.ack == 0
    assert s.state is State.SUBSCRIBED
    return s


def test_auth_sub_pull_commit() -> None:
    s = subscribed()
    [ev] = s.receive_message(pkg(wire.PULL_REQ, sub_pb2.PullReq(id=5), seq=9))
    assert ev == PullRequested(5)
    s.reply_pull([encode_message(b"sub-1", 2, 10, 1000, "asset", '{"v":1}')])
    [raw] = s.messages_to_send()
    assert wire.TransferPkg.decode(raw).seqId == 9  # the request's seqId echoed
    kind, rsp = parse(raw)
    assert kind is sub_pb2.PullRsp and rsp.id == 5
    [m] = rsp.msgDTO.messages
    assert (m.topic, m.partition, m.offset, m.timestamp, m.key, m.value) == (
        "sub-1",
        2,
        10,
        1000,
        "asset",
        '{"v":1}',
    )
    dto = sub_pb2.CommitDTO()
    c = dto.commits.add()
    c.topic, c.partition, c.offset = "sub-1", 2, 10
    [ev] = s.receive_message(core.build_pkg(wire.COMMIT_REQ, dto.SerializeToString()))
    assert isinstance(ev, CommitRequested) and ev.commits == (wire.Commit("sub-1", 2, 10),)
    assert s.messages_to_send() == []  # a commit is never answered


def test_refused_auth_has_a_non_zero_ack_and_closes() -> None:
    s = ServerSession()
    s.receive_message(auth())
    s.refuse_auth(401, "wrong signature")
    [raw] = s.messages_to_send()
    kind, rsp = parse(raw)
    assert kind is sub_pb2.AuthRsp and rsp.ack == 401 and rsp.msg == "wrong signature"
    assert s.state is State.CLOSED
    assert s.receive_message(sub_req()) == []


def test_refused_sub() -> None:
    s = ServerSession()
    s.receive_message(auth())
    s.accept_auth()
    s.receive_message(sub_req())
    s.messages_to_send()
    s.refuse_sub(0, "no such group")  # 0 is never sent as a refusal
    _kind, rsp = parse(s.messages_to_send()[0])
    assert rsp.ack != 0 and rsp.msg == "no such group"


def test_nothing_but_auth_before_auth() -> None:
    for first in (
        pkg(wire.PULL_REQ, sub_pb2.PullReq(id=1)),
        pkg(wire.IDLE_REQ, sub_pb2.IdleReq()),
        sub_req(),
    ):
        s = ServerSession()
        [ev] = s.receive_message(first)
        assert isinstance(ev, Violation) and s.state is State.CLOSED
        assert s.messages_to_send() == []


def test_pull_before_sub_and_second_auth_are_violations() -> None:
    s = ServerSession()
    s.receive_message(auth())
    s.accept_auth()
    [ev] = s.receive_message(pkg(wire.PULL_REQ, sub_pb2.PullReq(id=1)))
    assert isinstance(ev, Violation)
    s = subscribed()
    [ev] = s.receive_message(auth())
    assert isinstance(ev, Violation)


def test_idle_and_close() -> None:
    s = subscribed()
    [ev] = s.receive_message(pkg(wire.IDLE_REQ, sub_pb2.IdleReq(), seq=3))
    assert ev == IdleRequested()
    s.answer_idle(12345)
    kind, rsp = parse(s.messages_to_send()[0])
    assert kind is sub_pb2.IdleRsp and rsp.svrTime == 12345
    [ev] = s.receive_message(pkg(wire.CLOSE_REQ, sub_pb2.CloseReq(id=1)))
    assert ev == CloseRequested()
    [raw] = s.messages_to_send()
    assert wire.TransferPkg.decode(raw).cmdId == wire.CLOSE_RSP
    assert s.state is State.CLOSED


def test_pulls_are_answered_in_order_and_capped() -> None:
    s = ServerSession(max_pending_pulls=2)
    s.receive_message(auth())
    s.accept_auth()
    s.receive_message(sub_req())
    s.accept_sub()
    s.messages_to_send()
    s.receive_message(pkg(wire.PULL_REQ, sub_pb2.PullReq(id=1)))
    s.receive_message(pkg(wire.PULL_REQ, sub_pb2.PullReq(id=2)))
    assert s.pending_pulls == 2
    assert s.reply_pull([]) == 1
    s.receive_message(pkg(wire.PULL_REQ, sub_pb2.PullReq(id=3)))
    [ev] = s.receive_message(pkg(wire.PULL_REQ, sub_pb2.PullReq(id=4)))
    assert isinstance(ev, Violation)


def test_zip_and_response_cmds_are_violations() -> None:
    s = subscribed()
    raw = wire.TransferPkg(
        wire.PULL_REQ, sub_pb2.PullReq(id=1).SerializeToString(), 0, True
    ).encode()
    assert isinstance(s.receive_message(raw)[0], Violation)
    s = subscribed()
    assert isinstance(
        s.receive_message(wire.TransferPkg(wire.PULL_RSP, wire.encode_pull_rsp(1, 0, [])).encode())[
            0
        ],
        Violation,
    )


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_fuzz_session(frames: list[bytes]) -> None:
    s = ServerSession()
    for raw in frames:
        for ev in s.receive_message(raw):
            if isinstance(ev, AuthRequested):
                s.accept_auth()
            elif isinstance(ev, SubscribeRequested):
                s.accept_sub()
            elif isinstance(ev, PullRequested):
                s.reply_pull([])
            elif isinstance(ev, IdleRequested):
                s.answer_idle(1)
    for out in s.messages_to_send():
        wire.TransferPkg.decode(out)
