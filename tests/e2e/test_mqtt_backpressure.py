"""A client publishing faster than the store writes: the hub stops reading it (memory
stays bounded), acknowledges nothing that is not committed, and stores everything once
the store writes again.

The store is made slow for real: another process holds SQLite's write lock on the hub's
database (``BEGIN IMMEDIATE``), so the hub's writer waits on it (its busy timeout).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import httpx

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import provision

T0 = 1_700_000_000_000
PAD = "x" * 700  # ~1 KB messages: fewer of them fill the socket buffers


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _publish(topic: str, pid: int, i: int) -> bytes:
    payload = (
        f'{{"id":"{PAD}{i}","version":"1.0","method":"integration.measurepoint.post",'
        f'"params":[{{"deviceKey":"dev0","time":{T0 + i},"measurepoints":{{"temp":{i}}}}}]}}'
    ).encode()
    return _packet(0x32, _str(topic) + pid.to_bytes(2, "big") + payload)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _pubacks(data: bytes) -> int:
    """PUBACKs (4 bytes each, nothing else is sent: no subscription) in ``data``."""
    assert len(data) % 4 == 0 and all(data[i] == 0x40 for i in range(0, len(data), 4)), data[:40]
    return len(data) // 4


def test_a_publisher_faster_than_the_store(hub: HubProcess, api: httpx.Client) -> None:
    env = provision(api, devices=1)
    topic = f"/sys/{env.pk}/integration/measurepoint/post"
    s = socket.create_connection(("127.0.0.1", hub.mqtt_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    body = _str("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    body += _str("backpressure") + _str(env.username) + _str(env.password)
    s.sendall(_packet(0x10, body))
    assert s.recv(4) == b"\x20\x02\x00\x00"
    assert hub.proc is not None
    rss0 = _rss_mb(hub.proc.pid)
    lock = sqlite3.connect(hub.data_dir / "headrace.db", timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the hub's writer waits from here on
    sent = 0  # whole packets handed to the kernel
    rest = b""  # the tail of a packet the kernel did not take
    try:
        s.setblocking(False)
        stalled_since = None
        while sent < 20_000:  # the hub reading on without a bound would fail below
            if not rest:
                rest = _publish(topic, sent % 65535 + 1, sent)
            try:
                n = s.send(rest)
            except BlockingIOError:
                n = 0
            rest = rest[n:]
            if not rest:
                sent += 1
                stalled_since = None
                continue
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 1.5:
                break  # the hub has stopped reading us
            time.sleep(0.01)
        peak = _rss_mb(hub.proc.pid)
        try:
            early = s.recv(65536)
        except BlockingIOError:
            early = b""
        assert early == b"", "acknowledged before anything could be committed"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # what the hub holds is bounded by mqtt.max_inflight, the rest waits in the kernel
    assert 64 < sent < 5000, sent
    assert peak - rss0 < 50, f"hub RSS {rss0:.0f} -> {peak:.0f} MiB"
    s.setblocking(True)
    s.settimeout(60)
    s.sendall(rest)
    total = sent + 1
    acked = 0
    buf = b""
    while acked < total:
        chunk = s.recv(65536)
        assert chunk, "hub closed the connection"
        buf += chunk
        whole = len(buf) - len(buf) % 4
        acked += _pubacks(buf[:whole])
        buf = buf[whole:]
    s.close()
    r = api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev0/measurepoints",
        params={"points": "temp", "start": T0, "order": "desc", "limit": 1},
    )
    assert r.status_code == 200, r.text
    assert [i["value"] for i in r.json()["items"]] == [float(total - 1)]
    r = api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev0/measurepoints/aggregate",
        params={"points": "temp", "start": T0, "end": T0 + total, "interval": total, "fn": "count"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["points"]["temp"] == [{"time": T0, "value": total}]
