"""Read benchmark: headrace's time series beside InfluxDB 1.x holding the same data, same run.

The store holds DEVICES x POINTS x TIMES points (default 100 x 10 x 100,000 = 100M; use
``--devices``/``--times`` for a quicker run, the figures say which scale was measured),
one sample a second per point, float values. headrace is filled through its store code
(its bulk write API ``SQLiteStore.runs_writer``, requests of ``--records`` records of one
device, the shape of an import, every device's request for one stretch of time in one
commit) and read through the hub's query API over HTTP; InfluxDB (``influxd``,
started here with its own temp dir, WAL fsync per write) is filled with the same points by
line protocol and read by InfluxQL over HTTP. Medians of ``--repeat`` runs:

- raw: every sample of one point over the whole range (TIMES samples), headrace paged by
  10,000 through ``/measurepoints`` (``nextCursor``), InfluxDB in one query;
- aggregate: 1-hour averages of one point over the whole range;
- latest: the latest value of every point of every device: headrace by one
  ``/measurepoints/latest`` request per device and by the store's ``latest_many`` in one
  call, InfluxDB by ``SELECT last(*) ... GROUP BY device``;
- on-disk bytes per point of each (headrace: the database file and its WAL; InfluxDB:
  its data and WAL directories).

    .venv/bin/python bench/store_reads.py [--devices 100] [--times 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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
from headrace.store.sqlite.store import SQLiteStore
from influx import Influx
from store_fill import request_runs, write_requests

POINTS = 10
PK = "readPK"
T0 = 1_600_000_000_000
STEP = 1000


def value(t: int, i: int) -> float:
    return round(((t * 7 + i * 13) % 1000) * 0.1 + i, 1)


def provision(hub: HubProcess, devices: int) -> None:
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
        for i in range(0, devices, 100):
            api.post(
                f"/api/v1/orgs/bench/products/{PK}/devices",
                json=[{"deviceKey": f"dev{d}"} for d in range(i, min(devices, i + 100))],
            ).raise_for_status()


def fill_headrace(db: Path, devices: int, times: int, records: int) -> tuple[float, dict[str, int]]:
    """Fill through the store's bulk write API (``SQLiteStore.runs_writer``: the columns of
    each request as they are, no records), the requests of every device for one
    stretch of time per commit (``store_fill``, shared with ``mqtt_import.py``)."""
    store = SQLiteStore(db)
    store.start()
    ids = dict(
        store.engine.read_sync(lambda c: c.execute("SELECT device_key, id FROM devices").fetchall())
    )
    cache: dict[tuple[int, int, int], list[float]] = {}

    def columns(i: int, k0: int, n: int) -> list[float]:
        # value(k, i) repeats every 1,000 records: a request's columns are made once
        key = (i, k0 % 1000, n)
        got = cache.get(key)
        if got is None:
            got = cache[key] = [value(k, i) for k in range(k0, k0 + n)]
        return got

    def requests() -> Iterator[list[Run]]:
        for r0 in range(0, times, records):
            n = min(times, r0 + records) - r0
            for d in range(devices):
                yield request_runs(ids[f"dev{d}"], T0 + r0 * STEP, r0, n, POINTS, columns, STEP)

    t = time.perf_counter()
    try:
        write_requests(store, requests(), devices, as_records=False)
    finally:
        store.close()
    return time.perf_counter() - t, ids


def fill_influx(db: Influx, devices: int, times: int, lines_per_write: int = 5000) -> float:
    db.query("CREATE DATABASE bench")
    t = time.perf_counter()
    work: list[tuple[int, int]] = [
        (d, r0) for r0 in range(0, times, lines_per_write) for d in range(devices)
    ]
    lock = threading.Lock()
    # the fields of time k depend on k % 1000 only: made once
    fields = [",".join(f"p{i}={value(k, i)!r}" for i in range(POINTS)) for k in range(1000)]

    def run() -> None:
        c = db.conn()
        while True:
            with lock:
                if not work:
                    break
                d, r0 = work.pop()
            tag = f"m,device=dev{d} "
            body = "".join(
                f"{tag}{fields[k % 1000]} {T0 + k * STEP}\n"
                for k in range(r0, min(times, r0 + lines_per_write))
            ).encode()
            db.write(body, conn=c)
        c.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    runs = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--times", type=int, default=100_000)
    ap.add_argument("--records", type=int, default=1000, help="records per write request")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="work directory (default: a temp dir, removed after)")
    args = ap.parse_args()
    n_points = args.devices * POINTS * args.times
    end = T0 + args.times * STEP
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        root = Path(d)
        hub = HubProcess(root / "data", extra=["--set", "log.level=warning"])
        hub.start()
        provision(hub, args.devices)
        hub.stop()
        fill_s, _ids = fill_headrace(
            root / "data" / "headrace.db", args.devices, args.times, args.records
        )
        print(
            f"scale: {args.devices} devices x {POINTS} points x {args.times} times = {n_points:,} points"
        )
        print(
            f"headrace filled in {fill_s:.1f}s ({n_points / fill_s:,.0f} points/s, the store's bulk write API, {args.records}-record requests, {args.devices} per commit)"
        )
        influx = None
        if Influx.available():
            influx = Influx(root / "influx")
            influx.start()
            ifill = fill_influx(influx, args.devices, args.times)
            print(
                f"influxdb filled in {ifill:.1f}s ({n_points / ifill:,.0f} points/s, 5000-line writes, 4 connections)"
            )
        else:
            print("influxdb: not measured: influxd is not installed (Debian package influxdb)")
        hub.start()
        try:
            results = measure(hub, influx, args, end)
        finally:
            hub.stop()
        db = root / "data" / "headrace.db"
        h_bytes = sum(p.stat().st_size for p in db.parent.glob("headrace.db*"))
        print(
            f"{'':10} {'headrace':>12} {'influxdb':>12} {'ratio':>8}   (ms, median of {args.repeat}; ratio = influxdb/headrace, > 1: headrace faster)"
        )
        for name, (h, i) in results.items():
            ratio = f"{i / h:7.2f}x" if i else ""
            print(f"{name:10} {h:12.1f} {i or float('nan'):12.1f} {ratio:>8}")
        if influx is not None:
            i_bytes = influx.disk_bytes()
            influx.stop()
            print(
                f"disk: headrace {h_bytes / n_points:.2f} bytes/point ({h_bytes / 1e6:.0f} MB), "
                f"influxdb {i_bytes / n_points:.2f} bytes/point ({i_bytes / 1e6:.0f} MB)"
            )
        else:
            print(f"disk: headrace {h_bytes / n_points:.2f} bytes/point ({h_bytes / 1e6:.0f} MB)")


def measure(
    hub: HubProcess, influx: Influx | None, args: Any, end: int
) -> dict[str, tuple[float, float | None]]:
    api = httpx.Client(
        base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=600
    )
    dev = f"dev{args.devices // 2}"
    base = f"/api/v1/orgs/bench/products/{PK}/devices/{dev}/measurepoints"

    def raw() -> int:
        n = 0
        cursor = ""
        while True:
            params = {"points": "p3", "start": str(T0), "end": str(end), "limit": "10000"}
            if cursor:
                params["cursor"] = cursor
            body = api.get(base, params=params).raise_for_status().json()
            n += len(body["items"])
            cursor = body["nextCursor"]
            if not cursor:
                return n

    def agg() -> int:
        params = {
            "points": "p3",
            "start": str(T0),
            "end": str(end),
            "interval": "3600000",
            "fn": "avg",
        }
        return len(
            api.get(base + "/aggregate", params=params).raise_for_status().json()["points"]["p3"]
        )

    def latest() -> int:
        n = 0
        for d in range(args.devices):
            url = f"/api/v1/orgs/bench/products/{PK}/devices/dev{d}/measurepoints/latest"
            n += len(api.get(url).raise_for_status().json()["points"])
        return n

    results: dict[str, tuple[float, float | None]] = {}
    h_raw, n_raw = median_ms(raw, args.repeat)
    h_agg, n_agg = median_ms(agg, args.repeat)
    h_lat, n_lat = median_ms(latest, args.repeat)
    assert n_raw == args.times, n_raw
    assert n_lat == args.devices * POINTS, n_lat
    # the store's latest_many, in process (no HTTP): what a many-device API builds on
    store = SQLiteStore(hub.data_dir / "headrace.db")
    store.start()
    try:
        ids = [
            r[0]
            for r in store.engine.read_sync(
                lambda c: c.execute("SELECT id FROM devices").fetchall()
            )
        ]
        h_many, got = median_ms(lambda: asyncio.run(store.latest_many(ids, None)), args.repeat)
        assert sum(len(v) for v in got.values()) == args.devices * POINTS
    finally:
        store.close()
    i_raw = i_agg = i_lat = None
    if influx is not None:
        c = influx.conn()
        where = f"device='{dev}' AND time >= {T0}ms AND time < {end}ms"

        def iraw() -> int:
            body = influx.query(f"SELECT p3 FROM m WHERE {where}", conn=c)
            return len(body["results"][0]["series"][0]["values"])

        def iagg() -> int:
            body = influx.query(f"SELECT mean(p3) FROM m WHERE {where} GROUP BY time(1h)", conn=c)
            return len(body["results"][0]["series"][0]["values"])

        def ilat() -> int:
            body = influx.query("SELECT last(*) FROM m GROUP BY device", conn=c)
            return sum(len(s["values"][0]) - 1 for s in body["results"][0]["series"])

        i_raw, ni_raw = median_ms(iraw, args.repeat)
        i_agg, ni_agg = median_ms(iagg, args.repeat)
        i_lat, ni_lat = median_ms(ilat, args.repeat)
        assert ni_raw == args.times, ni_raw
        assert ni_lat == args.devices * POINTS, ni_lat
        print(
            f"buckets: headrace {n_agg}, influxdb {ni_agg} (InfluxDB aligns 1h buckets to the epoch)"
        )
    results["raw"] = (h_raw, i_raw)
    results["aggregate"] = (h_agg, i_agg)
    results["latest"] = (h_lat, i_lat)
    results["latest_many"] = (h_many, i_lat)
    return results


if __name__ == "__main__":
    main()
