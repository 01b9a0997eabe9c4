"""EnOS TSDB data API v2.1 read rates, beside the store's own read rate for the same data.

Data: DEVICES devices of one product, POINTS double points; the first AI_DEVICES devices
hold one day of samples every STEP seconds (loaded over MQTT with paho, one device-day
per request), every other device one sample (for ``latest``).

Measured, in the same run:
1. ``POST /tsdb-service/v2.1/ai``: one day, POINTS points x AI_DEVICES devices, one page
   (pageSize 640: the 640,000-row limit allows no more for 1,000 device-points), by
   1 client and by --clients concurrent clients (httpx, keep-alive);
2. ``POST /tsdb-service/v2.1/latest``: all DEVICES devices x LATEST_POINTS points (the
   3,000 device-points limit);
3. the peer: the same reads through the storage protocol directly (``query_samples`` per
   device for the day, ``latest`` per device), on the same database file after the hub
   stopped, sequential and with the same concurrency, in this process.

Printed: requests/s and points/s (samples returned per second) of each, and API/store
ratios. The machine is shared: quote medians and ratios.

    .venv/bin/python bench/tsdb_api.py [--seconds 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ADMIN_TOKEN, HubProcess
from tests.e2e.http_support import get_token
from tests.e2e.mqtt_support import Client, mp_request

POINTS = 10
AI_DEVICES = 100
DEVICES = 1000
LATEST_POINTS = 3
STEP = 300  # seconds between samples: 288 a day
DAY0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z
DAY_MS = 86_400_000


def setup(hub: HubProcess) -> tuple[str, str, dict[str, Any]]:
    with httpx.Client(
        base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120
    ) as api:
        api.post("/api/v1/orgs", json={"orgId": "bench", "name": "bench"}).raise_for_status()
        model = {
            "id": "m",
            "measurepoints": [{"id": f"p{i}", "type": "double"} for i in range(POINTS)],
        }
        api.post("/api/v1/orgs/bench/models", json=model).raise_for_status()
        api.post(
            "/api/v1/orgs/bench/products", json={"name": "p", "modelId": "m", "productKey": "PK"}
        ).raise_for_status()
        for k in range(0, DEVICES, 500):
            api.post(
                "/api/v1/orgs/bench/products/PK/devices",
                json=[{"deviceKey": f"d{i}", "assetId": f"a{i}"} for i in range(k, k + 500)],
            ).raise_for_status()
        ch = api.post("/api/v1/orgs/bench/channels", json={"name": "c", "products": ["PK"]}).json()
        sa = api.post("/api/v1/orgs/bench/service-accounts", json={"name": "app"}).json()
    token = get_token(hub.url, sa["appKey"], sa["appSecret"])
    return "bench", token, ch


def load(hub: HubProcess, ch: dict[str, Any]) -> int:
    c = Client(hub, ch["username"], ch["password"])
    c.subscribe("/sys/PK/integration/#")
    topic = "/sys/PK/integration/measurepoint/post"
    samples = 0
    per_day = DAY_MS // (STEP * 1000)
    for dev in range(AI_DEVICES):
        items = [
            {
                "deviceKey": f"d{dev}",
                "time": DAY0 + r * STEP * 1000,
                "measurepoints": {f"p{i}": r * 0.5 + i for i in range(POINTS)},
            }
            for r in range(per_day)
        ]
        assert c.request(topic, mp_request(str(dev), items))["code"] == 200
        samples += per_day * POINTS
    for k in range(AI_DEVICES, DEVICES, 100):
        items = [
            {
                "deviceKey": f"d{dev}",
                "time": DAY0,
                "measurepoints": {f"p{i}": float(i) for i in range(POINTS)},
            }
            for dev in range(k, min(DEVICES, k + 100))
        ]
        assert c.request(topic, mp_request(f"l{k}", items))["code"] == 200
    c.close()
    return samples


def ai_body() -> dict[str, Any]:
    return {
        "assetIds": ",".join(f"a{i}" for i in range(AI_DEVICES)),
        "pointIds": ",".join(f"p{i}" for i in range(POINTS)),
        "startTime": "2024-03-01T00:00:00+00:00",
        "endTime": "2024-03-02T00:00:00+00:00",
        "pageSize": 640,
    }


def latest_body() -> dict[str, Any]:
    return {
        "assetIds": ",".join(f"a{i}" for i in range(DEVICES)),
        "pointIds": ",".join(f"p{i}" for i in range(LATEST_POINTS)),
    }


def count_points(data: dict[str, Any]) -> int:
    return sum(sum(1 for k in it if k.startswith("p")) for it in data["items"])


def api_rate(
    url: str, org: str, token: str, path: str, body: dict[str, Any], clients: int, seconds: float
) -> tuple[float, float, float]:
    """(requests/s, points/s, median latency s) of ``clients`` threads posting ``body``."""
    lat: list[float] = []
    points = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    content = json.dumps(body).encode()

    def run() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = http.post(
                    path,
                    params={"orgId": org},
                    content=content,
                    headers={"apim-accesstoken": token, "content-type": "application/json"},
                )
                dt = time.perf_counter() - t
                b = msgspec.json.decode(r.content)  # the client's parse kept cheap
                assert b["code"] == 0, b
                assert b["data"].get("pointer") is None
                n = count_points(b["data"])
                with lock:
                    lat.append(dt)
                    points[0] += n

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return len(lat) / wall, points[0] / wall, statistics.median(lat)


def store_rates(db: Path, clients: int, seconds: float) -> dict[str, tuple[float, float]]:
    """The same reads through the storage protocol: (requests/s, points/s) per read."""
    from headrace.store.sqlite.store import SQLiteStore

    store = SQLiteStore(db, readers=4)
    store.start()
    try:
        ids = {row.asset_id: row.id for row in store.load_devices()}
        ai_ids = [ids[f"a{i}"] for i in range(AI_DEVICES)]
        all_ids = [ids[f"a{i}"] for i in range(DEVICES)]
        pts = [f"p{i}" for i in range(POINTS)]
        lpts = pts[:LATEST_POINTS]

        async def ai_once() -> int:
            rows = await asyncio.gather(
                *(
                    store.query_samples(d, pts, DAY0, DAY0 + DAY_MS, 6400, False, None)
                    for d in ai_ids
                )
            )
            return sum(len(r) for r in rows)

        async def latest_once() -> int:
            rows = await asyncio.gather(*(store.latest(d, lpts) for d in all_ids))
            return sum(len(r) for r in rows)

        async def rate(fn: Any, conc: int) -> tuple[float, float]:
            stop = time.monotonic() + seconds
            reqs = 0
            points = 0

            async def worker() -> None:
                nonlocal reqs, points
                while time.monotonic() < stop:
                    n = await fn()  # not `points += await`: that loses concurrent updates
                    points += n
                    reqs += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            wall = time.perf_counter() - t0
            return reqs / wall, points / wall

        async def all_rates() -> dict[str, tuple[float, float]]:
            return {
                "ai x1": await rate(ai_once, 1),
                f"ai x{clients}": await rate(ai_once, clients),
                "latest x1": await rate(latest_once, 1),
                f"latest x{clients}": await rate(latest_once, clients),
            }

        return asyncio.run(all_rates())
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    hub = HubProcess(Path(tempfile.mkdtemp()) / "data", ["--set", "log.level=info"])
    hub.start()
    try:
        org, token, ch = setup(hub)
        t = time.perf_counter()
        n = load(hub, ch)
        print(
            f"loaded {n} samples of {AI_DEVICES} devices + {DEVICES - AI_DEVICES} latest "
            f"in {time.perf_counter() - t:.1f} s (MQTT)"
        )
        api: dict[str, tuple[float, float, float]] = {}
        for name, path, body in (
            ("ai", "/tsdb-service/v2.1/ai", ai_body()),
            ("latest", "/tsdb-service/v2.1/latest", latest_body()),
        ):
            for conc in (1, args.clients):
                api[f"{name} x{conc}"] = api_rate(
                    hub.url, org, token, path, body, conc, args.seconds
                )
    finally:
        hub.stop()
    store = store_rates(hub.data_dir / "headrace.db", args.clients, args.seconds)
    print(
        f"one-day ai: {POINTS} points x {AI_DEVICES} devices ({AI_DEVICES * POINTS * DAY_MS // (STEP * 1000)} "
        f"samples a request); latest: {DEVICES} devices x {LATEST_POINTS} points"
    )
    print(
        f"{'read':12s} {'API req/s':>10s} {'API points/s':>13s} {'p50 ms':>8s} "
        f"{'store req/s':>12s} {'store points/s':>15s} {'API/store':>10s}"
    )
    for key, (rps, pps, p50) in api.items():
        srps, spps = store[key]
        print(
            f"{key:12s} {rps:10.2f} {pps:13,.0f} {p50 * 1000:8.1f} {srps:12.2f} {spps:15,.0f} "
            f"{rps / srps:10.2f}"
        )


if __name__ == "__main__":
    main()
