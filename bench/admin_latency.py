"""Admin API latency while the hub ingests at full speed, beside the same calls on an idle
hub (the peer, measured in the same run).

Load: bench/http_ingest.py's single-record posts (separate client processes, keep-alive
connections, a durable commit per request). Probe: one httpx client calling, in turn, a
cached registry read (GET org), two store reads (device list, a service account's
message log) and a time-series query, 10 times a second; printed per call: p50, p99, max.

    .venv/bin/python bench/admin_latency.py [--clients 2] [--conns 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http_ingest import load, setup
from tests.conftest import HubProcess


def probe(hub: HubProcess, org: str, pk: str, seconds: float) -> dict[str, list[float]]:
    calls = {
        "GET org (cache)": f"/api/v1/orgs/{org}",
        "GET devices (store read)": f"/api/v1/orgs/{org}/products/{pk}/devices?limit=100",
        "GET account log (store read)": "",
        "GET measurepoints (store read)": f"/api/v1/orgs/{org}/products/{pk}/devices/dev0/measurepoints?limit=100",
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    with hub.client() as api:
        accounts = api.get(f"/api/v1/orgs/{org}/service-accounts").json()["items"]
        calls["GET account log (store read)"] = (
            f"/api/v1/orgs/{org}/service-accounts/{accounts[0]['appKey']}/logs?limit=50"
        )
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            for name, path in calls.items():
                t = time.perf_counter()
                r = api.get(path)
                times[name].append(time.perf_counter() - t)
                assert r.status_code == 200, (path, r.text)
            time.sleep(0.1)
    return times


def show(label: str, times: dict[str, list[float]]) -> None:
    print(label)
    for name, ts in times.items():
        ts = sorted(ts)
        p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))]
        print(
            f"  {name:32s} n={len(ts):4d} p50 {statistics.median(ts) * 1000:7.1f} ms"
            f"  p99 {p99 * 1000:7.1f} ms  max {ts[-1] * 1000:7.1f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    hub = HubProcess(Path(tempfile.mkdtemp()) / "data", ["--set", "log.level=info"])
    hub.start()
    try:
        org, pk, token = setup(hub)
        idle = probe(hub, org, pk, args.seconds / 2)
        result: dict[str, float] = {}

        def run_load() -> None:
            result.update(
                load(hub.http_port, token, f"{pk}|{org}", 1, args.clients, args.conns, args.seconds)
            )

        t = threading.Thread(target=run_load)
        t.start()
        time.sleep(1.5)  # the load starts a second after its processes
        busy = probe(hub, org, pk, args.seconds - 2)
        t.join()
        print(
            f"ingest during the probe: {result['rps']:,.0f} requests/s "
            f"(p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms)"
        )
        show("admin API, idle hub (peer):", idle)
        show("admin API, hub under ingest load:", busy)
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
