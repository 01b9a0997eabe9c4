"""History-file import benchmark: ``headrace import`` of a generated CSV vs the MQTT peer.

Generates a wide CSV (DEVICES x POINTS x TIMES points: by default 100 x 10 x 10,000 =
10 million points, one row per device and time), starts a hub (tests.conftest.HubProcess,
provisioned by bench/mqtt_import.py's ``setup``), and in the same run measures:

1. the peer: bench/mqtt_import.py's ``client_main`` (paho-mqtt publishing ready-made
   100-record x 10-point requests at QoS 1, ``--inflight`` outstanding), in each
   configuration of ``--peer`` (CLIENTSxINFLIGHT), best rate taken;
2. ``headrace import FILE`` as a subprocess (CSV parsing, typing, batching, requests,
   checkpoints, progress), with ``--connections`` and ``--inflight`` matching the
   peer's best configuration.

Both write new samples into the same hub. Printed: points/s of each, the ratio
(target >= 80%), and the CSV size.

The peer's rate counts only the replies to a client's own requests (``len(lat)``:
replies whose id it sent); bench/mqtt_import.py counts the same way, and the hub sends a
reply to the requesting connection when it subscribed to the reply topic.

    .venv/bin/python bench/import_file.py                 # 10 M points
    .venv/bin/python bench/import_file.py --times 1000    # 1 M points, a quick run
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.conftest import HubProcess

import mqtt_import  # bench/mqtt_import.py

T0 = 1_500_000_000_000  # before the peer's 1600... times: no overlap


def generate_csv(path: Path, devices: int, points: int, times: int) -> int:
    """The wide CSV; returns the number of points. Values vary per device, time and point.

    Rows come as a history export has them and as bench/mqtt_import.py sends them: runs
    of 100 consecutive times of one device, devices in turn."""
    names = [f"p{i}" for i in range(points)]
    run = mqtt_import.RECORDS
    with open(path, "w", buffering=1 << 20) as f:
        f.write("deviceKey,time," + ",".join(names) + "\n")
        for block in range(0, times, run):
            for d in range(devices):
                for t in range(block, min(block + run, times)):
                    base = (t * 31 + d * 7) % 10_000
                    f.write(
                        f"dev{d},{T0 + t * 1000},"
                        + ",".join(f"{(base + i) / 8}" for i in range(points))
                        + "\n"
                    )
    return devices * points * times


def run_peer(
    hub: HubProcess, user: str, password: str, clients: int, inflight: int, seconds: float
) -> tuple[float, float]:
    """bench/mqtt_import.py's load: (own-reply points/s, as that script counts them)."""
    results = mqtt_import.run_processes(
        mqtt_import.client_main,
        lambda out: [
            (i, hub.mqtt_port, user, password, seconds, inflight, out, clients)
            for i in range(clients)
        ],
        seconds + 120,
    )
    elapsed = max(r["elapsed"] for r in results)
    per_request = mqtt_import.RECORDS * mqtt_import.POINTS
    own = sum(len(r["lat"]) for r in results) * per_request / elapsed
    counted = sum(r["ok"] for r in results) * per_request / elapsed
    return own, counted


def run_import(
    hub: HubProcess,
    user: str,
    password: str,
    csv_path: Path,
    connections: int,
    inflight: int,
    batch: int,
) -> tuple[float, float, str]:
    """``headrace import`` as a subprocess: (points/s by its own clock, wall seconds, output)."""
    args = [
        sys.executable,
        "-m",
        "headrace",
        "import",
        str(csv_path),
        "--broker",
        f"mqtt://127.0.0.1:{hub.mqtt_port}",
        "--username",
        user,
        "--password",
        password,
        "--product",
        mqtt_import.PK,
        "--batch",
        str(batch),
        "--inflight",
        str(inflight),
        "--connections",
        str(connections),
        "--restart",
        "--no-progress",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"([\d,]+) points/s", proc.stdout.replace("\n", " "))
    rate = float(m.group(1).replace(",", "")) if m else 0.0
    return rate, wall, proc.stdout.strip()


def fresh_hub(root: Path, name: str) -> tuple[HubProcess, str, str]:
    hub = HubProcess(root / name, extra=["--set", "log.level=warning"])
    hub.start()
    user, password = mqtt_import.setup(hub)
    return hub, user, password


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--times", type=int, default=10_000, help="times per device")
    ap.add_argument("--batch", type=int, default=100, help="items (rows) per request")
    ap.add_argument(
        "--peer",
        default="1x16",
        help="configurations CLIENTSxINFLIGHT (comma-separated); each runs the peer with "
        "that many paho clients and the import with as many connections and requests",
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=0,
        help="peer run time (default: as long as the import of the same configuration took, "
        "so that both write a similar volume into a fresh hub)",
    )
    ap.add_argument("--keep", type=Path, default=None, help="keep the CSV here")
    args = ap.parse_args()
    if args.points != mqtt_import.POINTS:
        raise SystemExit(f"--points must be {mqtt_import.POINTS} (the benchmark model)")
    if args.devices > mqtt_import.DEVICES:
        raise SystemExit(f"--devices must be <= {mqtt_import.DEVICES}")
    configs = [tuple(int(x) for x in c.split("x")) for c in args.peer.split(",")]
    print(
        f"cpus={os.cpu_count()} load average {os.getloadavg()[0]:.2f}; each measurement on "
        "a fresh hub (store.synchronous=full)"
    )
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        csv_path = args.keep or root / "history.csv"
        t0 = time.perf_counter()
        total = generate_csv(csv_path, args.devices, args.points, args.times)
        gen = time.perf_counter() - t0
        size = csv_path.stat().st_size
        print(
            f"CSV: {total:,} points ({args.devices} devices x {args.points} points x "
            f"{args.times:,} times), {size / 1e6:.0f} MB, generated in {gen:.1f} s"
        )
        peer_rates: list[tuple[float, str]] = []
        import_rates: list[tuple[float, str]] = []
        for n, (clients, inflight) in enumerate(configs):
            hub, user, password = fresh_hub(root, f"import{n}")
            try:
                rate, wall, output = run_import(
                    hub, user, password, csv_path, clients, clients * inflight, args.batch
                )
            finally:
                hub.stop()
            label = f"--connections {clients} --inflight {clients * inflight}"
            print(
                f"import {label} --batch {args.batch}: {rate:10,.0f} points/s "
                f"({wall:.1f} s wall with start-up)"
            )
            print(f"    {' '.join(output.split())}")
            import_rates.append((rate, label))
            seconds = args.seconds or max(5.0, wall)
            hub, user, password = fresh_hub(root, f"peer{n}")
            try:
                own, counted = run_peer(hub, user, password, clients, inflight, seconds)
            finally:
                hub.stop()
            print(
                f"peer   {clients}x{inflight} paho (bench/mqtt_import.py), {seconds:.0f} s: "
                f"{own:10,.0f} points/s   (as that script counts replies: {counted:,.0f})"
            )
            peer_rates.append((own, f"{clients}x{inflight}"))
    best_import = max(import_rates)
    best_peer = max(peer_rates)
    print(
        f"best import {best_import[0]:,.0f} points/s ({best_import[1]}) / best peer "
        f"{best_peer[0]:,.0f} points/s ({best_peer[1]}): {best_import[0] / best_peer[0]:.0%}   "
        "(target >= 80%)"
    )


if __name__ == "__main__":
    main()
