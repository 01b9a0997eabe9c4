"""MQTT history-import benchmark: stored points/s through the whole hub, beside its peer
and its limit measured in the same run.

Client load comes from separate processes (paho-mqtt, an independent client): each
publishes batches of RECORDS records x POINTS measurepoints of one device at QoS 1 with
many requests in flight and waits for every reply. Printed: stored points/s and reply
latency p50/p99 of the hub, and, in the same run:

- bare store: the same requests written by our store code (``SQLiteStore.batch_writer``,
  its chunk encoding and writer thread) with no network, JSON or validation; and the
  same handed to the store as columns (``SQLiteStore.runs_writer``);
- limit: the physical one, a minimal stdlib-sqlite3 script writing the same chunk bytes
  (encoded beforehand) as one row per (device, point) per request into a bare table,
  WAL, ``synchronous=FULL``, the same requests per commit;
- InfluxDB 1.x (``influxd`` if installed, else said so): the same points, the same shape
  (one device, RECORDS records x POINTS fields per write), the same writes in flight,
  over its HTTP line protocol, WAL fsynced on every write.

    .venv/bin/python bench/mqtt_import.py [--clients 3] [--seconds 15] [--inflight 16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.conftest import ADMIN_TOKEN, HubProcess

from headrace.store.sqlite.series import Run
from influx import Influx, lines
from store_fill import request_runs, write_requests

RECORDS = 100
POINTS = 10
DEVICES = 100
PK = "benchPK"


def payload(seq: int, client: int, clients: int = 1) -> bytes:
    """Request ``seq`` of a client: 100 consecutive records of one device, as a device's
    buffered history is replayed. Each client owns its own devices (client, client +
    clients, ...) and walks through them, each device's timeline continuing."""
    own = DEVICES // clients
    device = client + clients * (seq % own)
    # times start with "1600": client_main bumps that prefix per cycle so every request
    # carries new samples (history import inserts; it does not rewrite)
    base = 1_600_000_000_000 + (seq // own) * RECORDS * 1000
    params = [
        {
            "deviceKey": f"dev{device}",
            "time": base + r * 1000,
            "measurepoints": {f"p{i}": round(r * 0.5 + i, 3) for i in range(POINTS)},
        }
        for r in range(RECORDS)
    ]
    return json.dumps(
        {
            "id": "RID",
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": params,
        }
    ).encode()


def client_main(
    client: int,
    port: int,
    username: str,
    password: str,
    seconds: float,
    inflight: int,
    out: mp.Queue,
    clients: int = 1,
    first_cycle: int = 0,
) -> None:
    """``first_cycle``: where this run's time prefixes start (a later load into the same
    hub passes a higher one, so that it stores new samples instead of rewriting)."""
    import paho.mqtt.client as mqtt

    topic = f"/sys/{PK}/integration/measurepoint/post"
    # cycled: the time prefix is bumped per cycle, so every request stores new samples
    payloads = [payload(i, client, clients) for i in range(50)]
    sent: dict[str, float] = {}
    lat: list[float] = []
    ok = 0
    failed = 0
    cond = threading.Condition()
    connected = threading.Event()

    def on_message(_c, _u, msg):  # type: ignore[no-untyped-def]
        nonlocal ok, failed
        reply = json.loads(msg.payload)
        with cond:
            t0 = sent.pop(reply["id"], None)
            if t0 is None:  # not one of ours
                return
            lat.append(time.perf_counter() - t0)
            if reply["code"] == 200:
                ok += 1
            else:
                failed += 1
            cond.notify()

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{client}", protocol=mqtt.MQTTv311
    )
    c.username_pw_set(username, password)
    c.max_inflight_messages_set(inflight)
    c.on_message = on_message
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    connected.wait(10)
    c.subscribe(topic + "_reply", qos=0)
    time.sleep(0.3)
    seq = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        with cond:
            while len(sent) >= inflight:
                cond.wait(1)
            # unique request id per publish so replies match exactly
            rid = f"{client}-{seq}"
            cycle = first_cycle + seq // len(payloads)
            body = payloads[seq % len(payloads)].replace(b'"RID"', f'"{rid}"'.encode(), 1)
            if cycle:
                body = body.replace(b'"time": 1600', f'"time": {1600 + cycle}'.encode())
            sent[rid] = time.perf_counter()
        c.publish(topic, body, qos=1)
        seq += 1
    with cond:
        while sent and cond.wait(10):
            pass
    elapsed = time.perf_counter() - start
    c.loop_stop()
    c.disconnect()
    out.put({"ok": ok, "failed": failed, "lat": lat, "elapsed": elapsed})


def run_processes(
    target: Callable[..., None],
    args: Callable[[mp.Queue], list[tuple[Any, ...]]],
    timeout: float,
    kwargs: dict[str, Any] | None = None,
) -> list[Any]:
    """One process of ``target`` per tuple of ``args(out)``, started together; each puts
    its one result on ``out``. Returns the results once every process has ended."""
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=target, args=a, kwargs=kwargs or {}) for a in args(out)]
    for p in procs:
        p.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join()
    return results


