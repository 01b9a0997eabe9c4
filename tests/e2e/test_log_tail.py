"""The live tail of a channel's message log (server-sent events) against a real hub:
records published with mosquitto_pub arrive in the shape of ``GET .../logs``, filters,
``Last-Event-ID`` resume, heartbeats, a slow reader's gap, access, the end at stop."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HubProcess, from_template
from tests.e2e.accounts_support import Operator, close_clients, make_org, make_user, viewer
from tests.e2e.mqtt_support import mp_request, provision
from tests.e2e.sse_support import SSE, mqtt_publish, stored_log, stream_path

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    close_clients()


def good(rid: str, device: str = "dev0") -> bytes:
    return mp_request(
        rid, [{"deviceKey": device, "time": 1_700_000_000_000, "measurepoints": {"temp": 1.5}}]
    )


def bad_device(rid: str) -> bytes:
    return mp_request(
        rid, [{"deviceKey": "ghost", "time": 1_700_000_000_000, "measurepoints": {"temp": 1.5}}]
    )


def test_tail_receives_published_records(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    tail = SSE(shared_hub.url + stream_path(env), headers=AUTH)
    assert tail.status == 200
    assert tail.response is not None
    assert tail.response.headers["content-type"].startswith("text/event-stream")
    assert tail.next()["retry"] == "2000"
    mqtt_publish(shared_hub, env, [good("t1"), bad_device("t2"), good("t3", "dev1")])
    # connect, 3 payloads, 1 error, disconnect: exactly the stored records, same shape
    got = tail.records(6)
    stored = stored_log(shared_api, env)
    assert got == stored
    assert [r["kind"] for r in got] == [
        "connection",
        "payload",
        "payload",
        "error",
        "payload",
        "connection",
    ]
    assert [r["requestId"] for r in got if r["kind"] == "payload"] == ["t1", "t2", "t3"]
    assert got[3]["code"] == 1257 and got[3]["errors"][0]["deviceKey"] == "ghost"
    assert tail.quiet(1.0) == []
    tail.close()


def test_tail_filters(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    url = shared_hub.url
    errors = SSE(url + stream_path(env, "kinds=error"), headers=AUTH)
    by_code = SSE(url + stream_path(env, "code=1257"), headers=AUTH)
    by_device = SSE(url + stream_path(env, "device=ghost"), headers=AUTH)
    ok_payloads = SSE(url + stream_path(env, "kinds=payload&code=200"), headers=AUTH)
    conn = SSE(url + stream_path(env, "kinds=connection,error"), headers=AUTH)
    mqtt_publish(shared_hub, env, [good("f1"), bad_device("f2"), good("f3")])
    stored = stored_log(shared_api, env)
    assert len(stored) == 6

    def expect(tail: SSE, wanted: list[dict[str, Any]]) -> None:
        assert tail.records(len(wanted)) == wanted
        assert tail.quiet(0.5) == []
        tail.close()

    expect(errors, [r for r in stored if r["kind"] == "error"])
    expect(by_code, [r for r in stored if r.get("code") == 1257])  # the payload and the error
    expect(by_device, [r for r in stored if r["kind"] == "error"])
    expect(ok_payloads, [r for r in stored if r["kind"] == "payload" and r["code"] == 200])
    expect(conn, [r for r in stored if r["kind"] != "payload"])


def test_resume_with_last_event_id(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    first = SSE(shared_hub.url + stream_path(env), headers=AUTH)
    mqtt_publish(shared_hub, env, [good("r1")])
    seen = first.records(3)  # connect, payload, disconnect
    first.close()
    last = seen[-1]["id"]
    # missed while disconnected
    mqtt_publish(shared_hub, env, [good("r2"), bad_device("r3")])
    missed = stored_log(shared_api, env, after=last)
    assert len(missed) == 5
    again = SSE(shared_hub.url + stream_path(env), headers={**AUTH, "Last-Event-ID": str(last)})
    assert again.records(5) == missed
    # then live, nothing twice
    mqtt_publish(shared_hub, env, [good("r4")])
    live = again.records(3)
    assert [r["requestId"] for r in live if r["kind"] == "payload"] == ["r4"]
    assert live[0]["id"] > missed[-1]["id"]
    assert again.quiet(0.5) == []
    again.close()
    # the query form and a filter: only the missed payload records
    payloads = SSE(
        shared_hub.url + stream_path(env, f"kinds=payload&lastEventId={last}"), headers=AUTH
    )
    assert [r["requestId"] for r in payloads.records(3)] == ["r2", "r3", "r4"]
    assert payloads.quiet(0.5) == []
    payloads.close()


def test_tail_access(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    env = provision(shared_api)
    other_org = make_org(shared_api, "tail")
    name, password = make_user(shared_api, [viewer(env.org)])
    v = Operator(shared_hub, name, password)
    # a viewer of the org follows it with its session cookie
    tail = SSE(shared_hub.url + stream_path(env), cookies={"headrace_session": v.cookie})
    mqtt_publish(shared_hub, env, [good("a1")])
    assert [r["kind"] for r in tail.records(3)] == ["connection", "payload", "connection"]
    tail.close()
    base = shared_hub.url
    refused = [
        ({}, stream_path(env), 401),
        ({"cookies": {"headrace_session": "forged"}}, stream_path(env), 401),
        (
            {"cookies": {"headrace_session": v.cookie}},
            f"/api/v1/orgs/{other_org}/channels/{env.channel_id}/logs/stream",
            404,
        ),
        ({"headers": AUTH}, f"/api/v1/orgs/{env.org}/channels/nope/logs/stream", 404),
        ({"headers": AUTH}, stream_path(env, "kinds=payload,bogus"), 422),
        ({"headers": {**AUTH, "Last-Event-ID": "x"}}, stream_path(env), 422),
    ]
    for kw, path, status in refused:
        with httpx.Client(timeout=30, cookies=kw.get("cookies")) as c:
            r = c.get(base + path, headers=kw.get("headers"))
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"]["status"] == status


@pytest.fixture
def tail_hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(
        from_template(hub_template, tmp_path / "data"),
        ["--set", "log.tail_heartbeat=0.5", "--set", "log.tail_buffer=10"],
    )
    h.start()
    yield h
    h.stop()


def test_heartbeat_and_slow_reader_gap(tail_hub: HubProcess) -> None:
    api = tail_hub.client()
    env = provision(api, devices=1)
    idle = SSE(tail_hub.url + stream_path(env), headers=AUTH)
    beats = [idle.next(5, comments=True) for _ in range(3)]
    assert [e for e in beats if e.get("comment") == "heartbeat"], beats
    idle.close()

    # a reader that does not read: a small receive window, nothing read while 3,000
    # requests (3,002 records) are stored
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", tail_hub.http_port))
    sock.sendall(
        f"GET {stream_path(env)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
    )
    time.sleep(0.5)
    mqtt_publish(tail_hub, env, [good(f"s{i}") for i in range(3000)])
    stored = stored_log(api, env)
    assert len(stored) == 3002
    # a live reader meanwhile works
    live = SSE(tail_hub.url + stream_path(env), headers=AUTH)
    mqtt_publish(tail_hub, env, [good("after")])
    assert [r["requestId"] for r in live.records(3) if r["kind"] == "payload"] == ["after"]
    live.close()
    # now read what the slow one got, up to the last record (heartbeats never stop)
    last_id = stored_log(api, env)[-1]["id"]
    sock.settimeout(5)
    raw = b""
    deadline = time.monotonic() + 60
    while b"\nid: %d\n" % last_id not in raw and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        raw += chunk
    sock.close()
    ids = [int(m) for m in re.findall(rb"\nid: (\d+)\n", raw)]
    gaps = [json.loads(m) for m in re.findall(rb"event: gap\ndata: (\{[^\n]*\})\n", raw)]
    assert gaps and all(g["reason"] == "slow" and g["dropped"] > 0 for g in gaps), raw[-500:]
    dropped = sum(g["dropped"] for g in gaps)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len(ids) + dropped == 3002 + 3  # everything after it subscribed, incl. "after"
    assert len(ids) < 3002  # it did fall behind
    api.close()


def test_streams_end_when_the_hub_stops(hub: HubProcess, api: httpx.Client) -> None:
    env = provision(api)
    tail = SSE(hub.url + stream_path(env), headers=AUTH)
    assert tail.next()["retry"] == "2000"
    started = time.monotonic()
    assert hub.stop() == 0
    assert time.monotonic() - started < 8  # not uvicorn's 10 s graceful timeout
    assert tail.ended.wait(10)
    tail.close()
