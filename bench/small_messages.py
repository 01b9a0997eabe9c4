"""Small messages over MQTT: single-record JSON requests/s through the whole hub, beside
the hub's own MQTT edge with no pipeline (the limit), same run, same client.

Each message is one record of 5 measurepoints on the measurepoint topic, QoS 1, live data:
each connection sends for its own 50 devices, every device's times one second apart and
never repeated (``--shared-devices``: the shape of the bench before, every connection for
the same 50 devices, each with its own range of times, so that most merged writes overlap
stored chunks and the store merges them: a backfill, not live data). The load
comes from client processes using a lean raw-socket MQTT 3.1.1 client (pre-encoded
PUBLISH packets, a window of ``--inflight`` unacknowledged messages per connection), so
that the clients cost as little CPU as possible on this shared machine. Every client
subscribes to its reply topic (QoS 0): a message counts when its PUBACK arrived, and the
replies are checked for ``"code":200``.

The peer ("bare edge") is the hub's MQTT stack (``proto.mqtt.ServerConnection`` on an
asyncio protocol with uvloop, the codec and QoS flow of the hub) answering every PUBLISH
at once with a constant reply and PUBACK: no pipeline, no store. It is what the MQTT
edge costs; the hub's rate divided by it is the share left to ingest.

Also printed: the server's CPU time per message (every thread of the process), which a
shared machine disturbs less than the rate. Printed beside them: ThingsBoard CE's published 5,000 messages/s (2 vCPUs, with Kafka)
and the target of 15,000 messages/s.

    .venv/bin/python bench/small_messages.py [--clients 2] [--conns 2] [--inflight 64]
        [--seconds 10] [--rounds 1] [--profile out.svg] [--shared-devices]

``--profile FILE`` records the hub with py-spy (``--format raw`` if FILE ends in .txt)
during the hub's first round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.procstat import cpu_seconds
from tests.conftest import ADMIN_TOKEN, HubProcess, free_port

DEVICES = 50
THINGSBOARD = 5_000
TARGET = 15_000


# -- the lean client -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str, user: str, password: str) -> bytes:
    body = _str("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    body += _str(client_id) + _str(user) + _str(password)
    return _packet(0x10, body)


_TIME0 = 1_600_000_000_000
_MARK = 9_999_999_999_999  # 13 digits, as every time the bench sends


def message(seq: int, devices: list[str]) -> tuple[bytes, bytes]:
    """The payload of message ``seq`` around its time: (before, after) the time's digits,
    so that a pool of them sends ever later times without encoding JSON per message."""
    text = json.dumps(
        {
            "id": str(seq),
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": [
                {
                    "deviceKey": devices[seq % len(devices)],
                    "time": _MARK,
                    "measurepoints": {
                        "voltage": 230.1,
                        "current": 12.34,
                        "power": 2840.0 + seq % 7,
                        "temp": -1.5,
                        "status": 1,
                    },
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    before, _, after = text.partition(str(_MARK).encode())
    return before, after


def device_keys(slot: int, shared: bool) -> list[str]:
    """The devices connection ``slot`` sends for: its own (live data: each device has one
    connection), or with ``shared`` the same ``DEVICES`` for every connection."""
    return [f"dev{i}" if shared else f"dev{slot}-{i}" for i in range(DEVICES)]


def client_main(
    index: int,
    port: int,
    topic: str,
    user: str,
    password: str,
    conns: int,
    inflight: int,
    seconds: float,
    start_at: float,
    out: Any,
    shared: bool,
    round_: int,
) -> None:
    """``conns`` connections, each keeping ``inflight`` QoS 1 PUBLISHes unacknowledged.
    The times of a device's messages increase by one second per message and never repeat
    (with ``shared``: every connection sends its own range of times for the same devices,
    so that a group of messages of several connections overlaps what is stored)."""
    sel = selectors.DefaultSelector()
    state = []
    t = _str(topic)
    for c in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(connect_packet(f"small-{os.getpid()}-{index}-{c}", user, password))
        ack = s.recv(4)
        if len(ack) < 4 or ack[3] != 0:
            raise SystemExit(f"CONNECT refused: {ack!r}")
        sub = _packet(0x82, (1).to_bytes(2, "big") + _str(topic + "_reply") + b"\x00")
        s.sendall(sub)
        s.recv(5)
        slot = index * conns + c
        base = (slot * 10_000_000 if shared else 0) + round_ * 100_000_000
        # packets of id 1..65535 for a pool of messages
        devices = device_keys(slot, shared)
        pool = [message(i, devices) for i in range(4096)]
        state.append(
            {"sock": s, "pool": pool, "base": base, "next": 0, "open": 0, "buf": b"", "acks": 0}
        )
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, len(state) - 1)
    bad = 0
    replies = 0

    def publish(st: dict[str, Any], n: int) -> None:
        parts = []
        for _ in range(n):
            seq = st["next"]
            st["next"] = seq + 1
            pid = seq % 65535 + 1
            before, after = st["pool"][seq % 4096]
            when = _TIME0 + (st["base"] + seq) * 1000
            payload = b"%b%d%b" % (before, when, after)
            parts.append(
                b"\x32" + _varint(len(t) + 2 + len(payload)) + t + pid.to_bytes(2, "big") + payload
            )
        st["open"] += n
        data = b"".join(parts)
        st["sock"].setblocking(True)
        st["sock"].sendall(data)
        st["sock"].setblocking(False)

    time.sleep(max(0.0, start_at - time.time()))
    started = time.perf_counter()
    stop_at = started + seconds
    for st in state:
        publish(st, inflight)
    sending = True
    while any(st["open"] for st in state):
        now = time.perf_counter()
        if sending and now >= stop_at:
            sending = False
            ended = now
            acked_at_end = sum(st["acks"] for st in state)
        for key, _ in sel.select(timeout=5 if not sending else 1):
            st = state[key.data]
            chunk = st["sock"].recv(262144)
            if not chunk:
                raise SystemExit("hub closed the connection")
            buf = st["buf"] + chunk
            pos = 0
            acks = 0
            n = len(buf)
            while pos + 2 <= n:
                first = buf[pos]
                length = 0
                mult = 1
                i = pos + 1
                while i < n:
                    b = buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    break
                if i + length > n:
                    break
                kind = first >> 4
                if kind == 4:
                    acks += 1
                elif kind == 3:
                    replies += 1
                    if b'"code":200,' not in buf[i : i + length]:
                        bad += 1
                        if bad == 1:
                            print("bad reply:", bytes(buf[i : i + length])[:300], flush=True)
                pos = i + length
            st["buf"] = buf[pos:]
            st["open"] -= acks
            st["acks"] += acks
            if sending and acks:
                publish(st, acks)
        if not sending and time.perf_counter() - ended > 30:
            raise SystemExit("acks missing 30 s after the end")
    for st in state:
        st["sock"].close()
    out.put({"acked": acked_at_end, "elapsed": ended - started, "replies": replies, "bad": bad})


def load(
    port: int,
    topic: str,
    user: str,
    password: str,
    args: argparse.Namespace,
    pid: int,
    round_: int,
) -> tuple[float, float]:
    """(messages/s, server CPU microseconds per message); every round sends later times
    than the rounds before (a round is not a resend of the last)."""
    q: Any = mp.Queue()
    start_at = time.time() + 0.5
    procs = [
        mp.Process(
            target=client_main,
            args=(
                i,
                port,
                topic,
                user,
                password,
                args.conns,
                args.inflight,
                args.seconds,
                start_at,
                q,
                args.shared_devices,
                round_,
            ),
        )
        for i in range(args.clients)
    ]
    cpu0 = cpu_seconds(pid)
    for p in procs:
        p.start()
    results = [q.get(timeout=args.seconds + 90) for _ in procs]
    cpu = cpu_seconds(pid) - cpu0
    for p in procs:
        p.join()
    bad = sum(r["bad"] for r in results)
    if bad:
        raise SystemExit(f"{bad} replies were not code 200")
    acked = sum(r["acked"] for r in results)
    # the CPU of the whole run (its tail of in-flight messages too) over the acked ones
    total = acked + args.clients * args.conns * args.inflight
    return sum(r["acked"] / r["elapsed"] for r in results), cpu / total * 1e6


# -- the peer: the hub's MQTT edge with nothing behind it -------------------------------------


def bare_server(port: int) -> None:
    import uvloop

    from headrace.proto.mqtt import (
        ConnectRequested,
        PublishReceived,
        ServerConnection,
        SubscribeRequested,
    )

    reply = b'{"id":"1","code":200,"message":"success","data":{}}'

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport
            self.conn = ServerConnection(1 << 20, max_inflight=32, receive_maximum=1024)
            self.subscribed = False

        def data_received(self, data: bytes) -> None:
            conn = self.conn
            for ev in conn.receive_data(data):
                if isinstance(ev, PublishReceived):
                    if self.subscribed:
                        conn.publish(ev.topic + "_reply", reply, 0)
                    if ev.packet_id is not None:
                        conn.ack_publish(ev.packet_id)
                elif isinstance(ev, ConnectRequested):
                    for e in conn.accept():
                        self.data_received_event(e)
                elif isinstance(ev, SubscribeRequested):
                    self.data_received_event(ev)
            out = conn.data_to_send()
            if out:
                self.t.write(out)

        def data_received_event(self, ev: Any) -> None:
            if isinstance(ev, SubscribeRequested):
                self.subscribed = True
                self.conn.suback(ev.packet_id, [0 for _ in ev.subscriptions])

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Bare, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


# -- setup -----------------------------------------------------------------------------------


def setup(hub: HubProcess, args: argparse.Namespace) -> tuple[str, str, str]:
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        api.post("/api/v1/orgs", json={"orgId": "small", "name": "small"}).raise_for_status()
        points = [{"id": p, "type": "double"} for p in ("voltage", "current", "power", "temp")]
        points.append({"id": "status", "type": "int"})
        api.post(
            "/api/v1/orgs/small/models", json={"id": "meter", "measurepoints": points}
        ).raise_for_status()
        p = api.post(
            "/api/v1/orgs/small/products",
            json={"name": "m", "modelId": "meter", "productKey": "smallpk"},
        )
        p.raise_for_status()
        api.post(
            "/api/v1/orgs/small/products/smallpk/devices",
            json=[
                {"deviceKey": key}
                for slot in range(1 if args.shared_devices else args.clients * args.conns)
                for key in device_keys(slot, args.shared_devices)
            ],
        ).raise_for_status()
        ch = api.post(
            "/api/v1/orgs/small/channels", json={"name": "b", "products": ["smallpk"]}
        ).json()
    return "smallpk", ch["username"], ch["password"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--conns", type=int, default=2, help="connections per client process")
    ap.add_argument("--inflight", type=int, default=64, help="unacked messages per connection")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1, help="alternating hub/bare rounds")
    ap.add_argument(
        "--shared-devices",
        action="store_true",
        help="every connection sends for the same 50 devices, each its own range of times",
    )
    ap.add_argument("--profile", default="", help="py-spy output of the hub's first round")
    ap.add_argument("--bare-server", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return
    with tempfile.TemporaryDirectory() as d:
        hub = HubProcess(
            Path(d) / "data", ["--set", "log.level=warning", "--set", "mqtt.max_inflight=1024"]
        )
        hub.start()
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port)])
        try:
            pk, user, password = setup(hub, args)
            topic = f"/sys/{pk}/integration/measurepoint/post"
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", bare_port)).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            hub_rates: list[float] = []
            bare_rates: list[float] = []
            hub_cpu: list[float] = []
            bare_cpu: list[float] = []
            assert hub.proc is not None
            for r in range(args.rounds):
                spy = None
                if args.profile and r == 0 and hub.proc is not None:
                    fmt = "raw" if args.profile.endswith(".txt") else "flamegraph"
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "-p",
                            str(hub.proc.pid),
                            "-o",
                            args.profile,
                            "-f",
                            fmt,
                            "-r",
                            "200",
                            "-d",
                            str(int(args.seconds)),
                            "--threads",
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                rate, cpu = load(hub.mqtt_port, topic, user, password, args, hub.proc.pid, r)
                hub_rates.append(rate)
                hub_cpu.append(cpu)
                if spy is not None:
                    spy.wait()
                rate, cpu = load(bare_port, topic, "u", "p", args, bare.pid, r)
                bare_rates.append(rate)
                bare_cpu.append(cpu)
                print(
                    f"round {r + 1}: hub {hub_rates[-1]:9,.0f} messages/s {hub_cpu[-1]:6.1f} us CPU/msg"
                    f"   bare edge {bare_rates[-1]:9,.0f} messages/s {bare_cpu[-1]:6.1f} us CPU/msg",
                    flush=True,
                )
        finally:
            bare.terminate()
            bare.wait()
            hub.stop()
    h = statistics.median(hub_rates)
    b = statistics.median(bare_rates)
    hc = statistics.median(hub_cpu)
    bc = statistics.median(bare_cpu)
    print(
        f"cpus={os.cpu_count()} clients={args.clients} conns/client={args.conns} "
        f"inflight={args.inflight} QoS1, 1 record x 5 measurepoints per message, "
        f"store.synchronous=full, medians of {args.rounds}"
    )
    print(f"hub (whole pipeline, durable): {h:10,.0f} messages/s   {hc:6.1f} us hub CPU/message")
    print(
        f"bare MQTT edge (no pipeline):  {b:10,.0f} messages/s   {bc:6.1f} us CPU/message"
        f"   hub/bare {h / b:.0%} (rate), {bc / hc:.0%} (CPU)"
    )
    print(
        f"ThingsBoard CE published:      {THINGSBOARD:10,} messages/s   hub/ThingsBoard {h / THINGSBOARD:.1f}x"
        f"   (target >= {TARGET:,})"
    )


if __name__ == "__main__":
    main()
