"""Validation in one C pass or two: is compiling a thing model into msgspec types worth it?

The general path (``ingest/messages.py`` + ``model/validate.py``): msgspec decodes the
envelope (params kept raw), then the items with ``measurepoints: Any``, then one compiled
Python closure per value checks and normalizes it. The compiled path
(``model/fast.py``, ``CompiledModel.fast_measurepoints``): the model compiled into
msgspec types (``params: list[Item]`` whose ``measurepoints`` is a Struct with one typed
field per point, ranges as ``Meta`` constraints, unknown points forbidden), decoded in
one pass, so that Python only walks the decoded fields to build the sample rows. Both produce the same rows; printed: requests per CPU second of each for single-record requests (1 x 5 points) and big ones (100
records x 10 points), and the ratio.

    .venv/bin/python bench/compiled_validation.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from typing import Any

from headrace.ingest.messages import decode_envelope, decode_items
from headrace.model.types import ThingModel, TypeSpec
from headrace.model.validate import compile_model


def model_of(points: int) -> ThingModel:
    specs = [TypeSpec(id=f"p{i}", type="double") for i in range(points - 1)]
    specs.append(TypeSpec(id="status", type="int"))
    return ThingModel(id="m", measurepoints=specs)


def request(records: int, points: int, seq: int) -> bytes:
    params = [
        {
            "deviceKey": f"dev{r % 50}",
            "time": 1_600_000_000_000 + (seq * records + r) * 1000,
            "measurepoints": {
                **{f"p{i}": round(r * 0.5 + i + 0.25, 3) for i in range(points - 1)},
                "status": r % 3,
            },
        }
        for r in range(records)
    ]
    msg = {"id": str(seq), "version": "1.0", "method": "integration.measurepoint.post"}
    return json.dumps({**msg, "params": params}, separators=(",", ":")).encode()


def rows_today(payload: bytes, compiled: Any) -> list[tuple[Any, ...]]:
    env = decode_envelope(payload)
    items = decode_items(env.method, env.params)
    rows = []
    for item in items:
        values = compiled.check_measurepoints(item.measurepoints)
        ts = item.time
        for point, (value, quality) in values.items():
            rows.append((item.deviceKey, point, ts, value, quality))
    return rows


def rows_compiled(payload: bytes, compiled: Any) -> list[tuple[Any, ...]]:
    decoded = compiled.fast_measurepoints(payload)
    assert decoded is not None
    req, checked = decoded
    rows = []
    for item, values in zip(req.params, checked, strict=True):
        ts = item.time
        for point, (value, quality) in values.items():
            rows.append((item.deviceKey, point, ts, value, quality))
    return rows


def rate(fn: Any, payloads: list[bytes], seconds: float) -> float:
    """Requests per second of CPU time (``thread_time``: steadier than the wall clock on a
    shared machine)."""
    n = 0
    start = time.perf_counter()
    cpu = time.thread_time()
    while time.perf_counter() - start < seconds:
        for p in payloads:
            fn(p)
        n += len(payloads)
    return n / (time.thread_time() - cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(
        f"{'shape':<18}{'general req/CPU-s':>19}{'compiled req/CPU-s':>20}{'compiled/general':>18}"
    )
    for records, points in ((1, 5), (100, 10)):
        model = model_of(points)
        compiled = compile_model(model)
        payloads = [request(records, points, seq) for seq in range(200)]
        for p in payloads[:5]:  # the same rows (in model order, which these payloads use)
            assert rows_today(p, compiled) == rows_compiled(p, compiled)
        results = []
        for _ in range(5):  # alternating, medians
            results.append(
                (
                    rate(partial(rows_today, compiled=compiled), payloads, args.seconds),
                    rate(partial(rows_compiled, compiled=compiled), payloads, args.seconds),
                )
            )
        today = sorted(r[0] for r in results)[2]
        fast = sorted(r[1] for r in results)[2]
        shape = f"{records} x {points} points"
        print(f"{shape:<18}{today:>19,.0f}{fast:>20,.0f}{fast / today:>18.2f}")


if __name__ == "__main__":
    main()