def bare_store(seconds: float, group: int, *, as_records: bool = True) -> float:
    """The store's limit: the same rows through the same engine and schema (the hub's
    SQLite store and writer thread), fed by a minimal script with no network, JSON or
    validation, ``group`` requests per commit (``store_fill``, shared with
    ``store_reads.py``). ``as_records``: as the hub's measurepoint records (``batch_writer``), else
    as columns (``runs_writer``: what the store costs when handed columns). Points/s."""
    from headrace.store.sqlite.store import SQLiteStore

    def requests() -> Iterator[list[Run]]:
        # the hub's rows: 100 consecutive records of one device per request, devices in turn
        for seq in itertools.count():
            base = 1_600_000_000_000 + (seq // DEVICES) * RECORDS * 1000
            yield request_runs(seq % DEVICES + 1, base, 0, RECORDS, POINTS, _columns, 1000)

    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "bare.db", synchronous="full")
        store.start()
        try:
            total, busy = write_requests(
                store, requests(), group, as_records=as_records, seconds=seconds
            )
            return total / busy
        finally:
            store.close()


def _columns(i: int, _k0: int, records: int) -> list[float]:
    return [r * 0.5 + i for r in range(records)]


def sqlite_limit(seconds: float, group: int) -> float:
    """The physical limit: the chunk rows our store writes for the same requests (encoded
    beforehand, untimed), inserted by a minimal stdlib-sqlite3 script into a bare table
    keyed (device, point, t1), WAL, synchronous=FULL, ``group`` requests per commit."""
    import sqlite3

    from headrace.store.sqlite import chunks

    def rows(seq: int) -> list[tuple[object, ...]]:
        base = 1_600_000_000_000 + (seq // DEVICES) * RECORDS * 1000
        ts = [base + r * 1000 for r in range(RECORDS)]
        out = []
        for i in range(POINTS):
            vs = [r * 0.5 + i for r in range(RECORDS)]
            row = chunks.encode(seq % DEVICES + 1, i, ts, vs, [None] * RECORDS, 0)
            out.append((row[0], row[1], row[2], row[3], row[4], row[12], row[13]))
        return out

    with tempfile.TemporaryDirectory() as d:
        c = sqlite3.connect(Path(d) / "limit.db", isolation_level=None)
        c.execute("PRAGMA page_size=16384")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute(
            "CREATE TABLE c (device INTEGER, point INTEGER, t1 INTEGER, t0 INTEGER, n INTEGER, "
            "tsb BLOB, vb BLOB, PRIMARY KEY (device, point, t1)) WITHOUT ROWID"
        )
        seq = total = 0
        busy = 0.0
        while busy < seconds:
            todo = [r for k in range(group) for r in rows(seq + k)]
            seq += group
            t0 = time.perf_counter()
            c.execute("BEGIN")
            c.executemany("INSERT INTO c VALUES (?,?,?,?,?,?,?)", todo)
            c.execute("COMMIT")
            busy += time.perf_counter() - t0
            total += group * RECORDS * POINTS
        c.close()
        return total / busy


def influx_client(
    port: int, client: int, clients: int, seconds: float, inflight: int, out: mp.Queue
) -> None:
    """``inflight`` connections of one client process, each posting requests in turn."""
    import http.client

    own = DEVICES // clients
    bodies = []
    for seq in range(50):
        device = client + clients * (seq % own)
        base = 1_600_000_000_000 + (seq // own) * RECORDS * 1000
        bodies.append(lines(device, base, RECORDS, POINTS, lambda r, i: round(r * 0.5 + i, 3)))
    counts = [0] * inflight
    start = time.perf_counter()
    deadline = start + seconds

    def run(slot: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        seq = slot
        while time.perf_counter() < deadline:
            cycle = seq // len(bodies)
            body = bodies[seq % len(bodies)]
            if cycle:  # new times per cycle, as the MQTT clients do
                body = body.replace(b" 1600", f" {1600 + cycle}".encode())
            c.request("POST", "/write?db=bench&precision=ms", body=body)
            r = c.getresponse()
            r.read()
            if r.status == 204:
                counts[slot] += 1
            seq += inflight
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(inflight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"ok": sum(counts), "elapsed": time.perf_counter() - start})


def influx_peer(seconds: float, clients: int, inflight: int) -> tuple[float, float] | None:
    """(points/s, bytes on disk per point after a clean stop: data and WAL)."""
    if not Influx.available():
        return None
    with tempfile.TemporaryDirectory() as d:
        db = Influx(Path(d) / "influx")
        db.start()
        try:
            db.query("CREATE DATABASE bench")
            results = run_processes(
                influx_client,
                lambda out: [(db.port, i, clients, seconds, inflight, out) for i in range(clients)],
                seconds + 300,
            )
        finally:
            db.stop()
        disk = db.disk_bytes()
    ok = sum(r["ok"] for r in results)
    return ok * RECORDS * POINTS / max(r["elapsed"] for r in results), disk / (
        ok * RECORDS * POINTS
    )


def setup(hub: HubProcess) -> tuple[str, str]:
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        api.post("/api/v1/orgs", json={"orgId": "bench", "name": "bench"}).raise_for_status()
        model = {
            "id": "m",
            "measurepoints": [{"id": f"p{i}", "type": "double"} for i in range(POINTS)],
        }
        api.post("/api/v1/orgs/bench/models", json=model).raise_for_status()
        api.post(
            "/api/v1/orgs/bench/products", json={"name": "p", "modelId": "m", "productKey": PK}
        ).raise_for_status()
        api.post(
            f"/api/v1/orgs/bench/products/{PK}/devices",
            json=[{"deviceKey": f"dev{i}"} for i in range(DEVICES)],
        ).raise_for_status()
        ch = api.post(
            "/api/v1/orgs/bench/channels", json={"name": "bench", "products": [PK]}
        ).json()
    return ch["username"], ch["password"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="record the hub with py-spy (raw collapsed stacks per thread) while the clients run",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        hub = HubProcess(Path(d) / "data", extra=["--set", "log.level=warning"])
        hub.start()
        try:
            user, password = setup(hub)
            assert hub.proc is not None
            rss0 = rss_kib(hub.proc.pid)
            out: mp.Queue = mp.Queue()
            procs = [
                mp.Process(
                    target=client_main,
                    args=(
                        i,
                        hub.mqtt_port,
                        user,
                        password,
                        args.seconds,
                        args.inflight,
                        out,
                        args.clients,
                    ),
                )
                for i in range(args.clients)
            ]
            for p in procs:
                p.start()
            spy = None
            if args.profile:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "-p",
                        str(hub.proc.pid),
                        "-d",
                        str(int(args.seconds) - 2),
                        "-f",
                        "raw",
                        "--threads",
                        "-o",
                        args.profile,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            peak = rss0
            results = []
            while len(results) < len(procs):
                try:
                    results.append(out.get(timeout=0.5))
                except Exception:
                    pass
                peak = max(peak, rss_kib(hub.proc.pid))
            for p in procs:
                p.join()
            if spy is not None:
                spy.wait()
        finally:
            hub.stop()
        # after a clean stop (SQLite folds its WAL back into the database file)
        h_bytes = sum(p.stat().st_size for p in (Path(d) / "data").glob("headrace.db*"))
    ok = sum(r["ok"] for r in results)
    failed = sum(r["failed"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    points_s = ok * RECORDS * POINTS / elapsed
    group = args.clients * args.inflight
    bare = bare_store(min(args.seconds, 10), group)
    bare_cols = bare_store(min(args.seconds, 10), group, as_records=False)
    limit = sqlite_limit(min(args.seconds, 10), group)
    peer = influx_peer(args.seconds, args.clients, args.inflight)
    influx, influx_bpp = peer if peer is not None else (None, None)
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
    print(
        f"clients={args.clients} inflight={args.inflight} batch={RECORDS}x{POINTS} QoS1 cpus={os.cpu_count()}"
    )
    print(f"requests ok={ok} failed={failed} in {elapsed:.1f}s")
    print(
        f"hub:        {points_s:12,.0f} points/s durable   reply latency p50={p50:.1f} ms p99={p99:.1f} ms"
    )
    print(
        f"bare store: {bare:12,.0f} points/s (our store code alone: same requests, chunk encoding and writer thread, synchronous=FULL, {group} requests per commit)"
    )
    print(
        f"  columns:  {bare_cols:12,.0f} points/s (the same handed over as columns, SQLiteStore.runs_writer: no records)"
    )
    print(
        f"limit:      {limit:12,.0f} points/s (stdlib sqlite3 writing the same chunk bytes into a bare table, WAL, synchronous=FULL, {group} requests per commit)"
    )
    if influx is None:
        print("influxdb:   not measured: influxd is not installed (Debian package influxdb)")
    else:
        print(
            f"influxdb:   {influx:12,.0f} points/s ({Influx.version()}, line protocol over HTTP, same points, {group} writes in flight, WAL fsync per write)"
        )
    print(
        f"ratios: hub/limit {points_s / limit:.0%}  hub/bare {points_s / bare:.0%}"
        + (f"  hub/influxdb {points_s / influx:.2f}x" if influx else "")
        + "   (targets: >= 1,000,000 points/s, >= 3x InfluxDB)"
    )
    print(f"hub RSS: start {rss0 / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB")
    print(
        f"on disk after a clean stop: hub {h_bytes / max(1, ok * RECORDS * POINTS):.2f} bytes/point"
        + (f", influxdb {influx_bpp:.2f} bytes/point" if influx_bpp else "")
        + " (target: hub <= influxdb)"
    )


if __name__ == "__main__":
    main()
