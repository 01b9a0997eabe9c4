"""A hostile client against the network edges (issue 11, defects 4 and 5, and the login
rate limit of 6), each repro bounded in time: an idle-socket flood of the HTTP port,
headers and bodies trickled or stalled, TLS connections that never handshake, noti
connections that never log in, caps on connections not logged in, and login failures
repeated from one address. The hubs run with short timeouts and small caps (``--set``)."""

from __future__ import annotations

import json
import re
import resource
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Client as MqttClient
from tests.e2e.mqtt_support import mp_request, provision
from tests.e2e.noti_support import ConnectionClosed, Noti, enterprise, tenant

# hub A's timeouts and login failure limit
HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
HANDSHAKE_TIMEOUT = 1.0
LOGIN_TIMEOUT = 1.5
LOGIN_FAILURES = 3
LOGIN_WINDOW = 2.0


def settings(**values: object) -> list[str]:
    out: list[str] = []
    for name, value in values.items():
        out += ["--set", f"{name.replace('__', '.')}={value}"]
    return out


def module_hub(
    factory: pytest.TempPathFactory, name: str, **values: object
) -> Iterator[HubProcess]:
    h = HubProcess(factory.mktemp(name) / "data", settings(**values))
    h.start()
    yield h
    h.stop()


def admin(hub: HubProcess) -> Iterator[httpx.Client]:
    with hub.client() as c:
        yield c


@pytest.fixture(scope="module")
def hub_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """Short timeouts, a small login failure limit."""
    yield from module_hub(
        tmp_path_factory,
        "hostile-a",
        http__header_timeout=HEADER_TIMEOUT,
        http__body_timeout=BODY_TIMEOUT,
        mqtt__tls_handshake_timeout=HANDSHAKE_TIMEOUT,
        noti__handshake_timeout=HANDSHAKE_TIMEOUT,
        noti__login_timeout=LOGIN_TIMEOUT,
        mqtt__login_failures=LOGIN_FAILURES,
        mqtt__login_window=LOGIN_WINDOW,
        noti__login_failures=LOGIN_FAILURES,
        noti__login_window=LOGIN_WINDOW,
    )


@pytest.fixture(scope="module")
def api_a(hub_a: HubProcess) -> Iterator[httpx.Client]:
    yield from admin(hub_a)


@pytest.fixture(scope="module")
def hub_c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """Small caps."""
    yield from module_hub(
        tmp_path_factory,
        "hostile-c",
        http__max_connections=6,
        http__max_pending=2,
        mqtt__max_pending=2,
        noti__max_connections=4,
        noti__max_pending=2,
    )


@pytest.fixture(scope="module")
def api_c(hub_c: HubProcess) -> Iterator[httpx.Client]:
    yield from admin(hub_c)


# -- raw sockets -------------------------------------------------------------------------------


