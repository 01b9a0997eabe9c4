"""The import rate as the store grows: consecutive loads into one hub, each storing new
samples, beside the same chunk rows written by minimal stdlib-sqlite3 scripts in two
layouts, grown to the same sizes in the same run.

A history import fills the store for hours; ``mqtt_import.py`` measures 10 s into an
empty one. Here the hub takes ``--loads`` loads of ``--seconds`` each (the load of
``mqtt_import.py``: paho-mqtt clients, 100 records x 10 points of one device per
request, QoS 1), and the bench prints each load's rate, the hub's disk writes per
record (``/proc/PID/io``) and the database's size. Its peers write the chunk rows the
store writes for the same requests (encoded beforehand, untimed), ``clients x inflight``
requests per commit, WAL, ``synchronous=FULL``, 16 KiB pages, as many records per
segment as the hub stored in the matching load:

- keyed: one table keyed (device, point, t1), the layout the store had before schema
  9: every point's newest chunks in a leaf of their own once the table is large, so a
  commit dirties a page per point it appends to;
- arrival + fold: the store's layout since schema 9 (the best found): new rows in
  arrival order (rowid) with an index (device, point, t1), moved into the keyed table in
  key order, about 2,000 rows a transaction, once there are 20,000 (``series.py``).

Printed per load: hub records/s, then each peer's records/s at the same size, and the
last load's rate over the first (1.0: flat).

    .venv/bin/python bench/store_growth.py [--loads 6] [--seconds 6] [--clients 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.conftest import HubProcess

from headrace.store.sqlite import chunks
from headrace.store.sqlite.series import SeriesMixin
from mqtt_import import DEVICES, POINTS, RECORDS, client_main, run_processes, setup
from procstat import disk_writes

CYCLES_PER_LOAD = 1000  # a client's 50 requests per cycle: far more than a load sends
INFLIGHT = 16


def hub_loads(loads: int, seconds: float, clients: int) -> list[dict[str, float]]:
    out_rows = []
    with tempfile.TemporaryDirectory() as d:
        hub = HubProcess(Path(d) / "data", extra=["--set", "log.level=warning"])
        hub.start()
        try:
            user, password = setup(hub)
            assert hub.proc is not None
            for load in range(loads):
                w0 = disk_writes(hub.proc.pid)
                results = run_processes(
                    client_main,
                    lambda out: [
                        (i, hub.mqtt_port, user, password, seconds, INFLIGHT, out, clients)
                        for i in range(clients)
                    ],
                    seconds + 120,
                    {"first_cycle": (load + 1) * CYCLES_PER_LOAD},
                )
                records = sum(r["ok"] for r in results) * RECORDS
                failed = sum(r["failed"] for r in results)
                size = sum(f.stat().st_size for f in (Path(d) / "data").glob("headrace.db*"))
                row = {
                    "records": records,
                    "rate": records / max(r["elapsed"] for r in results),
                    "written": (disk_writes(hub.proc.pid) - w0) / max(records, 1),
                    "mb": size / 1e6,
                    "failed": failed,
                }
                out_rows.append(row)
                print(
                    f"  hub load {load}: {row['rate']:9,.0f} records/s, "
                    f"{row['written']:5,.0f} bytes written/record, db+wal {row['mb']:4.0f} MB"
                    + (f", {failed} failed" if failed else ""),
                    flush=True,
                )
        finally:
            hub.stop()
    return out_rows


def peer(layout: str, segments: list[int], group: int) -> list[float]:
    """records/s of each segment (``segments``: records) written by a minimal script."""
    rows_of = []  # the chunk rows of each device's request, cycled (times made new below)
    ts = [r * 1000 for r in range(RECORDS)]
    for dev in range(1, DEVICES + 1):
        rows_of.append(
            [
                chunks.encode(
                    dev, i, ts, [r * 0.5 + i for r in range(RECORDS)], [None] * RECORDS, 0
                )
                for i in range(POINTS)
            ]
        )
    cols = "device, point, t1, t0, n, tsb, vb"
    # the store's own settings (a tree before schema 9, run for a before figure, has none)
    fold_rows = getattr(SeriesMixin, "SETTLE_ROWS", 20_000)
    fold_step = getattr(SeriesMixin, "SETTLE_STEP", 2_000)
    rates = []
    with tempfile.TemporaryDirectory() as d:
        c = sqlite3.connect(Path(d) / "peer.db", isolation_level=None)
        c.execute("PRAGMA page_size=16384")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA cache_size=-65536")
        table = (
            "c (device INTEGER, point INTEGER, t1 INTEGER, t0 INTEGER, n INTEGER, tsb BLOB, vb BLOB"
        )
        c.execute(f"CREATE TABLE {table}, PRIMARY KEY (device, point, t1)) WITHOUT ROWID")
        target = "c"
        if layout == "arrival":
            c.execute(f"CREATE TABLE r (id INTEGER PRIMARY KEY, {table[3:]})")
            c.execute("CREATE INDEX r_key ON r (device, point, t1)")
            target = "r"
        insert = f"INSERT INTO {target} ({cols}) VALUES (?,?,?,?,?,?,?)"
        seq = 0
        recent = 0
        for records in segments:
            requests = records // RECORDS
            todo = []
            for k in range(requests):  # the rows, made before the clock starts
                s = seq + k
                shift = (s // DEVICES) * RECORDS * 1000
                todo.append(
                    [
                        (r[0], r[1], r[2] + shift, r[3] + shift, r[4], r[12], r[13])
                        for r in rows_of[s % DEVICES]
                    ]
                )
            seq += requests
            t0 = time.perf_counter()
            for i in range(0, len(todo), group):
                c.execute("BEGIN")
                c.executemany(insert, [r for req in todo[i : i + group] for r in req])
                c.execute("COMMIT")
                recent += sum(len(req) for req in todo[i : i + group])
                if layout == "arrival" and recent >= fold_rows:
                    start = (-1, -1)
                    while start is not None:
                        end = c.execute(
                            "SELECT device, point FROM r WHERE (device, point) >= (?, ?) "
                            "ORDER BY device, point LIMIT 1 OFFSET ?",
                            (*start, fold_step),
                        ).fetchone()
                        if end is None:
                            where, args, start = "(device, point) >= (?, ?)", start, None
                        else:
                            where, args = (
                                "(device, point) >= (?, ?) AND (device, point) < (?, ?)",
                                (*start, *end),
                            )
                            start = tuple(end)
                        c.execute("BEGIN")
                        c.execute(
                            f"INSERT INTO c ({cols}) SELECT {cols} FROM r WHERE {where} ORDER BY device, point, t1",
                            args,
                        )
                        c.execute(f"DELETE FROM r WHERE {where}", args)
                        c.execute("COMMIT")
                    recent = 0
            rates.append(records / (time.perf_counter() - t0))
        c.close()
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--clients", type=int, default=3)
    args = ap.parse_args()
    print(
        f"loads={args.loads} x {args.seconds:g}s clients={args.clients} inflight={INFLIGHT} "
        f"batch={RECORDS}x{POINTS} devices={DEVICES} cpus={os.cpu_count()}",
        flush=True,
    )
    hub = hub_loads(args.loads, args.seconds, args.clients)
    segments = [int(h["records"]) for h in hub]
    group = args.clients * INFLIGHT
    keyed = peer("keyed", segments, group)
    arrival = peer("arrival", segments, group)
    print(
        f"{'load':>4} {'records':>9} {'hub rec/s':>10} {'keyed rec/s':>12} {'arrival+fold rec/s':>19} {'hub B/rec':>9} {'hub MB':>7}"
    )
    for i, h in enumerate(hub):
        print(
            f"{i:>4} {h['records']:>9,.0f} {h['rate']:>10,.0f} {keyed[i]:>12,.0f} {arrival[i]:>19,.0f} {h['written']:>9,.0f} {h['mb']:>7.0f}"
        )

    def flat(xs: list[float]) -> str:
        later = statistics.median(xs[len(xs) // 2 :])
        return f"{later / xs[0]:.2f}"

    print(
        f"later loads (median of the second half) over the first: hub {flat([h['rate'] for h in hub])}, "
        f"keyed {flat(keyed)}, arrival+fold {flat(arrival)}   (1.00: flat)"
    )
    print(
        f"hub over the arrival+fold peer at the last load: {hub[-1]['rate'] / arrival[-1]:.2f}x; "
        f"arrival+fold over keyed at the last load: {arrival[-1] / keyed[-1]:.2f}x"
    )


if __name__ == "__main__":
    main()
