"""noti push benchmark: events produced by ingesting data, pushed to one client that acks.

A real ``headrace serve`` process (``store.synchronous=full``): data is published over
MQTT (paho-mqtt, in its own process) as real-time integration requests, every record
becoming one ``device_status_kv`` event in a durable enterprise queue; one noti client (its
own process: asyncio + ssl, acking every push as it reads it) consumes the queue.

1. Throughput, prefetch 5 and 1000: N events are ingested while no client is connected
   (the queue fills; the ingest rate is printed too), then the client logs in and acks
   every push. events/s = N / (login -> last push received); the time until the hub has
   committed the last ack is printed beside it.
2. Latency at a fixed rate: the client is connected (prefetch 1000) and PRODUCERS
   open-loop processes (bodies encoded beforehand, each request sent when due whatever
   the replies, their lateness reported) publish RATE events/s between them (requests
   of 10 records, each carrying its publish time) for SECONDS; per event, push received
   - published: p50/p99. The same load on a product no enterprise subscribes to first
   (the ingest-only peer).

3. The peer, RabbitMQ 3.10 (``bench/rabbitmq_peer.py``), measured in the same run after the
   hub stopped, when Debian's ``rabbitmq-server`` is installed (else the run says so): its
   own server on free ports in a temporary directory, persistent messages, publisher
   confirms for every batch of 10, one consumer acking every delivery over TLS (lean
   pamqp clients on both sides; the latency phase's publishers open loop like the
   hub's producers), a classic and a quorum queue: the same throughput (prefetch 1000)
   and latency phases.

    .venv/bin/python bench/noti_push.py [--events 300000] [--rate 5000] [--seconds 10]
        [--producers 2] [--rabbit-events 100000] [--no-rabbitmq] [--latency-only]
        [--hub-set key=value ...]

Targets: prefetch 1000 >= 2x the RabbitMQ quorum queue's rate measured in the same run;
p99 publish -> push <= 10 ms at 5,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import rabbitmq_peer
from tests.conftest import ADMIN_TOKEN, HubProcess

DEVICES = 100
ORG = "bench"
PUSH_PREFIX = b'{"cmd":"enterprise_event_push","delivery_id":'
N_PREFIX = len(PUSH_PREFIX)
MODEL = {
    "id": "m",
    "measurepoints": [
        {"id": "t", "type": "double"},
        {"id": "seq", "type": "int"},
        {"id": "v", "type": "double"},
    ],
}


# -- setup ------------------------------------------------------------------------------------


def setup(hub: HubProcess, phases: list[str]) -> dict[str, Any]:
    """One product and one enterprise per phase (so phases do not fill each other's
    queues); product "base" has no enterprise (the ingest-only peer)."""
    out: dict[str, Any] = {"enterprises": {}}
    with httpx.Client(
        base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as api:
        api.post("/api/v1/orgs", json={"orgId": ORG, "name": "bench"}).raise_for_status()
        api.post(f"/api/v1/orgs/{ORG}/models", json=MODEL).raise_for_status()
        for phase in phases:
            api.post(
                f"/api/v1/orgs/{ORG}/products",
                json={"name": phase, "modelId": "m", "productKey": phase},
            ).raise_for_status()
            api.post(
                f"/api/v1/orgs/{ORG}/products/{phase}/devices",
                json=[{"deviceKey": f"dev{i}"} for i in range(DEVICES)],
            ).raise_for_status()
            if phase == "base":
                continue
            e = api.post(
                f"/api/v1/orgs/{ORG}/enterprises",
                json={"name": phase, "products": [phase], "eventTypes": ["device_status_kv"]},
            ).json()
            out["enterprises"][phase] = (e["enterpriseId"], e["enterpriseSecret"])
        ch = api.post(
            f"/api/v1/orgs/{ORG}/channels", json={"name": "bench", "products": phases}
        ).json()
    out["username"], out["password"] = ch["username"], ch["password"]
    return out


def stats(hub: HubProcess, eid: str) -> dict[str, Any]:
    r = httpx.get(
        f"{hub.url}/api/v1/orgs/{ORG}/enterprises/{eid}/stats",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    return dict(r.json())


def wait_stat(hub: HubProcess, eid: str, key: str, value: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stats(hub, eid)[key] >= value:
            return time.perf_counter()
        time.sleep(0.01)
    raise RuntimeError(f"{key} did not reach {value}: {stats(hub, eid)}")


# -- the producer (paho-mqtt) -----------------------------------------------------------------


def request(pk: str, rid: str, records: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "id": rid,
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": records,
            "isRealtimeIntegration": True,
        }
    ).encode()


def producer_main(
    port: int,
    username: str,
    password: str,
    pk: str,
    requests: int,
    records: int,
    rate: float,
    inflight: int,
    out: Any,
    index: int = 0,
    go: Any = None,
) -> None:
    """Publish ``requests`` requests of ``records`` records over one MQTT connection.

    ``rate`` 0: as fast as ``inflight`` unanswered requests allow (closed loop: the
    throughput phases). ``rate`` > 0 (requests/s): open loop. The bodies are encoded
    before the start (the publish time spliced in when sent); the process says "ready"
    on ``out`` and waits for a start time (wall clock) on ``go``, so that several
    producer processes share the load, evenly interleaved; then request k is sent at
    start + k/rate (at once when late) whatever the replies, its records' "t" = the wall
    time it is handed to paho. Each send's lateness against its schedule is reported:
    the generator's own steadiness."""
    import paho.mqtt.client as mqtt

    topic = f"/sys/{pk}/integration/measurepoint/post"
    pending: dict[bytes, float] = {}
    replies: list[float] = []
    failed = 0
    cond = threading.Condition()
    connected = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        nonlocal failed
        payload = msg.payload
        now = time.perf_counter()
        i = payload.index(b'"id":') + 5  # the request id, without parsing the reply
        i = payload.index(b'"', i) + 1
        rid = payload[i : payload.index(b'"', i)]
        with cond:
            t0 = pending.pop(rid, None)
            if t0 is not None:
                replies.append(now - t0)
            if b'"code":200' not in payload:
                failed += 1
            cond.notify()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"prod-{pk}-{index}")
    c.username_pw_set(username, password)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    c.on_message = on_message
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port, keepalive=60)
    # paho leaves Nagle on: a small PUBLISH sent while the previous one is unacknowledged
    # waits for the hub's delayed ACK (the hub answers only after the commit), which put
    # 6 ms p50 / 20-40 ms p99 between the publish time and the hub's read
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.loop_start()
    connected.wait(10)
    c.subscribe(topic + "_reply", qos=0)
    base = int(time.time() * 1000) - 10_000_000 + index * 1_000_000
    bodies: list[tuple[bytes, list[bytes]]] = []
    for k in range(requests):
        rid = f"p{index}r{k}"
        recs = [
            {
                "deviceKey": f"dev{(k * records + r + index * 7) % DEVICES}",
                "time": base + k * records + r,
                "measurepoints": {"t": "@T@", "seq": k * records + r, "v": r * 0.5},
            }
            for r in range(records)
        ]
        bodies.append((rid.encode(), request(pk, rid, recs).split(b'"@T@"')))
    time.sleep(0.3)
    if go is not None:
        out.put(("ready", index))
        start_wall = go.get(timeout=60)
    else:
        start_wall = time.time()
    perf0 = time.perf_counter() + (start_wall - time.time())  # the start, on the perf clock
    late: list[float] = []
    first_sent = 0.0
    for k, (rid, parts) in enumerate(bodies):
        if rate:
            due = perf0 + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            late.append(max(0.0, time.perf_counter() - due))
        else:
            with cond:
                while len(pending) >= inflight:
                    cond.wait(1)
        now = time.time()
        body = repr(now).encode().join(parts)
        with cond:
            pending[rid] = time.perf_counter()
        c.publish(topic, body, qos=1)
        if not first_sent:
            first_sent = now
    last_sent = time.time()
    with cond:
        while pending and cond.wait(30):
            pass
    elapsed = time.perf_counter() - max(perf0, 0.0)
    c.loop_stop()
    c.disconnect()
    out.put(
        {
            "elapsed": elapsed,
            "first_sent": first_sent,
            "last_sent": last_sent,
            "failed": failed,
            "unanswered": len(pending),
            "replies": replies,
            "late": late,
        }
    )


