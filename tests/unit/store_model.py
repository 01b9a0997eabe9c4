"""The plain model the store's aggregates are checked against."""

from __future__ import annotations

from typing import Any

_FUNCTIONS: dict[str, Any] = {
    "min": min,
    "max": max,
    "sum": sum,
    "count": len,
    "avg": lambda v: sum(v) / len(v),
    "first": lambda v: v[0],
    "last": lambda v: v[-1],
}


def model_aggregate(
    series: dict[int, Any], start: int, end: int, interval: int, fn: str
) -> list[tuple[int, Any]]:
    """``fn`` over each ``interval`` from ``start`` (up to ``end``) of ``{time: value}``:
    the (bucket start, value) of every bucket that holds a sample."""
    buckets: dict[int, list[Any]] = {}
    for t in sorted(series):
        if start <= t < end:
            buckets.setdefault((t - start) // interval, []).append(series[t])
    f = _FUNCTIONS[fn]
    return [(start + b * interval, f(v)) for b, v in sorted(buckets.items())]
