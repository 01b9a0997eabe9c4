"""noti 1.0 wire behaviour against a real hub, with a client made of ``ssl`` + ``json``:
logins, heartbeats, prefetch, acks, malformed and over-long lines (protocols.md C.1-C.2)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.noti_support import (
    Noti,
    Producer,
    Tenant,
    enterprise,
    stats,
    tenant,
    wait_for,
)


@pytest.fixture(scope="module")
def t(shared_api: httpx.Client) -> Tenant:
    return tenant(shared_api)


@pytest.fixture(scope="module")
def producer(shared_hub: HubProcess, t: Tenant) -> Iterator[Producer]:
    p = Producer(shared_hub, t)
    yield p
    p.close()


@pytest.fixture
def noti(shared_hub: HubProcess) -> Iterator[Noti]:
    n = Noti(shared_hub)
    yield n
    n.close()


def seqs(pushes: list[dict]) -> list[int]:  # type: ignore[type-arg]
    return [p["data"]["seq"] for p in pushes]


def test_login_ok(shared_api: httpx.Client, t: Tenant, noti: Noti) -> None:
    eid, secret = enterprise(shared_api, t)
    noti.login(eid, secret, 5)
    wait_for(lambda: stats(shared_api, t, eid)["connections"] == 1)


@pytest.mark.parametrize("case", ["bad secret", "unknown id", "ip not allowed"])
def test_login_refused_then_closed(
    shared_api: httpx.Client, t: Tenant, noti: Noti, case: str
) -> None:
    eid, secret = enterprise(
        shared_api, t, ipAllowList=["10.1.0.0/16"] if case == "ip not allowed" else []
    )
    if case == "bad secret":
        res = noti.login(eid, secret + "x", check=False)
    elif case == "unknown id":
        res = noti.login("nope" + eid, secret, check=False)
    else:
        res = noti.login(eid, secret, check=False)
    assert res["cmd"] == "enterprise_login_res" and res["data"]["result"] is False
    msg = res["data"]["msg"]
    if case == "ip not allowed":
        assert "127.0.0.1" in msg and "not allowed" in msg
    else:  # the same answer whether the id exists or not
        assert msg == "enterprise_id or enterprise_secret is wrong"
    assert noti.closed_by_server(5)
    assert stats(shared_api, t, eid)["connections"] == 0


def test_ip_allow_list_admits_listed_address(
    shared_api: httpx.Client, t: Tenant, noti: Noti
) -> None:
    eid, secret = enterprise(shared_api, t, ipAllowList=["10.0.0.1", "127.0.0.0/8"])
    noti.login(eid, secret)


@pytest.mark.parametrize("prefetch", [0, -1, 32768, "5"])
def test_bad_prefetch_is_malformed_and_connection_stays(
    shared_api: httpx.Client, t: Tenant, noti: Noti, prefetch: object
) -> None:
    """Out-of-range prefetch_count is a malformed login (invalid_msg 4002): nothing is
    logged in, the connection stays and a correct login then works."""
    eid, secret = enterprise(shared_api, t)
    noti.send(
        {
            "cmd": "enterprise_login_req",
            "data": {"enterprise_id": eid, "enterprise_secret": secret, "prefetch_count": prefetch},
        }
    )
    res = noti.recv()
    assert res["cmd"] == "invalid_msg" and res["error_code"] == 4002, res
    assert "prefetch_count" in res["msg"]
    noti.login(eid, secret, 32767)


def test_heartbeat_before_and_after_login(shared_api: httpx.Client, t: Tenant, noti: Noti) -> None:
    noti.ping()  # before login: not logged in (a heartbeat does not keep a connection)
    assert noti.recv() == {"cmd": "invalid_msg", "msg": "not logged in", "error_code": 4001}
    eid, secret = enterprise(shared_api, t)
    noti.login(eid, secret)
    for _ in range(3):
        noti.ping()
        assert noti.recv() == {"cmd": "enterprise_pong"}


def test_prefetch_respected_exactly(
    shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti
) -> None:
    eid, secret = enterprise(shared_api, t, types=["device_status_kv"])
    # the queue fills while nobody is connected
    producer.measurepoints([("d1", {"seq": i}) for i in range(10)])
    wait_for(lambda: stats(shared_api, t, eid)["depth"] == 10)
    noti.login(eid, secret, 3)
    first = noti.pushes(3)
    assert [p["delivery_id"] for p in first] == [1, 2, 3]
    assert seqs(first) == [0, 1, 2]
    noti.nothing(0.7)  # the window is full
    st = stats(shared_api, t, eid)
    assert st["unacked"] == 3 and st["depth"] == 7 and st["delivered"] == 3
    noti.ack(2)  # any order: one slot frees, exactly one more push
    nxt = noti.pushes(1)
    assert nxt[0]["delivery_id"] == 4 and seqs(nxt) == [3]
    noti.nothing(0.5)
    noti.ack(1)
    noti.ack(3)
    more = noti.pushes(2)
    assert [p["delivery_id"] for p in more] == [5, 6] and seqs(more) == [4, 5]
    noti.nothing(0.5)
    for d in (4, 5, 6):
        noti.ack(d)
    rest = noti.pushes(3)
    assert seqs(rest) == [6, 7, 8]
    for p in rest:
        noti.ack(p["delivery_id"])
    last = noti.pushes(1)
    assert seqs(last) == [9]
    noti.ack(last[0]["delivery_id"])
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 10)
    st = stats(shared_api, t, eid)
    assert st["depth"] == 0 and st["unacked"] == 0 and st["stored"] == 0


def test_ack_errors(shared_api: httpx.Client, t: Tenant, producer: Producer, noti: Noti) -> None:
    eid, secret = enterprise(shared_api, t, types=["device_status_kv"])
    noti.ack(1)  # not logged in
    res = noti.recv()
    assert res["cmd"] == "invalid_msg" and res["error_code"] == 4001
    noti.login(eid, secret, 5)
    producer.measurepoints([("d2", {"seq": 1})])
    (push,) = noti.pushes(1)
    noti.ack(push["delivery_id"] + 100)  # never pushed
    res = noti.recv()
    assert res["error_code"] == 4003 and str(push["delivery_id"] + 100) in res["msg"]
    noti.ack(push["delivery_id"])
    noti.ack(push["delivery_id"])  # already acked
    res = noti.recv()
    assert res["cmd"] == "invalid_msg" and res["error_code"] == 4003
    # a second login on the same connection
    noti.send(
        {
            "cmd": "enterprise_login_req",
            "data": {"enterprise_id": eid, "enterprise_secret": secret, "prefetch_count": 5},
        }
    )
    assert noti.recv()["error_code"] == 4009
    noti.ping()  # still usable
    assert noti.recv() == {"cmd": "enterprise_pong"}
    wait_for(lambda: stats(shared_api, t, eid)["acked"] == 1)


@pytest.mark.parametrize(
    "line",
    [
        b"{not json\n",
        b"[1,2]\n",
        b'{"cmd":"enterprise_pang"}\n',
        b'{"data":{}}\n',
        b'{"cmd":"enterprise_event_ack"}\n',
        b'{"cmd":"enterprise_event_ack","delivery_id":"1"}\n',
        b"\xff\xfe\n",
    ],
)
def test_malformed_lines_answered_and_connection_kept(noti: Noti, line: bytes) -> None:
    noti.send(line)
    res = noti.recv()
    assert res["cmd"] == "invalid_msg" and res["error_code"] == 4002 and res["msg"], res
    noti.ping()  # still answered (not logged in: 4001)
    assert noti.recv()["error_code"] == 4001


def test_line_in_pieces_and_crlf(shared_api: httpx.Client, t: Tenant, noti: Noti) -> None:
    eid, secret = enterprise(shared_api, t)
    line = json.dumps(
        {
            "cmd": "enterprise_login_req",
            "data": {"enterprise_id": eid, "enterprise_secret": secret, "prefetch_count": 5},
        }
    ).encode()
    for i in range(0, len(line), 7):  # a line without its \n is simply not complete yet
        noti.send(line[i : i + 7])
    noti.nothing(0.3)
    noti.send(b"\r\n")
    assert noti.recv()["data"]["result"] is True


@pytest.mark.parametrize("logged_in", [False, True])
def test_over_long_line_closes(
    shared_api: httpx.Client, t: Tenant, noti: Noti, logged_in: bool
) -> None:
    if logged_in:
        eid, secret = enterprise(shared_api, t)
        noti.login(eid, secret)
    noti.send(b'{"cmd":"enterprise_ping","pad":"' + b"x" * (64 * 1024 + 10))
    res = noti.recv()
    assert res["cmd"] == "invalid_msg" and res["error_code"] == 4002
    assert "longer than 65536" in res["msg"]
    assert noti.closed_by_server(5)


def test_line_at_the_limit_is_accepted(shared_api: httpx.Client, t: Tenant, noti: Noti) -> None:
    eid, secret = enterprise(shared_api, t)
    noti.login(eid, secret)
    head = b'{"cmd":"enterprise_ping","pad":"'
    line = head + b"x" * (64 * 1024 - len(head) - 2) + b'"}'
    assert len(line) == 64 * 1024
    noti.send(line + b"\n")
    assert noti.recv() == {"cmd": "enterprise_pong"}