def produce(
    hub: HubProcess, cfg: dict[str, Any], pk: str, requests: int, records: int, rate: float = 0
) -> Any:
    """One closed-loop producer process (32 requests in flight)."""
    q: Any = mp.Queue()
    p = mp.Process(
        target=producer_main,
        args=(hub.mqtt_port, cfg["username"], cfg["password"], pk, requests, records, rate, 32, q),
    )
    p.start()
    return p, q


def produce_paced(
    hub: HubProcess,
    cfg: dict[str, Any],
    pk: str,
    requests: int,
    records: int,
    rate: float,
    procs: int,
) -> dict[str, Any]:
    """``procs`` open-loop producer processes sending ``rate`` requests/s between them
    (evenly interleaved), each on its own connection; returns their merged results:
    the offered rate is measured from the first to the last send."""
    q: Any = mp.Queue()
    gos = [mp.Queue() for _ in range(procs)]
    per = requests // procs
    ps = []
    for i in range(procs):
        n = per + (1 if i < requests % procs else 0)
        args = (hub.mqtt_port, cfg["username"], cfg["password"], pk, n, records)
        p = mp.Process(target=producer_main, args=(*args, rate / procs, 64, q, i, gos[i]))
        p.start()
        ps.append(p)
    for _ in range(procs):
        kind, _i = q.get(timeout=120)
        assert kind == "ready"
    start = time.time() + 0.2
    for i, g in enumerate(gos):
        g.put(start + i / rate)
    res = [q.get(timeout=600) for _ in range(procs)]
    for p in ps:
        p.join()
    span = max(r["last_sent"] for r in res) - min(r["first_sent"] for r in res)
    return {
        "offered": (requests - 1) * records / span if span > 0 else 0.0,
        "failed": sum(r["failed"] for r in res),
        "unanswered": sum(r["unanswered"] for r in res),
        "replies": sorted(x for r in res for x in r["replies"]),
        "late": sorted(x for r in res for x in r["late"]),
    }


