"""Where a noti backlog is read from: the per-enterprise queue rows, or the stream itself.

The question of issue 13: should an enterprise read the outbound stream through its own
cursor (events made from the records as they are pushed), or keep the per-enterprise
queue (events made once, at commit, and stored as push documents)? This measures the
read side of a backlog on a real SQLite store (synchronous=full), in one process:

- ``queue``: ``push_read`` pages of 1,000 rows (the documents as they are pushed);
- ``stream``: ``stream_read`` pages of 1,000 records, each decoded, filtered and mapped
  to its push document (``Deriver.record_events``), what a stream cursor per enterprise
  would do for every push (and again after every restart or redelivery);
- ``stream, other data``: the same when the enterprise wants 1 record in 10 (the stream
  holds every consumer's records; a queue holds only its enterprise's events).

    .venv/bin/python bench/noti_source.py [--records 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from headrace.model.types import Device, Product
from headrace.push.events import KV, Derived, Deriver
from headrace.state.registry import DeviceEntry, Registry
from headrace.store.base import WriteBatch
from headrace.store.sqlite.store import SQLiteStore
from headrace.stream import records as R

DEVICES = 100


async def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "h.db")
        store.start()
        reg = Registry(store)
        for pk in ("p", "other"):
            reg.products[pk] = Product(
                orgId="o", productKey=pk, productSecret="s", name=pk, modelId="m"
            )
        entries = {}
        for i in range(DEVICES):
            for pk in ("p", "other"):
                e = DeviceEntry(
                    len(entries) + 1,
                    Device(
                        orgId="o",
                        productKey=pk,
                        deviceKey=f"{pk}{i}",
                        assetId=f"{pk}A{i}",
                        deviceSecret="x",
                    ),
                )
                entries[e.id] = e
                reg.by_asset[e.device.assetId] = e
        builder = R.Builder(reg)
        deriver = Deriver(reg)
        all_wanted = lambda *a: True  # noqa: E731
        base = 1_700_000_000_000
        # n records of product p, and 9n of "other" interleaved (for the third figure)
        per = 100
        for mix in (False, True):
            for k in range(0, n, per):
                batch = WriteBatch(source=1)
                devs = []
                for r in range(per):
                    for j in range(10 if mix else 1):
                        pk = "p" if j == 0 else "other"
                        e = entries[1 + 2 * ((k + r) % DEVICES) + (0 if pk == "p" else 1)]
                        devs.append(e)
                        t = base + k + r
                        batch.measurepoints.append(
                            (e.id, t, ("t", "seq", "v"), (1.5, k + r, r * 0.5), None)
                        )
                rows = builder.batch_rows(batch, devs, None, base, all_wanted)
                if not mix:
                    out = Derived()
                    for _o, _k, doc in rows:
                        rec = R.decode(0, 0, doc)
                        ent = reg.by_asset[rec.assetId]
                        deriver.record_events(rec, ent, frozenset({KV}), out)
                    q = [("e", k + i + 1, base, ev.doc) for i, ev in enumerate(out.events)]
                    await store.push_write(q, [], [], stream=rows)
                else:
                    await store.stream_append(rows)
        head = store.stream_head()
        want = frozenset({KV})

        async def stream_pass(first: int, last: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            pos, got = first, 0
            while pos < last:
                rows = await store.stream_read(pos, 1000)
                if not rows:
                    break
                out = Derived()
                for seq, at, doc in rows:
                    if seq > last:
                        break
                    lean = R.decode_lean(seq, at, doc)
                    if lean.product != "p":
                        continue
                    rec = R.decode(seq, at, doc)
                    deriver.record_events(rec, reg.by_asset[rec.assetId], want, out)
                got += len(out.events)
                pos = rows[-1][0]
            return got, time.perf_counter() - t0

        # queue
        t0 = time.perf_counter()
        after, got = 0, 0
        while True:
            page = await store.push_read("e", after, 1000, 16 << 20)
            if not page:
                break
            got += len(page)
            after = page[-1][0]
        t_queue = time.perf_counter() - t0
        assert got == n, got
        got_s, t_stream = await stream_pass(0, n)  # the first n records: product p only
        assert got_s == n, got_s
        got_m, t_mixed = await stream_pass(n, head)  # then 1 in 10 is p's
        store.close()
        return {
            "queue": n / t_queue,
            "stream": got_s / t_stream,
            "mixed": got_m / t_mixed,
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    r = asyncio.run(run(args.records))
    load = os.getloadavg()
    print(
        f"noti backlog read side, {args.records:,} device_status_kv events; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f}"
    )
    print(f"  per-enterprise queue rows (push_read):          {r['queue']:>10,.0f} events/s")
    print(
        f"  stream records -> events (stream_read+derive):  {r['stream']:>10,.0f} events/s "
        f"({r['stream'] / r['queue']:.2f}x the queue)"
    )
    print(
        f"  the same, 1 record in 10 the enterprise's:      {r['mixed']:>10,.0f} events/s "
        f"({r['mixed'] / r['queue']:.2f}x the queue)"
    )


if __name__ == "__main__":
    main()
