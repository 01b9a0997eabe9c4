"""The store alone under small messages: what the hub's writer thread can take.

Writes single-record requests (1 record x 5 measurepoints, live data: each device's
times one second apart, never repeated) into ``SQLiteStore`` with ``synchronous=full``,
``--group`` requests merged into one ``write_batch`` (what the pipeline does with the
requests of one loop turn), several writes in flight (the engine's group commit), each
request with its message-log payload record as the hub writes it. ``--devices`` devices
in rotation: with as many devices as requests in flight, every request's samples are a
chunk row per point. Prints requests/s and the CPU time per request (every thread of
the process: the writer's and the generating loop's). As in the hub, the store's
background fold (plain rows of short runs into chunks) runs every second meanwhile, when
the store has one (``--no-fold``: not); at the end every plain row left is folded, and
the CPU per request with that fold is printed too.

    .venv/bin/python bench/store_small.py [--seconds 5] [--group 64] [--devices 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import msgspec

from headrace.store.base import WriteBatch
from headrace.store.sqlite.store import SQLiteStore

POINTS = ("voltage", "current", "power", "temp", "status")
_enc = msgspec.json.Encoder()


def request(device: int, when: int, seq: int) -> WriteBatch:
    b = WriteBatch(source=1)
    values = tuple(230.1 + i + seq % 7 for i in range(len(POINTS)))
    b.measurepoints.append((device, when, POINTS, values, None))
    doc = {"topic": "t", "size": 260, "requestId": str(seq), "items": 1, "code": 200}
    b.log.append(("ch", when, "payload", _enc.encode(doc)))
    return b


def merged(batches: list[WriteBatch]) -> WriteBatch:
    out = WriteBatch(source=1)
    for b in batches:
        out.measurepoints.extend(b.measurepoints)
        out.log.extend(b.log)
    return out


async def run(args: argparse.Namespace, path: Path) -> tuple[float, float, int, float]:
    store = SQLiteStore(path, synchronous="full")
    store.start()
    seq = 0
    t0 = 1_600_000_000_000

    def next_write() -> WriteBatch:
        nonlocal seq
        out = []
        for _ in range(args.group):
            out.append(request(seq % args.devices, t0 + (seq // args.devices) * 1000, seq))
            seq += 1
        return merged(out)

    async def writer(stop: float) -> None:
        while time.perf_counter() < stop:
            await store.write_batch(next_write())

    folded = 0

    async def folder(stop: float) -> None:  # what Retention's fold task does in the hub
        nonlocal folded
        fold = getattr(store, "fold", None)
        while fold is not None and args.fold and time.perf_counter() < stop:
            await asyncio.sleep(1.0)
            folded += await fold()

    await store.write_batch(next_write())  # warm: every device's first chunk
    seq0 = seq
    cpu0 = time.process_time()
    started = time.perf_counter()
    stop = started + args.seconds
    await asyncio.gather(folder(stop), *(writer(stop) for _ in range(args.inflight)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    done = seq - seq0
    # what is left as plain rows, folded now: its CPU is part of the cost of the requests
    fold_cpu = time.process_time()
    fold = getattr(store, "fold", None)
    if fold is not None and args.fold:
        folded += await fold(everything=True)
    fold_cpu = time.process_time() - fold_cpu
    store.close()
    return done / elapsed, cpu / done * 1e6, folded, (cpu + fold_cpu) / done * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--group", type=int, default=64, help="requests per merged write")
    ap.add_argument("--inflight", type=int, default=4, help="merged writes in flight")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--no-fold", dest="fold", action="store_false", help="no background fold")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rate, cpu, folded, total = asyncio.run(run(args, Path(d) / "store.db"))
    print(
        f"cpus={os.cpu_count()} group={args.group} inflight={args.inflight} "
        f"devices={args.devices} synchronous=full, 1 record x {len(POINTS)} points per request"
    )
    print(
        f"store alone: {rate:,.0f} requests/s   {cpu:.1f} us CPU/request   "
        f"plain rows folded: {folded:,}"
    )
    print(f"with the fold of every plain row left at the end: {total:.1f} us CPU/request")


if __name__ == "__main__":
    main()