# -- the consumer (asyncio + ssl, its own process) --------------------------------------------


def consumer_main(
    port: int, cafile: str, eid: str, secret: str, prefetch: int, expect: int, out: Any
) -> None:
    try:
        import uvloop

        uvloop.run(consume(port, cafile, eid, secret, prefetch, expect, out))
    except ImportError:
        asyncio.run(consume(port, cafile, eid, secret, prefetch, expect, out))


async def consume(
    port: int, cafile: str, eid: str, secret: str, prefetch: int, expect: int, out: Any
) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost", limit=1 << 22
    )
    login = {
        "cmd": "enterprise_login_req",
        "data": {"enterprise_id": eid, "enterprise_secret": secret, "prefetch_count": prefetch},
    }
    t_login = time.perf_counter()
    writer.write(json.dumps(login).encode() + b"\n")
    res = json.loads(await reader.readline())
    assert res["data"]["result"] is True, res
    out.put(("ready", time.time()))
    count = 0
    lat: list[float] = []
    buf = b""
    first = 0.0
    while count < expect:
        chunk = await reader.read(1 << 18)
        if not chunk:
            break
        now = time.time()
        if not first:
            first = time.perf_counter()
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        acks = []
        for line in lines:
            if not line.startswith(PUSH_PREFIX):
                continue
            end = line.index(b",", N_PREFIX)
            acks.append(
                b'{"cmd":"enterprise_event_ack","delivery_id":' + line[N_PREFIX:end] + b"}\n"
            )
            count += 1
            i = line.find(b'"t":', end)
            if i > 0:
                j = i + 4
                k = j
                while line[k] in b"0123456789.eE+-":
                    k += 1
                lat.append(now - float(line[j:k]))
        writer.write(b"".join(acks))
        await writer.drain()
    t_last = time.perf_counter()
    out.put(("done", {"count": count, "login_to_last": t_last - t_login, "lat": lat}))
    await asyncio.sleep(1.0)  # let the last acks go out before closing
    writer.close()


def consumer(hub: HubProcess, eid: str, secret: str, prefetch: int, expect: int) -> tuple[Any, Any]:
    q: Any = mp.Queue()
    cafile = str(hub.data_dir / "tls" / "server-cert.pem")
    p = mp.Process(
        target=consumer_main, args=(hub.noti_port, cafile, eid, secret, prefetch, expect, q)
    )
    p.start()
    kind, _ = q.get(timeout=30)
    assert kind == "ready"
    return p, q


