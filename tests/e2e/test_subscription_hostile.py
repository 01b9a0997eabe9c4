"""A hostile client against the data subscription listener: connections that never
handshake or authenticate, text frames, oversized and malformed messages, pulls before
auth, a TLS handshake that never comes, repeated wrong signatures, random bytes. Each
refusal is bounded in time and the listener keeps serving a real client afterwards."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.proto.subscription import wire
from tests.conftest import HubProcess, from_template
from tests.e2e import http_support as hs
from tests.e2e.subscription_support import create_job

sub_pb2 = pytest.importorskip("enos_subscribe.proto.sub_pb2")
core = pytest.importorskip("enos_subscribe.core")

LOGIN_TIMEOUT = 1.5
IDLE_TIMEOUT = 2.0
FAILURES = 3
WINDOW = 3.0
MAX_MESSAGE = 4096


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(
        from_template(hub_template, tmp_path_factory.mktemp("sub-hostile") / "data"),
        [
            "--set",
            f"subscription.login_timeout={LOGIN_TIMEOUT}",
            "--set",
            f"subscription.idle_timeout={IDLE_TIMEOUT}",
            "--set",
            f"subscription.login_failures={FAILURES}",
            "--set",
            f"subscription.login_window={WINDOW}",
            "--set",
            f"subscription.max_message={MAX_MESSAGE}",
            "--set",
            "subscription.handshake_timeout=1.0",
            "--set",
            "subscription.max_pending=5",
        ],
    )
    h.start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def tenant(hub: HubProcess) -> tuple[hs.Tenant, str]:
    with hub.client() as api:
        t = hs.make_tenant(api, hub.url, devices=1)
        sub = create_job(api, t.org, t.app_key)
    return t, sub["subId"]


def url(hub: HubProcess) -> str:
    return f"ws://127.0.0.1:{hub.ports['subscription']}"


def connect(hub: HubProcess) -> websocket.WebSocket:
    return websocket.create_connection(url(hub), timeout=10)


def auth_pkg(ak: str, secret: str, sub_id: str) -> bytes:
    req = sub_pb2.AuthReq(accessKey=ak, subId=sub_id, subType=0)
    req.sign = core.sign(access_key=ak, sub_id=sub_id, secret=secret)
    return core.build_pkg(2, req.SerializeToString())


def closed_within(ws: websocket.WebSocket, seconds: float) -> float:
    """Seconds until the server closed the connection (fails after ``seconds``)."""
    t0 = time.monotonic()
    ws.settimeout(seconds)
    try:
        while True:
            frame = ws.recv_frame()
            if frame is None or frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                break
    except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
        pass
    except websocket.WebSocketTimeoutException:
        pytest.fail(f"connection still open after {seconds} s")
    finally:
        ws.shutdown()
    return time.monotonic() - t0


def close_code(ws: websocket.WebSocket) -> int | None:
    ws.settimeout(5)
    try:
        frame = ws.recv_frame()
    except (websocket.WebSocketConnectionClosedException, OSError):
        return None
    finally:
        ws.shutdown()
    if frame.opcode != websocket.ABNF.OPCODE_CLOSE or len(frame.data) < 2:
        return None
    return int.from_bytes(frame.data[:2], "big")


def still_serves(hub: HubProcess, tenant: tuple[hs.Tenant, str]) -> None:
    t, sub_id = tenant
    ws = connect(hub)
    try:
        ws.send(auth_pkg(t.app_key, t.secret, sub_id), websocket.ABNF.OPCODE_BINARY)
        kind, rsp = core.pkg_parser(ws.recv())
        assert kind is sub_pb2.AuthRsp and rsp.ack == 0, rsp
    finally:
        ws.close()


def test_no_auth_in_time_is_closed(hub: HubProcess, tenant: tuple[hs.Tenant, str]) -> None:
    ws = connect(hub)
    took = closed_within(ws, LOGIN_TIMEOUT + 3)
    assert took >= LOGIN_TIMEOUT - 0.3
    # a raw TCP connection that never sends its WebSocket handshake, too
    s = socket.create_connection(("127.0.0.1", hub.ports["subscription"]))
    s.settimeout(LOGIN_TIMEOUT + 3)
    assert s.recv(100) == b""
    s.close()
    still_serves(hub, tenant)


def test_idle_after_auth_is_closed(hub: HubProcess, tenant: tuple[hs.Tenant, str]) -> None:
    t, sub_id = tenant
    ws = connect(hub)
    ws.send(auth_pkg(t.app_key, t.secret, sub_id), websocket.ABNF.OPCODE_BINARY)
    assert core.pkg_parser(ws.recv())[1].ack == 0
    took = closed_within(ws, IDLE_TIMEOUT + 3)
    assert took >= IDLE_TIMEOUT - 0.5
    # pings keep a connection alive (the SDK's keep-alive)
    ws = connect(hub)
    ws.send(auth_pkg(t.app_key, t.secret, sub_id), websocket.ABNF.OPCODE_BINARY)
    assert core.pkg_parser(ws.recv())[1].ack == 0
    for _ in range(4):
        time.sleep(IDLE_TIMEOUT / 2)
        ws.ping(b"x")
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"x"
    ws.close()


def test_idle_req_gets_server_time(hub: HubProcess, tenant: tuple[hs.Tenant, str]) -> None:
    t, sub_id = tenant
    ws = connect(hub)
    ws.send(auth_pkg(t.app_key, t.secret, sub_id), websocket.ABNF.OPCODE_BINARY)
    assert core.pkg_parser(ws.recv())[1].ack == 0
    ws.send(core.build_pkg(0, b""), websocket.ABNF.OPCODE_BINARY)
    kind, rsp = core.pkg_parser(ws.recv())
    assert kind is sub_pb2.IdleRsp and abs(rsp.svrTime - time.time() * 1000) < 10_000
    ws.close()


@pytest.mark.parametrize(
    "what",
    ["text", "garbage", "pull-before-auth", "oversized", "zip"],
)
def test_violations_close_with_a_code(
    hub: HubProcess, tenant: tuple[hs.Tenant, str], what: str
) -> None:
    ws = connect(hub)
    if what == "text":
        ws.send("hello")
        expected = 1003
    elif what == "garbage":
        ws.send(b"\x0b\xff\xff", websocket.ABNF.OPCODE_BINARY)
        expected = 1002
    elif what == "pull-before-auth":
        ws.send(
            core.build_pkg(4, sub_pb2.PullReq(id=1).SerializeToString()),
            websocket.ABNF.OPCODE_BINARY,
        )
        expected = 1002
    elif what == "oversized":
        ws.send(b"\x00" * (MAX_MESSAGE + 1), websocket.ABNF.OPCODE_BINARY)
        expected = 1009
    else:
        pkg = wire.TransferPkg(2, b"", 0, True).encode()
        ws.send(pkg, websocket.ABNF.OPCODE_BINARY)
        expected = 1002
    assert close_code(ws) == expected
    still_serves(hub, tenant)


def test_wrong_signs_from_one_address_are_throttled(
    hub: HubProcess, tenant: tuple[hs.Tenant, str]
) -> None:
    t, sub_id = tenant
    acks = []
    for _ in range(FAILURES + 1):
        ws = connect(hub)
        ws.send(auth_pkg(t.app_key, "wrong", sub_id), websocket.ABNF.OPCODE_BINARY)
        acks.append(core.pkg_parser(ws.recv())[1].ack)
        ws.close()
    assert acks[:FAILURES] == [401] * FAILURES
    assert acks[FAILURES] == 429
    # the right secret is refused unchecked too, until the window passes
    ws = connect(hub)
    ws.send(auth_pkg(t.app_key, t.secret, sub_id), websocket.ABNF.OPCODE_BINARY)
    assert core.pkg_parser(ws.recv())[1].ack == 429
    ws.close()
    time.sleep(WINDOW + 0.5)
    still_serves(hub, tenant)


def test_tls_listener_and_its_handshake_deadline(
    hub: HubProcess, tenant: tuple[hs.Tenant, str]
) -> None:
    t, sub_id = tenant
    port = hub.ports["subscription_tls"]
    ws = websocket.create_connection(
        f"wss://localhost:{port}",
        timeout=10,
        sslopt={"ca_certs": str(hub.data_dir / "tls" / "server-cert.pem")},
    )
    ws.send(auth_pkg(t.app_key, t.secret, sub_id), websocket.ABNF.OPCODE_BINARY)
    assert core.pkg_parser(ws.recv())[1].ack == 0
    ws.close()
    s = socket.create_connection(("127.0.0.1", port))  # never starts its TLS handshake
    s.settimeout(5)
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - t0 < 4
    s.close()


def test_pending_cap_closes_the_oldest(hub: HubProcess, tenant: tuple[hs.Tenant, str]) -> None:
    idle = [connect(hub) for _ in range(5)]
    extra = connect(hub)  # the sixth: the oldest idle one is closed to make room
    closed_within(idle[0], 3)
    still_serves(hub, tenant)
    for ws in [*idle[1:], extra]:
        ws.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_fuzz_frames(hub: HubProcess, tenant: tuple[hs.Tenant, str], frames: list[bytes]) -> None:
    """Random binary messages after the handshake: the connection ends or answers, the
    hub goes on."""
    ws = connect(hub)
    try:
        for f in frames:
            ws.send(f, websocket.ABNF.OPCODE_BINARY)
    except (websocket.WebSocketConnectionClosedException, OSError):
        pass
    finally:
        ws.shutdown()
    r = httpx.get(hub.url + "/healthz")
    assert r.status_code == 200


def test_still_serving_after_all(hub: HubProcess, tenant: tuple[hs.Tenant, str]) -> None:
    still_serves(hub, tenant)
