"""The hand-written subscription codec against the enos-subscribe SDK's generated protobuf
classes: what we encode the SDK decodes to the same values, what the SDK encodes we
decode to the same values, and hostile bytes give ``WireError`` and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.proto.subscription import wire

sub_pb2 = pytest.importorskip("enos_subscribe.proto.sub_pb2")
common_pb2 = pytest.importorskip("enos_subscribe.proto.common_pb2")
core = pytest.importorskip("enos_subscribe.core")

int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
uint32 = st.integers(0, 2**32 - 1)
text = st.text(max_size=40)


def test_sign_is_the_sdks() -> None:
    assert wire.subscription_sign("ak", "secret", "sub-1") == core.sign(
        access_key="ak", sub_id="sub-1", secret="secret"
    )
    assert wire.subscription_sign("ключ", "秘密", "sub") == core.sign(
        access_key="ключ", sub_id="sub", secret="秘密"
    )


def test_cmd_ids_are_the_sdks() -> None:
    for name in (
        "idle_req",
        "idle_rsp",
        "auth_req",
        "auth_rsp",
        "pull_req",
        "pull_rsp",
        "sub_req",
        "sub_rsp",
        "commit_req",
        "commit_rsp",
        "close_req",
        "close_rsp",
    ):
        assert getattr(wire, name.upper()) == getattr(sub_pb2, name)


@given(cmd=int32, data=st.binary(max_size=64), seq=int32, zipped=st.booleans(), ver=uint32)
def test_transfer_pkg_both_ways(cmd: int, data: bytes, seq: int, zipped: bool, ver: int) -> None:
    ours = wire.TransferPkg(cmd, data, seq, zipped, ver).encode()
    theirs = common_pb2.TransferPkg.FromString(ours)
    assert (theirs.cmdId, theirs.data, theirs.seqId, theirs.zip, theirs.ver) == (
        cmd,
        data,
        seq,
        zipped,
        ver,
    )
    pkg = common_pb2.TransferPkg(cmdId=cmd, data=data, seqId=seq, zip=zipped, ver=ver)
    back = wire.TransferPkg.decode(pkg.SerializeToString())
    assert back == wire.TransferPkg(cmd, data, seq, zipped, ver)
    assert ours == pkg.SerializeToString()  # same field order, same bytes


def test_the_sdks_own_package_builder() -> None:
    req = sub_pb2.PullReq(id=7)
    pkg = wire.TransferPkg.decode(core.build_pkg(wire.PULL_REQ, req.SerializeToString()))
    assert (pkg.cmdId, pkg.seqId, pkg.zip) == (wire.PULL_REQ, 0, False)
    assert wire.PullReq.decode(pkg.data).id == 7


@given(ak=text, sub=text, sign=text, sub_type=int32)
def test_auth_req(ak: str, sub: str, sign: str, sub_type: int) -> None:
    m = sub_pb2.AuthReq(accessKey=ak, subId=sub, sign=sign, subType=sub_type)
    assert wire.AuthReq.decode(m.SerializeToString()) == wire.AuthReq(ak, sub, sign, sub_type)
    assert wire.AuthReq(ak, sub, sign, sub_type).encode() == m.SerializeToString()


@given(ack=int32, msg=text, channel=text)
def test_auth_rsp_and_sub_rsp(ack: int, msg: str, channel: str) -> None:
    a = sub_pb2.AuthRsp.FromString(wire.AuthRsp(ack, msg, channel).encode())
    assert (a.ack, a.msg, a.channelId) == (ack, msg, channel)
    assert a.IsInitialized()
    s = sub_pb2.SubRsp.FromString(wire.SubRsp(ack, channel, msg).encode())
    assert (s.ack, s.channelId, s.msg) == (ack, channel, msg)
    assert s.IsInitialized()


def test_required_fields_written_when_zero() -> None:
    # proto2 required: a zero ack and an empty PullRsp still carry their fields
    assert sub_pb2.AuthRsp.FromString(wire.AuthRsp(0).encode()).HasField("ack")
    rsp = sub_pb2.PullRsp.FromString(wire.encode_pull_rsp(1, 0, []))
    assert rsp.IsInitialized() and rsp.HasField("msgDTO") and not rsp.msgDTO.messages
    assert sub_pb2.IdleRsp.FromString(wire.IdleRsp(0).encode()).IsInitialized()


@given(cat=int32, client=text, sub=text, ak=text, group=text)
def test_sub_req(cat: int, client: str, sub: str, ak: str, group: str) -> None:
    m = sub_pb2.SubReq(category=cat, clientId=client, subId=sub, accessKey=ak, consumerGroup=group)
    assert wire.SubReq.decode(m.SerializeToString()) == wire.SubReq(cat, client, sub, ak, group)


messages = st.lists(st.tuples(text, int32, int64, int64, text, st.text(max_size=200)), max_size=12)


@given(pull_id=int64, code=int32, batch=messages)
def test_pull_rsp_reaches_the_sdk(pull_id: int, code: int, batch: list[tuple]) -> None:
    encoded = [wire.encode_message(t.encode(), p, o, ts, k, v) for (t, p, o, ts, k, v) in batch]
    raw = wire.encode_pull_rsp(pull_id, code, encoded)
    rsp = sub_pb2.PullRsp.FromString(raw)
    assert rsp.IsInitialized()
    assert (rsp.id, rsp.code) == (pull_id, code)
    got = [
        (m.topic, m.partition, m.offset, m.timestamp, m.key, m.value) for m in rsp.msgDTO.messages
    ]
    assert got == batch
    # and the object form encodes the same bytes
    obj = wire.PullRsp(pull_id, code, [wire.Message(*m) for m in batch])
    assert obj.encode() == raw
    assert wire.PullRsp.decode(raw) == obj
    # the SDK's own parser, as its fetch thread calls it
    kind, parsed = core.pkg_parser(wire.TransferPkg(wire.PULL_RSP, raw).encode())
    assert kind is sub_pb2.PullRsp and len(parsed.msgDTO.messages) == len(batch)


@given(st.lists(st.tuples(text, int32, int64), max_size=10))
def test_commit_dto_from_the_sdk(commits: list[tuple[str, int, int]]) -> None:
    dto = sub_pb2.CommitDTO()
    for topic, partition, offset in commits:
        c = dto.commits.add()
        c.topic, c.partition, c.offset = topic, partition, offset
    got = wire.CommitDTO.decode(dto.SerializeToString())
    assert [(c.topic, c.partition, c.offset) for c in got.commits] == commits
    assert wire.CommitDTO([wire.Commit(*c) for c in commits]).encode() == dto.SerializeToString()


@given(pull_id=int64)
def test_pull_req_and_close_req(pull_id: int) -> None:
    assert wire.PullReq.decode(sub_pb2.PullReq(id=pull_id).SerializeToString()).id == pull_id
    assert wire.CloseReq.decode(sub_pb2.CloseReq(id=pull_id).SerializeToString()).id == pull_id
    assert sub_pb2.IdleRsp.FromString(wire.IdleRsp(pull_id).encode()).svrTime == pull_id


def test_unknown_fields_are_skipped() -> None:
    extra = bytearray(wire.AuthReq("ak", "s", "x", 0).encode())
    extra += bytes([0x48, 0x05])  # field 9 varint
    extra += bytes([0x51]) + bytes(8)  # field 10 fixed64
    extra += bytes([0x5D]) + bytes(4)  # field 11 fixed32
    extra += bytes([0x62, 0x02, 0x41, 0x42])  # field 12 bytes
    assert wire.AuthReq.decode(bytes(extra)) == wire.AuthReq("ak", "s", "x", 0)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x08",  # truncated varint
        b"\x08" + b"\xff" * 10 + b"\x01",  # varint too long
        b"\x12\x05ab",  # length beyond the end
        b"\x00\x01",  # field number 0
        b"\x0b",  # group start
        b"\x09\x00",  # fixed64 truncated
        b"\x0a\x01\xff",  # accessKey not UTF-8
        b"\x0a\x02",  # accessKey declared, missing
        b"\x20\x01\x22\x00" + b"\x0d\x00\x00\x00\x00",  # accessKey as fixed32
    ],
)
def test_hostile_bytes_are_wire_errors(raw: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.AuthReq.decode(raw)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_fuzz_every_decoder(raw: bytes) -> None:
    for cls in wire.MESSAGE_TYPES.values():
        try:
            cls.decode(raw)
        except wire.WireError:
            pass
    try:
        wire.TransferPkg.decode(raw)
    except wire.WireError:
        pass