# -- phases -----------------------------------------------------------------------------------


def throughput(
    hub: HubProcess, cfg: dict[str, Any], phase: str, prefetch: int, n: int
) -> dict[str, float]:
    eid, secret = cfg["enterprises"][phase]
    records = 100
    requests = n // records
    t0 = time.perf_counter()
    p, q = produce(hub, cfg, phase, requests, records)
    res = q.get(timeout=600)
    p.join()
    assert not res["failed"] and not res["unanswered"], res
    t_filled = wait_stat(hub, eid, "enqueued", requests * records)
    ingest = requests * records / (t_filled - t0)
    t_start = time.perf_counter()
    c, cq = consumer(hub, eid, secret, prefetch, requests * records)
    _kind, done = cq.get(timeout=600)
    t_acked = wait_stat(hub, eid, "acked", requests * records)
    c.join()
    n_got = done["count"]
    assert n_got == requests * records, done
    return {
        "events": n_got,
        "ingest": ingest,
        "rate": n_got / done["login_to_last"],
        "rate_acked": n_got / (t_acked - t_start),
    }


def latency(
    hub: HubProcess, cfg: dict[str, Any], phase: str, rate: int, seconds: float, procs: int
) -> dict[str, float]:
    eid, secret = cfg["enterprises"][phase]
    records = 10
    requests = int(rate * seconds / records)
    c, cq = consumer(hub, eid, secret, 1000, requests * records)
    res = produce_paced(hub, cfg, phase, requests, records, rate / records, procs)
    _kind, done = cq.get(timeout=600)
    c.join()
    assert not res["failed"] and not res["unanswered"], res
    lat = sorted(done["lat"])
    replies = res["replies"]
    return {
        "events": len(lat),
        "offered": res["offered"],
        "late_p99": pct(res["late"], 99),
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "max": lat[-1] * 1000,
        "reply_p50": pct(replies, 50),
        "reply_p99": pct(replies, 99),
    }


def ingest_only(
    hub: HubProcess, cfg: dict[str, Any], rate: int, seconds: float, procs: int
) -> dict[str, float]:
    """The same load on a product no enterprise subscribes to: the ingest's own latency."""
    records = 10
    requests = int(rate * seconds / records)
    res = produce_paced(hub, cfg, "base", requests, records, rate / records, procs)
    replies = res["replies"]
    return {
        "offered": res["offered"],
        "late_p99": pct(res["late"], 99),
        "p50": pct(replies, 50),
        "p99": pct(replies, 99),
    }