def connect(port: int, source: str | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source is not None:
        s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed ``s`` (reading and dropping what it sends), or None
    if it is still open after ``seconds``."""
    start = time.monotonic()
    deadline = start + seconds
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        except TimeoutError:
            return None
    return None


def is_open(s: socket.socket) -> bool:
    """Whether the peer still holds ``s`` open (nothing read, no EOF, no reset)."""
    s.setblocking(False)
    try:
        data = s.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)
    return bool(data)


def log_lines(hub: HubProcess, pattern: str) -> list[str]:
    return [
        line
        for line in hub.log_path.read_text(errors="replace").splitlines()
        if re.search(pattern, line)
    ]


def logged(hub: HubProcess, what: str) -> int:
    """The sum of the counts of the rate-limited log lines about ``what``."""
    return sum(int(m) for line in log_lines(hub, what) for m in re.findall(r"\bcount=(\d+)", line))


def wait_log(hub: HubProcess, pattern: str, timeout: float = 3.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lines := log_lines(hub, pattern):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}:\n{hub.log()}")


def http_get(s: socket.socket, path: str = "/healthz") -> bytes:
    """One keep-alive GET on ``s``; its whole response (by content-length)."""
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionClosed("EOF before a response")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        body += s.recv(65536)
    return head


def mqtt_connect_packet(client_id: str, username: str, password: str) -> bytes:
    def s(v: str) -> bytes:
        b = v.encode()
        return len(b).to_bytes(2, "big") + b

    body = s("MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big")
    body += s(client_id) + s(username) + s(password)
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def mqtt_login(hub: HubProcess, username: str, password: str, source: str = "127.0.0.1") -> int:
    """CONNECT (3.1.1) from ``source``; the CONNACK return code (0 accepted, 5 not
    authorized)."""
    with connect(hub.mqtt_port, source) as s:
        s.sendall(mqtt_connect_packet("c-" + uuid.uuid4().hex[:8], username, password))
        ack = b""
        while len(ack) < 4:
            chunk = s.recv(4 - len(ack))
            assert chunk, "closed without CONNACK"
            ack += chunk
    assert ack[:2] == b"\x20\x02", ack
    return ack[3]


class SourcedNoti(Noti):
    """The noti test client, connecting from a given loopback address."""

    def __init__(self, hub: HubProcess, source: str, *, timeout: float = 5.0):
        ctx = ssl.create_default_context(cafile=str(hub.data_dir / "tls" / "server-cert.pem"))
        raw = connect(hub.noti_port, source)
        raw.settimeout(timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.timeout = timeout


def noti_login(hub: HubProcess, eid: str, secret: str, source: str = "127.0.0.1") -> dict[str, Any]:
    n = SourcedNoti(hub, source)
    try:
        return n.login(eid, secret, check=False)
    finally:
        n.close()


# -- the HTTP idle-socket flood ------------------------------------------------------------------

FLOOD_SOFT, FLOOD_HARD = 256, 768  # the hub's descriptors: fewer than the flood's sockets
FLOOD = 1200
FLOOD_PENDING = 100
FLOOD_HEADER_TIMEOUT = 3.0


def test_http_idle_flood_keeps_mqtt_and_admin_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More idle sockets than the hub has file descriptors: the hub raises its soft limit
    to the hard one, holds at most ``http.max_pending`` of them (the oldest close as new
    ones come), and meanwhile MQTT logins and requests and a new admin API connection
    work; the closes are logged with counts, and the rest go at the header timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 1000), hard))
    hub = HubProcess(
        tmp_path / "data",
        settings(
            http__max_pending=FLOOD_PENDING,
            http__header_timeout=FLOOD_HEADER_TIMEOUT,
        ),
    )
    real_popen = subprocess.Popen

    def limited(*args: Any, **kwargs: Any) -> Any:
        kwargs["preexec_fn"] = lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (FLOOD_SOFT, FLOOD_HARD)
        )
        return real_popen(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(subprocess, "Popen", limited)
        hub.start()
    flood: list[socket.socket] = []
    try:
        assert log_lines(hub, f"file descriptor limit.*soft={FLOOD_HARD}.*hard={FLOOD_HARD}")
        with hub.client() as api:
            env = provision(api, devices=1)
        mqtt = MqttClient(hub, env.username, env.password)  # logged in before the flood
        assert mqtt.accepted
        mqtt.subscribe(f"/sys/{env.pk}/integration/#")
        # paho's loop uses select(): keep low descriptors free for the clients below
        spare = [socket.socket() for _ in range(16)]
        for _ in range(FLOOD):
            s = connect(hub.http_port)
            s.sendall(b"GET / HTTP/1.1\r\n")
            flood.append(s)
        for s in spare:
            s.close()
        started = time.monotonic()
        # during the flood: an established MQTT client, a new MQTT login, a new admin call
        items = [
            {"deviceKey": env.devices[0], "time": 1_700_000_000_000, "measurepoints": {"temp": 1}}
        ]
        topic = f"/sys/{env.pk}/integration/measurepoint/post"
        assert mqtt.request(topic, mp_request("f1", items))["code"] == 200
        late = MqttClient(hub, env.username, env.password)
        assert late.accepted
        late.subscribe(f"/sys/{env.pk}/integration/#")
        assert late.request(topic, mp_request("f2", items))["code"] == 200
        late.close()
        with hub.client() as api:
            assert api.get("/api/v1/orgs").status_code == 200
        assert time.monotonic() - started < FLOOD_HEADER_TIMEOUT  # all that during the flood
        still = sum(is_open(s) for s in flood)
        assert still <= FLOOD_PENDING, still
        deadline = time.monotonic() + 3  # a line a second at most, with the count since
        while time.monotonic() < deadline and logged(hub, "HTTP pending cap") < FLOOD - still:
            time.sleep(0.1)
        assert logged(hub, "HTTP pending cap") >= FLOOD - still, hub.log()
        # the ones held go at the header timeout
        deadline = time.monotonic() + FLOOD_HEADER_TIMEOUT + 2
        while any(is_open(s) for s in flood) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(is_open(s) for s in flood)
        wait_log(hub, r"HTTP header timeout.*count=\d+")
        mqtt.close()
    finally:
        for s in flood:
            s.close()
        hub.stop()


# -- HTTP timeouts -------------------------------------------------------------------------------


def test_http_partial_headers_closed_at_header_timeout(hub_a: HubProcess) -> None:
    """A trickle of header bytes (each within uvicorn's keep-alive timeout) does not hold a
    connection past ``http.header_timeout``: not on the first request, not between
    keep-alive requests."""
    first = connect(hub_a.http_port)
    kept = connect(hub_a.http_port)
    assert b" 200 " in http_get(kept)
    try:
        first.sendall(b"GET /healthz HTTP/1.1\r\n")
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        open_ = {first, kept}
        while open_ and time.monotonic() - start < HEADER_TIMEOUT + 2:
            for s in list(open_):
                try:
                    s.sendall(b"x")  # one more byte of a header that never ends
                except OSError:
                    open_.discard(s)
                    continue
                if not is_open(s):
                    open_.discard(s)
            time.sleep(0.25)
        assert not open_, "still open after the header timeout"
        assert time.monotonic() - start >= HEADER_TIMEOUT - 0.3
    finally:
        first.close()
        kept.close()
    wait_log(hub_a, r"HTTP header timeout")


def test_http_body_idle_closed_steady_body_kept(hub_a: HubProcess, api_a: httpx.Client) -> None:
    """A body that stops arriving is closed after ``http.body_timeout``; one whose bytes
    keep coming (slower overall than the timeout) is read to the end and answered."""
    body = json.dumps({"name": "trickle " + uuid.uuid4().hex[:6]}).encode()
    head = (
        "POST /api/v1/orgs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer test-admin-token\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    stalled = connect(hub_a.http_port)
    steady = connect(hub_a.http_port)
    try:
        stalled.sendall(head + body[:3])
        steady.sendall(head)
        start = time.monotonic()
        for i in range(len(body)):  # a byte every 0.25 s: longer in all than the timeout
            steady.sendall(body[i : i + 1])
            time.sleep(min(0.25, (BODY_TIMEOUT * 2) / len(body)))
        assert time.monotonic() - start > BODY_TIMEOUT
        steady.settimeout(5)
        assert b" 201 " in steady.recv(65536)
        took = closed_within(stalled, BODY_TIMEOUT + 2 - (time.monotonic() - start))
        assert took is not None, "a stalled body held the connection"
    finally:
        stalled.close()
        steady.close()
    wait_log(hub_a, r"HTTP body timeout")


# -- TLS handshakes ------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["mqtt_tls", "noti"])
def test_tls_connection_that_never_handshakes_is_closed(hub_a: HubProcess, listener: str) -> None:
    s = connect(hub_a.ports[listener])
    try:
        took = closed_within(s, HANDSHAKE_TIMEOUT + 2)
        assert took is not None, "held without a TLS handshake"
        assert took >= HANDSHAKE_TIMEOUT - 0.3
    finally:
        s.close()


# -- noti: login deadline, ping before login -------------------------------------------------------


def test_noti_login_deadline(hub_a: HubProcess) -> None:
    """Connections that do not log in within ``noti.login_timeout`` are closed, whether
    silent or pinging; a ping before login is ``invalid_msg`` 4001, not a pong."""
    silent, pinging = Noti(hub_a), Noti(hub_a)
    try:
        start = time.monotonic()
        answers = []
        while time.monotonic() - start < LOGIN_TIMEOUT + 2:
            try:
                pinging.ping()
                answers.append(pinging.recv(0.3))
            except (ConnectionClosed, OSError):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("a pinging connection outlived the login deadline")
        assert time.monotonic() - start >= LOGIN_TIMEOUT - 0.3
        assert answers and all(
            a == {"cmd": "invalid_msg", "msg": "not logged in", "error_code": 4001} for a in answers
        ), answers
        assert silent.closed_by_server(1)
    finally:
        silent.close()
        pinging.close()


def test_noti_login_in_time_stays(hub_a: HubProcess, api_a: httpx.Client) -> None:
    t = tenant(api_a, devices=1)
    eid, secret = enterprise(api_a, t)
    n = Noti(hub_a)
    try:
        n.login(eid, secret)
        time.sleep(LOGIN_TIMEOUT + 0.5)
        n.ping()
        assert n.recv() == {"cmd": "enterprise_pong"}
    finally:
        n.close()


# -- login failures per address -----------------------------------------------------------------


def test_failed_logins_rate_limited_per_address(hub_a: HubProcess, api_a: httpx.Client) -> None:
    """After ``login_failures`` failed logins from one address within the window, even
    right credentials from it are refused until the window passes; another address logs
    in meanwhile. MQTT and noti alike."""
    env = provision(api_a, devices=1)
    t = tenant(api_a, devices=1)
    eid, secret = enterprise(api_a, t)
    wrong = {"result": False, "msg": "enterprise_id or enterprise_secret is wrong"}
    for _ in range(LOGIN_FAILURES):
        assert mqtt_login(hub_a, env.username, env.password + "x") == 5
        assert noti_login(hub_a, eid, secret + "x")["data"] == wrong
    blocked_at = time.monotonic()
    # the right credentials from the same address: refused without being checked
    assert mqtt_login(hub_a, env.username, env.password) == 5
    res = noti_login(hub_a, eid, secret)
    assert res["data"]["result"] is False and "too many failed logins" in res["data"]["msg"]
    # another address is not affected
    assert mqtt_login(hub_a, env.username, env.password, source="127.0.0.2") == 0
    assert noti_login(hub_a, eid, secret, source="127.0.0.2")["data"]["result"] is True
    wait_log(hub_a, r"MQTT login refused: too many failed logins.*count=")
    wait_log(hub_a, r"noti login refused: too many failed logins.*count=")
    # once the window has passed, the address logs in again
    time.sleep(max(0.0, blocked_at + LOGIN_WINDOW + 0.2 - time.monotonic()))
    assert mqtt_login(hub_a, env.username, env.password) == 0
    assert noti_login(hub_a, eid, secret)["data"]["result"] is True


# -- caps -----------------------------------------------------------------------------------------


def test_http_connection_cap(hub_c: HubProcess, api_c: httpx.Client) -> None:
    """Beyond ``http.max_connections`` established connections a new one is closed at once
    (no connection without a request is left to close instead); established ones keep
    working."""
    held: list[socket.socket] = []
    try:
        refused = None
        for _ in range(10):
            s = connect(hub_c.http_port)
            try:
                http_get(s)
            except (ConnectionClosed, OSError):
                refused = s
                break
            held.append(s)
        assert refused is not None, "no cap on HTTP connections"
        assert len(held) <= 6
        assert b" 200 " in http_get(held[0])  # established ones still served
        refused.close()
        wait_log(hub_c, r"HTTP connection cap.*count=")
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 3  # the hub has seen them go: new connections are served
    while time.monotonic() < deadline:
        try:
            if httpx.get(hub_c.url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)


def test_mqtt_pending_cap(hub_c: HubProcess, api_c: httpx.Client) -> None:
    """Beyond ``mqtt.max_pending`` connections that have not logged in, a new connection
    closes the oldest of them; a real client still logs in and publishes."""
    env = provision(api_c, devices=1)
    first = connect(hub_c.mqtt_port)
    time.sleep(0.1)
    second = connect(hub_c.mqtt_port)
    time.sleep(0.1)
    third = connect(hub_c.mqtt_port)
    try:
        assert closed_within(first, 2) is not None, "no cap on MQTT connections not logged in"
        assert is_open(second) and is_open(third)
        c = MqttClient(hub_c, env.username, env.password)
        assert c.accepted
        c.subscribe(f"/sys/{env.pk}/integration/#")
        items = [
            {"deviceKey": env.devices[0], "time": 1_700_000_000_000, "measurepoints": {"temp": 2}}
        ]
        reply = c.request(f"/sys/{env.pk}/integration/measurepoint/post", mp_request("p1", items))
        assert reply["code"] == 200
        c.close()
        assert closed_within(second, 2) is not None  # the oldest made room for the client
        assert is_open(third)
        wait_log(hub_c, r"MQTT pending cap.*count=")
    finally:
        for s in (first, second, third):
            s.close()


def test_noti_connection_cap(hub_c: HubProcess, api_c: httpx.Client) -> None:
    """``noti.max_connections`` caps all noti connections and ``noti.max_pending`` those not
    logged in: a new connection closes the oldest one not logged in, or, when every
    connection is logged in, is closed at once."""
    t = tenant(api_c, devices=1)
    eid, secret = enterprise(api_c, t)
    conns: list[Noti] = []

    def opened() -> Noti:
        n = Noti(hub_c, timeout=5)
        conns.append(n)
        n.ping()  # answered once the hub has the connection (invalid_msg: not logged in)
        assert n.recv()["cmd"] == "invalid_msg"
        return n

    try:
        a, b = opened(), opened()
        a.login(eid, secret)
        b.login(eid, secret)
        p1, p2 = opened(), opened()  # 4 open, 2 of them not logged in
        p3 = opened()  # at the cap: the oldest not logged in makes room
        assert p1.closed_by_server(2)
        p2.login(eid, secret)
        p3.login(eid, secret)
        extra = Noti(hub_c, timeout=5)  # 4 logged in: the new one is closed at once
        conns.append(extra)
        assert extra.closed_by_server(2)
        for n in (a, b, p2, p3):
            n.ping()
            assert n.recv() == {"cmd": "enterprise_pong"}
        wait_log(hub_c, r"noti connection cap.*count=")
        wait_log(hub_c, r"noti pending cap.*count=")
    finally:
        for n in conns:
            n.close()