def commit_floor(data_dir: Path, n: int = 300) -> dict[str, float]:
    """The disk's part: one small SQLite WAL commit with synchronous=full (what every
    acknowledged write waits for at least), timed n times in the hub's data directory."""
    import sqlite3

    path = data_dir / "commit-floor.db"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v BLOB)")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t(v) VALUES (?)", (b"x" * 300,))
        c.execute("COMMIT")
        times.append(time.perf_counter() - t0)
        time.sleep(0.002)
    c.close()
    times.sort()
    return {"p50": pct(times, 50), "p99": pct(times, 99)}


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of sorted seconds, in ms."""
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000, help="events for prefetch 1000")
    ap.add_argument("--events-p5", type=int, default=30_000, help="events for prefetch 5")
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--producers", type=int, default=2, help="paced producer processes")
    ap.add_argument("--rabbit-events", type=int, default=100_000, help="messages per queue")
    ap.add_argument("--no-rabbitmq", action="store_true", help="skip the RabbitMQ peer")
    ap.add_argument("--latency-only", action="store_true", help="skip the throughput phases")
    ap.add_argument("--hub-set", action="append", default=[], help="a hub setting key=value")
    args = ap.parse_args()
    mp.set_start_method("spawn")
    r5 = r1000 = None
    extra = ["--set", "log.level=warning"]
    for kv in args.hub_set:
        extra += ["--set", kv]
    with tempfile.TemporaryDirectory() as d:
        hub = HubProcess(Path(d) / "data", extra=extra)
        hub.start()
        try:
            cfg = setup(hub, ["base", "lat", "p5", "p1000"])
            floor = commit_floor(Path(d))
            base = ingest_only(hub, cfg, args.rate, args.seconds, args.producers)
            lat = latency(hub, cfg, "lat", args.rate, args.seconds, args.producers)
            if not args.latency_only:
                r5 = throughput(hub, cfg, "p5", 5, args.events_p5)
                r1000 = throughput(hub, cfg, "p1000", 1000, args.events)
        finally:
            hub.stop()
    load_hub = os.getloadavg()
    peer: dict[str, dict[str, dict[str, float]]] = {}
    if not args.no_rabbitmq and rabbitmq_peer.available():
        with tempfile.TemporaryDirectory() as d:
            rmq = rabbitmq_peer.RabbitMQ(Path(d))
            rmq.start()
            try:
                for kind in ("classic", "quorum"):
                    m = peer[kind] = {
                        "lat": rabbitmq_peer.latency(
                            rmq, kind, args.rate, args.seconds, args.producers
                        )
                    }
                    if not args.latency_only:
                        m["tp"] = rabbitmq_peer.throughput(rmq, kind, args.rabbit_events)
            finally:
                rmq.stop()
    load = os.getloadavg()
    print(
        f"noti push, one client acking every push (store.synchronous=full); "
        f"{os.cpu_count()} CPUs, load average {load_hub[0]:.2f} {load_hub[1]:.2f} after the "
        f"hub's phases, {load[0]:.2f} {load[1]:.2f} at the end"
    )
    quorum = peer.get("quorum")
    for p, r in ((5, r5), (1000, r1000)):
        if r is None:
            continue
        target = ""
        if p == 1000 and quorum is not None and "tp" in quorum:
            ratio = r["rate"] / quorum["tp"]["rate"]
            target = f"   ({ratio:.2f}x the quorum queue; target >= 2x)"
        print(
            f"  prefetch {p:>4}: {r['rate']:>9,.0f} events/s pushed{target}; "
            f"{r['rate_acked']:,.0f} events/s to the last ack committed; "
            f"{r['events']:,} events queued beforehand at {r['ingest']:,.0f} events/s ingested"
        )
    print(
        f"  latency publish -> push at {lat['offered']:,.0f} events/s offered "
        f"({args.producers} paced open-loop producers, sends late p99 {lat['late_p99']:.1f} ms; "
        f"{lat['events']:,} events, requests of 10 records, prefetch 1000): "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms (target <= 10), max {lat['max']:.1f} ms"
    )
    print(
        f"    the same requests' ingest replies (stored, in the stream): "
        f"p50 {lat['reply_p50']:.1f} ms, p99 {lat['reply_p99']:.1f} ms"
    )
    print(
        f"    peer, the same load on a product without enterprises (ingest only, "
        f"{base['offered']:,.0f} events/s offered, sends late p99 {base['late_p99']:.1f} ms): "
        f"reply p50 {base['p50']:.1f} ms, p99 {base['p99']:.1f} ms"
    )
    print(
        f"    the disk: one small SQLite commit (WAL, synchronous=full) in the same directory: "
        f"p50 {floor['p50']:.1f} ms, p99 {floor['p99']:.1f} ms"
    )
    if not peer:
        why = "skipped (--no-rabbitmq)" if args.no_rabbitmq else "rabbitmq-server is not installed"
        print(f"  RabbitMQ peer: not measured: {why}")
    for kind, m in peer.items():
        lt = m["lat"]
        tp = m.get("tp")
        if tp is not None:
            print(
                f"  RabbitMQ 3.10 {kind} queue (persistent, confirms in batches of 10, TLS; "
                f"pamqp publisher and consumer): prefetch 1000 {tp['rate']:,.0f} msgs/s delivered "
                f"({args.rabbit_events:,} queued beforehand at {tp['ingest']:,.0f} msgs/s)"
            )
        print(
            f"  RabbitMQ 3.10 {kind} queue latency publish -> delivery at "
            f"{lt['offered']:,.0f} msgs/s offered ({args.producers} paced open-loop publishers, "
            f"sends late p99 {lt['late_p99']:.1f} ms): "
            f"p50 {lt['p50']:.1f} ms, p99 {lt['p99']:.1f} ms, max {lt['max']:.1f} ms "
            f"(confirm of a batch p50 {lt['confirm_p50']:.1f} ms, p99 {lt['confirm_p99']:.1f} ms)"
        )


if __name__ == "__main__":
    main()
