"""EnOS TSDB data service API v2.1 (data-out.md F) and the TSDB policy read (G).

Every call is ``POST /tsdb-service/v2.1/<path>?orgId=...`` with a JSON body and the
service account's ``apim-accesstoken`` (B.1), scoped to the account's organization:

| path | what |
|---|---|
| ``/ai`` | raw samples of AI (numeric) points |
| ``/ai-normalized`` | the last value of each minute, optionally aggregated (``avg(temp)``) per ``interval`` minutes |
| ``/di`` | state changes of DI (enum, bool, int) points |
| ``/raw`` | raw samples of any point, ``orderBy`` ``timestamp asc|desc`` |
| ``/generic`` | raw samples of any point |
| ``/latest`` | latest values (``?action=delete`` hides them, see ``state/latest_marks.py``) |
| ``/latest/filter`` | latest values of one point that pass an operator |

Reply: ``{"code": 0, "msg": "OK", "submsg": null, "data": {"items": [...], "pointer": ...}}``.
``pointer`` (ranged paths) is null on the last page, else a string to send back in the
body's ``pointer`` field for the next page. ``pageSize`` bounds the records of one point
of one device in a page, as the EnOS pages say. Errors: 80400 (a bad parameter, with a
message saying which), 80401 (an asset that is not the organization's), 80500 (ours).

Reads use only the storage protocol (``query_samples``, ``aggregate``, ``latest``);
normalized and DI series are derived from the raw samples here (``state/policies.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException

from ..errors import NotFound, TokenRejected
from ..model.validate import CompiledModel
from ..proto.enos import REPLY_NO_PERMISSION, TOKEN_EMPTY_PARAMETER, TOKEN_EXPIRED
from ..state.accounts import ServiceAccount
from ..state.registry import DeviceEntry
from ..store.base import Sample
from .services import Services, services

log = logging.getLogger("headrace.api.tsdb")

Req = Request[Any, Any, Any]

CODE_OK = 0
CODE_BAD_PARAMETER = 80400
CODE_NOT_AUTHORIZED = 80401
CODE_INTERNAL = 80500

MAX_DEVICE_POINTS = 3000  # devices x points
MAX_PAGE_ROWS = 640_000  # devices x points x pageSize
DEFAULT_PAGE_SIZE = 1000
MAX_BODY = 1024 * 1024
INT64_MAX = 2**63 - 1

AI_TYPES = ("int", "float", "double")
DI_TYPES = ("enum", "bool", "int")
AGG_FUNCTIONS = ("count", "avg", "sum", "max", "min", "first", "last")
MINUTE = 60_000

_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_LOGIC = re.compile(r"(count|avg|sum|max|min|first|last)\(([^()\s,]+)\)")
_enc = msgspec.json.Encoder()
_UTC_ZONE = ZoneInfo("UTC")


class TsdbError(Exception):
    """A call answered with an EnOS TSDB error code (HTTP 200 as EnOS, 500 for ours)."""

    def __init__(self, code: int, msg: str, status: int = 200):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def bad(msg: str) -> TsdbError:
    return TsdbError(CODE_BAD_PARAMETER, msg)


def envelope(
    code: int, msg: str, data: Any, submsg: str | None = None, status: int = 200
) -> Response[bytes]:
    body = {"code": code, "msg": msg, "submsg": submsg, "data": data}
    return Response(_enc.encode(body), status_code=status, media_type="application/json")


# -- the body's fields (EnOS samples send booleans and numbers as strings too) -----------


def _str(body: dict[str, Any], name: str, required: bool = False) -> str:
    v = body.get(name)
    if v is None or v == "":
        if required:
            raise bad(f"{name} is required")
        return ""
    if not isinstance(v, str):
        raise bad(f"{name} must be a string")
    return v


def _bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None or v == "":
        return default
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise bad(f"{name} must be true or false")


def _int(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None or v == "":
        return default
    if isinstance(v, str) and v.strip().lstrip("-").isdigit() and v.strip().isascii():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"{name} must be an integer")
    if not lo <= v <= hi:
        raise bad(f"{name} must be between {lo} and {hi}")
    return v


def _list(body: dict[str, Any], name: str) -> list[str]:
    text = _str(body, name, required=True)
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    if not out:
        raise bad(f"{name} is required")
    return out


# -- devices, points, times ------------------------------------------------------------


@dataclass(slots=True)
class Dev:
    entry: DeviceEntry
    model: CompiledModel
    model_id: str
    org_id: str
    tz: ZoneInfo

    @property
    def asset_id(self) -> str:
        return self.entry.device.assetId


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        return None


async def _devices(
    svc: Services, org_id: str, body: dict[str, Any], model_required: bool = False
) -> list[Dev]:
    model_id = _str(body, "modelId", required=model_required)
    out: list[Dev] = []
    reg = svc.registry
    for aid in _list(body, "assetIds"):
        e = reg.by_asset.get(aid)
        if e is None or e.device.orgId != org_id:
            raise TsdbError(
                CODE_NOT_AUTHORIZED,
                f"asset {aid!r} does not exist in organization {org_id!r} or is not authorized",
            )
        product = reg.products[e.device.productKey]
        if model_id and product.modelId != model_id:
            raise bad(f"asset {aid!r} is not of model {model_id!r}")
        compiled = reg.compiled(product.orgId, product.modelId)
        tz = _zone(product.timezone) or _UTC_ZONE
        if "timezone" in compiled.attributes:  # a device attribute wins over the product's
            attrs = await svc.store.attributes(e.id)
            if "timezone" in attrs:
                tz = _zone(attrs["timezone"][0]) or tz
        out.append(Dev(e, compiled, product.modelId, org_id, tz))
    return out


def _check_points(svc: Services, devs: list[Dev], names: list[str], kind: str) -> None:
    for d in devs:
        for n in names:
            spec = d.model.measurepoint_specs.get(n)
            if spec is None:
                raise bad(
                    f"measurepoint {n!r} is not in model {d.model_id!r} of asset {d.asset_id!r}"
                )
            if (
                kind == "ai"
                and spec.type not in AI_TYPES
                and not svc.policies.serves(d.org_id, d.model_id, n, "AI_RAW")
            ):
                raise bad(f"measurepoint {n!r} is {spec.type}, not an AI (numeric) point")
            if (
                kind == "ai_norm"
                and spec.type not in AI_TYPES
                and not svc.policies.serves(d.org_id, d.model_id, n, "AI_NORM")
            ):
                raise bad(f"measurepoint {n!r} is {spec.type}, not an AI (numeric) point")
            if (
                kind == "di"
                and spec.type not in DI_TYPES
                and not svc.policies.serves(d.org_id, d.model_id, n, "DI")
            ):
                raise bad(f"measurepoint {n!r} is {spec.type}, not a DI (enum, bool or int) point")


def _check_limits(devices: int, points: int, page_size: int | None) -> None:
    if devices * points > MAX_DEVICE_POINTS:
        raise bad(
            f"devices x points is {devices} x {points} = {devices * points}, over the limit of {MAX_DEVICE_POINTS}"
        )
    if page_size is not None and devices * points * page_size > MAX_PAGE_ROWS:
        raise bad(
            f"devices x points x pageSize is {devices} x {points} x {page_size} = "
            f"{devices * points * page_size}, over the limit of {MAX_PAGE_ROWS}"
        )


@dataclass(slots=True)
class TimeRange:
    local: bool
    start: datetime
    end: datetime

    def bounds(self, tz: ZoneInfo) -> tuple[int, int]:
        if self.local:
            s, e = self.start.replace(tzinfo=tz), self.end.replace(tzinfo=tz)
        else:
            s, e = self.start, self.end
        return int(s.timestamp() * 1000), int(e.timestamp() * 1000)


def _time(text: str, name: str) -> tuple[bool, datetime]:
    if _LOCAL.fullmatch(text):
        try:
            return True, datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise bad(f"{name} {text!r} is not a valid date and time") from None
    if _UTC.fullmatch(text):
        try:
            return False, datetime.fromisoformat(text)
        except ValueError:
            raise bad(f"{name} {text!r} is not a valid date and time") from None
    raise bad(
        f"{name} {text!r} must be local time YYYY-MM-DD HH:MM:SS or UTC with an offset "
        "such as 2019-06-01T00:00:00+08:00"
    )


def _range(body: dict[str, Any]) -> TimeRange:
    ls, s = _time(_str(body, "startTime", required=True), "startTime")
    le, e = _time(_str(body, "endTime", required=True), "endTime")
    if ls != le:
        raise bad("endTime must have the same format as startTime")
    if (e - s) <= timedelta(0):
        raise bad("endTime must be after startTime")
    return TimeRange(ls, s, e)


class LocalTime:
    """``localtime`` of a timestamp in a device's zone, as ``localTimeFormat`` (0: no
    zone, ``2019-06-11 18:35:12``; 1: ``2019-06-11T18:35:12+08:00``) and
    ``localTimeAccuracy`` (milliseconds) ask. One per request, with a cache: the devices
    of a query mostly share their timestamps."""

    __slots__ = ("_cache", "accuracy", "fmt")

    def __init__(self, fmt: int, accuracy: bool):
        self.fmt = fmt
        self.accuracy = accuracy
        self._cache: dict[tuple[int, ZoneInfo], str] = {}

    def __call__(self, ts: int, tz: ZoneInfo) -> str:
        key = (ts, tz)
        text = self._cache.get(key)
        if text is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            text = self._cache[key] = self._format(ts, tz)
        return text

    def _format(self, ts: int, tz: ZoneInfo) -> str:
        dt = datetime.fromtimestamp(ts // 1000, tz)
        sep = " " if self.fmt == 0 else "T"
        text = (
            f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}{sep}"
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        )
        if self.accuracy:
            text += f".{ts % 1000:03d}"
        if self.fmt == 1:
            off = dt.utcoffset() or timedelta(0)
            minutes = int(off.total_seconds()) // 60
            sign = "+" if minutes >= 0 else "-"
            minutes = abs(minutes)
            text += f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
        return text


def _local_time(body: dict[str, Any]) -> LocalTime:
    fmt = _int(body, "localTimeFormat", 0, 0, 1)
    return LocalTime(fmt or 0, _bool(body, "localTimeAccuracy"))


def _out(model: CompiledModel, point: str, value: Any) -> Any:
    spec = model.measurepoint_specs.get(point)
    if spec is not None and spec.type == "bool" and isinstance(value, int):
        return bool(value)
    return value


# -- the pointer (paging) -------------------------------------------------------------


def _fingerprint(path: str, body: dict[str, Any]) -> str:
    keys = (
        "assetIds",
        "pointIds",
        "pointIdsWithLogic",
        "startTime",
        "endTime",
        "interval",
        "orderBy",
        "boundaryType",
    )
    text = path + "\x00" + "\x00".join(str(body.get(k, "")) for k in keys)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_pointer(fp: str, cursors: dict[str, Any]) -> str | None:
    if not cursors:
        return None
    raw = _enc.encode({"q": fp, "c": cursors})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_pointer(body: dict[str, Any], fp: str) -> dict[str, Any] | None:
    text = _str(body, "pointer")
    if not text:
        return None
    try:
        d = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(d, dict) or not isinstance(d.get("c"), dict):
            raise ValueError
    except (ValueError, msgspec.DecodeError):
        raise bad("pointer is not one this service returned") from None
    if d.get("q") != fp:
        raise bad("pointer belongs to another query (its assets, points or times differ)")
    cursors: dict[str, Any] = d["c"]
    for cur in cursors.values():  # as _page, _sampled and _normalized wrote them
        ok = (type(cur) is int) or (
            isinstance(cur, list)
            and len(cur) in (2, 3)
            and type(cur[0]) is int
            and isinstance(cur[1], str)
            and (len(cur) == 2 or isinstance(cur[2], dict))
        )
        if not ok:
            raise bad("pointer is not one this service returned")
    return cursors


# -- item formats -----------------------------------------------------------------------


@dataclass(slots=True)
class Series:
    """What one device answered for one page: rows as (point key, ts, value, quality)."""

    dev: Dev
    rows: list[tuple[str, int, Any, int | None]]


def _items(
    series: Iterable[Series],
    item_format: int,
    local: LocalTime | None,
    with_quality: bool,
    keys: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The EnOS item formats: 0 one item per sample, 1 the points of one timestamp
    merged, 2 columns per device and point."""
    items: list[dict[str, Any]] = []
    for s in series:
        aid, tz = s.dev.asset_id, s.dev.tz
        if item_format == 2:
            cols: dict[str, dict[str, Any]] = {}
            for key in keys or []:
                cols[key] = _column(aid, key, with_quality)
            for key, ts, v, q in s.rows:
                c = cols.get(key)
                if c is None:
                    c = cols[key] = _column(aid, key, with_quality)
                c["timestamp"].append(ts)
                c["value"].append(v)
                if local is not None:
                    c["localTime"].append(local(ts, tz))
                if with_quality:
                    c["dataQuality"].append(q)
            items.extend(c for c in cols.values() if c["timestamp"])
        elif item_format == 1:
            cur: dict[str, Any] | None = None
            for key, ts, v, q in s.rows:
                if cur is None or cur["timestamp"] != ts:
                    cur = {"assetId": aid, "timestamp": ts}
                    if local is not None:
                        cur["localtime"] = local(ts, tz)
                    if with_quality:
                        cur["quality"] = {}
                    items.append(cur)
                cur[key] = v
                if with_quality:
                    cur["quality"][key] = q
        else:
            for key, ts, v, q in s.rows:
                item: dict[str, Any] = {"assetId": aid, "timestamp": ts}
                if local is not None:
                    item["localtime"] = local(ts, tz)
                item[key] = v
                if with_quality:
                    item["quality"] = q
                items.append(item)
    return items


def _column(aid: str, key: str, with_quality: bool) -> dict[str, Any]:
    c: dict[str, Any] = {
        "assetId": aid,
        "pointId": key,
        "localTime": [],
        "timestamp": [],
        "value": [],
    }
    if with_quality:
        c["dataQuality"] = []
    return c


def _item_format(body: dict[str, Any]) -> int:
    return _int(body, "itemFormat", 0, 0, 2) or 0


# -- the calls ---------------------------------------------------------------------------


Handler = Callable[[Services, ServiceAccount, dict[str, Any], Req], Any]


async def _run(request: Req, handler: Handler) -> Response[bytes]:
    svc = services(request)
    token = request.headers.get("apim-accesstoken")
    try:
        acc = svc.accounts.authenticate(token)
    except TokenRejected as e:
        code = (
            TOKEN_EXPIRED
            if e.expired
            else TOKEN_EMPTY_PARAMETER
            if not token
            else REPLY_NO_PERMISSION
        )
        return envelope(code, e.message, None, status=401)
    try:
        org_id = request.query_params.get("orgId", "")
        if not org_id:
            raise bad("query parameter orgId is required")
        if org_id != acc.orgId:
            raise TsdbError(
                CODE_NOT_AUTHORIZED,
                f"the service account has no permission for organization {org_id!r}",
            )
        try:
            raw = await request.body()
        except HTTPException:
            raise bad(f"the request body exceeds {MAX_BODY} bytes") from None
        try:
            body = msgspec.json.decode(raw) if raw.strip() else {}
        except (msgspec.DecodeError, RecursionError):
            raise bad("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad("the request body must be a JSON object")
        data = await handler(svc, acc, body, request)
    except TsdbError as e:
        return envelope(e.code, e.msg, None, status=e.status)
    except NotFound as e:
        return envelope(CODE_NOT_AUTHORIZED, e.message, None)
    except Exception:
        log.exception("TSDB call failed", extra={"path": request.url.path})
        return envelope(CODE_INTERNAL, "internal error; see the server log", None, status=500)
    return envelope(CODE_OK, "OK", data, submsg="" if data is None else None)


async def _raw_like(
    svc: Services, acc: ServiceAccount, body: dict[str, Any], request: Req, kind: str
) -> dict[str, Any]:
    devs = await _devices(svc, acc.orgId, body)
    points = _list(body, "pointIds")
    _check_points(svc, devs, points, kind)
    page_size = _int(body, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_ROWS)
    assert page_size is not None
    _check_limits(len(devs), len(points), page_size)
    rng = _range(body)
    desc = False
    if kind == "raw":
        order = " ".join(_str(body, "orderBy").lower().split()) or "timestamp asc"
        if order not in ("timestamp asc", "timestamp desc"):
            raise bad("orderBy must be 'timestamp asc' or 'timestamp desc'")
        desc = order == "timestamp desc"
    boundary = _str(body, "boundaryType").lower() or "inside"
    if boundary not in ("inside", "outside", "interpolated", "sample"):
        raise bad("boundaryType must be inside, outside, interpolated or sample")
    interval = _int(body, "interval", 60, 1, 86_400) or 60
    interpolation = _str(body, "interpolation").lower() or "linear"
    if interpolation not in ("linear", "previous"):
        raise bad("interpolation must be linear or previous")
    if boundary in ("interpolated", "sample") and desc:
        raise bad(f"boundaryType {boundary} needs orderBy 'timestamp asc'")
    fp = _fingerprint(request.url.path, body)
    prior = _decode_pointer(body, fp)
    with_quality = _bool(body, "withQuality")
    item_format = _item_format(body)
    local = _local_time(body)
    store = svc.store

    async def one(d: Dev) -> tuple[Series, Any]:
        start, end = rng.bounds(d.tz)
        if prior is not None:
            if d.asset_id not in prior:
                return Series(d, []), None  # done on an earlier page
            cur = prior[d.asset_id]
            if not isinstance(cur, list):
                raise bad("pointer is not one this service returned")
        else:
            cur = None
        if boundary == "sample":
            return await _sampled(
                store, d, points, start, end, page_size, interval * 1000, interpolation, cur
            )
        state = cur[2] if kind == "di" and cur is not None else {}
        keep = _changes(state) if kind == "di" else None
        after = (int(cur[0]), str(cur[1])) if cur is not None else None
        rows, nxt = await _page(store, d, points, start, end, page_size, desc, after, keep)
        if boundary != "inside":
            first_page, last_page = cur is None, nxt is None
            rows = await _boundaries(
                store,
                d,
                points,
                start,
                end,
                rows,
                boundary,
                interpolation,
                first_page,
                last_page,
                desc,
            )
        out = [(s.point, s.ts, _out(d.model, s.point, s.value), s.quality) for s in rows]
        if nxt is not None and kind == "di":
            nxt = [nxt[0], nxt[1], state]
        return Series(d, out), nxt

    results = await asyncio.gather(*(one(d) for d in devs))
    cursors = {s.dev.asset_id: nxt for s, nxt in results if nxt is not None}
    return {
        "items": _items((s for s, _ in results), item_format, local, with_quality, points),
        "pointer": _encode_pointer(fp, cursors),
    }


def _changes(last: dict[str, Any]) -> Callable[[Sample], bool]:
    """DI: keep a sample only when its value differs from the point's previous one."""

    def keep(s: Sample) -> bool:
        if s.point in last and last[s.point] == s.value:
            return False
        last[s.point] = s.value
        return True

    return keep


async def _page(
    store: Any,
    d: Dev,
    points: list[str],
    start: int,
    end: int,
    page_size: int,
    desc: bool,
    after: tuple[int, str] | None,
    keep: Callable[[Sample], bool] | None,
) -> tuple[list[Sample], list[Any] | None]:
    """One page of a device: at most ``page_size`` samples of each point, in (ts, point)
    order, ending on a whole timestamp where it can; the cursor of the next page or None."""
    counts = dict.fromkeys(points, 0)
    out: list[Sample] = []
    cursor = after
    batch = page_size * len(points)
    while True:
        rows = await store.query_samples(d.entry.id, points, start, end, batch, desc, cursor)
        for s in rows:
            if counts[s.point] >= page_size:
                if keep is None and out and out[-1].ts == s.ts:
                    cut = len(out)
                    while cut > 0 and out[cut - 1].ts == s.ts:
                        cut -= 1
                    if cut > 0:  # end on the previous timestamp, whole
                        out = out[:cut]
                        cursor = (out[-1].ts, out[-1].point)
                assert cursor is not None
                return out, [cursor[0], cursor[1]]
            cursor = (s.ts, s.point)
            if keep is None or keep(s):
                out.append(s)
                counts[s.point] += 1
        if len(rows) < batch:
            return out, None


async def _neighbours(
    store: Any, d: Dev, point: str, t: int
) -> tuple[Sample | None, Sample | None]:
    """The last sample before ``t`` and the first at or after it."""
    before = await store.query_samples(d.entry.id, [point], -(2**62), t, 1, True, None)
    after = await store.query_samples(d.entry.id, [point], t, INT64_MAX, 1, False, None)
    return (before[0] if before else None), (after[0] if after else None)


def _value_at(t: int, before: Sample | None, after: Sample | None, method: str) -> Any:
    if after is not None and after.ts == t:
        return after.value
    if before is None:
        return None
    if method == "previous" or after is None:
        return before.value if method == "previous" else None
    bv, av = before.value, after.value
    if (
        isinstance(bv, bool)
        or isinstance(av, bool)
        or not isinstance(bv, (int, float))
        or not isinstance(av, (int, float))
    ):
        return bv  # not numeric: step
    return bv + (av - bv) * (t - before.ts) / (after.ts - before.ts)


async def _boundaries(
    store: Any,
    d: Dev,
    points: list[str],
    start: int,
    end: int,
    rows: list[Sample],
    boundary: str,
    method: str,
    first_page: bool,
    last_page: bool,
    desc: bool,
) -> list[Sample]:
    """``outside``: the sample before ``start`` and the first at or after ``end`` of each
    point; ``interpolated``: values at ``start`` and ``end`` themselves."""
    head: list[Sample] = []
    tail: list[Sample] = []
    for p in points:
        if first_page:
            b, a = await _neighbours(store, d, p, start)
            if boundary == "outside" and b is not None:
                head.append(b)
            elif boundary == "interpolated" and (a is None or a.ts != start):
                v = _value_at(start, b, a, method)
                if v is not None:
                    head.append(Sample(p, start, v, None, 0))
        if last_page:
            b, a = await _neighbours(store, d, p, end)
            if boundary == "outside" and a is not None:
                tail.append(a)
            elif boundary == "interpolated":
                v = _value_at(end, b, a, method)
                if v is not None:
                    tail.append(Sample(p, end, v, None, 0))
    key = (lambda s: (s.ts, s.point)) if not desc else (lambda s: (-s.ts, s.point))
    head.sort(key=key)
    tail.sort(key=key)
    if desc:  # newest first: what lies after the range comes first
        return tail + rows + head
    return head + rows + tail


async def _sampled(
    store: Any,
    d: Dev,
    points: list[str],
    start: int,
    end: int,
    page_size: int,
    step: int,
    method: str,
    cur: Any,
) -> tuple[Series, Any]:
    """``boundaryType: sample``: values every ``interval`` seconds from ``start``,
    interpolated (``linear`` or ``previous``) from the raw samples around them."""
    g0 = int(cur[0]) if cur is not None else start
    g1 = min(end, g0 + page_size * step)
    grid = range(g0, g1, step)
    rows: list[tuple[str, int, Any, int | None]] = []
    for p in points:
        before, _ = await _neighbours(store, d, p, g0)
        inside: list[Sample] = []
        after_key: tuple[int, str] | None = None
        while True:
            got = await store.query_samples(d.entry.id, [p], g0, g1, 10_000, False, after_key)
            inside += got
            if len(got) < 10_000:
                break
            after_key = (got[-1].ts, got[-1].point)
        _, nxt = await _neighbours(store, d, p, g1)
        samples = (
            ([before] if before is not None else []) + inside + ([nxt] if nxt is not None else [])
        )
        i = 0
        for t in grid:
            while i + 1 < len(samples) and samples[i + 1].ts <= t:
                i += 1
            b = samples[i] if samples and samples[i].ts <= t else None
            a = next((s for s in samples[i:] if s.ts >= t), None)
            v = _value_at(t, b, a, method)
            if v is not None:
                rows.append((p, t, _out(d.model, p, v), None))
    rows.sort(key=lambda r: (r[1], r[0]))
    return Series(d, rows), ([g1, ""] if g1 < end else None)


async def _normalized(
    svc: Services, acc: ServiceAccount, body: dict[str, Any], request: Req
) -> dict[str, Any]:
    devs = await _devices(svc, acc.orgId, body)
    interval = _int(body, "interval", None, 0, 1440)
    if interval is None:
        raise bad("interval is required (minutes, 0 to 1440)")
    logic: list[tuple[str, str | None, str]] = []  # (key, fn, point)
    for part in _list(body, "pointIdsWithLogic"):
        m = _LOGIC.fullmatch(part)
        if m is not None:
            logic.append((part, m.group(1), m.group(2)))
        elif "(" in part:
            raise bad(f"{part!r}: the functions are {', '.join(AGG_FUNCTIONS)}, as avg(pointId)")
        else:
            logic.append((part, None, part))
    if interval == 0 and any(fn for _, fn, _ in logic):
        raise bad("interval 0 takes measurepoints without aggregation logic")
    if interval > 0 and any(fn is None for _, fn, _ in logic):
        raise bad("an interval over 0 needs aggregation logic for every point, as avg(pointId)")
    points = list(dict.fromkeys(p for _, _, p in logic))
    _check_points(svc, devs, points, "ai_norm")
    page_size = _int(body, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_ROWS)
    assert page_size is not None
    _check_limits(len(devs), len(logic), page_size)
    rng = _range(body)
    fp = _fingerprint(request.url.path, body)
    prior = _decode_pointer(body, fp)
    item_format = _item_format(body)
    local = _local_time(body)
    bucket = (interval or 1) * MINUTE

    async def one(d: Dev) -> tuple[Series, Any]:
        start, end = rng.bounds(d.tz)
        s0 = -(-start // MINUTE) * MINUTE  # normalized records sit on whole minutes
        e0 = -(-end // MINUTE) * MINUTE
        if prior is not None:
            if d.asset_id not in prior:
                return Series(d, []), None
            if type(prior[d.asset_id]) is not int:
                raise bad("pointer is not one this service returned")
            cur = prior[d.asset_id]
        else:
            cur = s0
        rows: list[tuple[str, int, Any, str | None, str]] = []
        chunk_end = cur
        for _ in range(50):  # skip empty stretches, within reason
            if cur >= e0:
                break
            chunk_end = min(e0, cur + page_size * bucket)
            minutes = await svc.store.aggregate(d.entry.id, points, cur, chunk_end, MINUTE, "last")
            rows = _aggregate_minutes(minutes, logic, cur, bucket, interval)
            cur = chunk_end
            if rows:
                break
        out: list[tuple[str, int, Any, int | None]] = [
            (k, t, _out(d.model, p, v) if fn in (None, "first", "last", "min", "max") else v, None)
            for k, t, v, fn, p in rows
        ]
        return Series(d, out), (chunk_end if chunk_end < e0 else None)

    results = await asyncio.gather(*(one(d) for d in devs))
    cursors = {s.dev.asset_id: nxt for s, nxt in results if nxt is not None}
    return {
        "items": _items(
            (s for s, _ in results), item_format, local, False, [k for k, _, _ in logic]
        ),
        "pointer": _encode_pointer(fp, cursors),
    }


def _aggregate_minutes(
    minutes: dict[str, list[tuple[int, Any]]],
    logic: list[tuple[str, str | None, str]],
    origin: int,
    bucket: int,
    interval: int,
) -> list[tuple[str, int, Any, str | None, str]]:
    """Normalized minutes -> records (key, ts, value, fn, point), in (ts, key) order."""
    out: list[tuple[str, int, Any, str | None, str]] = []
    for key, fn, p in logic:
        series = minutes.get(p, [])
        if interval == 0 or fn is None:
            out += [(key, t, v, fn, p) for t, v in series]
            continue
        groups: dict[int, list[Any]] = {}
        for t, v in series:
            groups.setdefault(origin + (t - origin) // bucket * bucket, []).append(v)
        for t, vs in groups.items():
            out.append((key, t, _reduce(fn, vs), fn, p))
    out.sort(key=lambda r: (r[1], r[0]))
    return out


def _reduce(fn: str, vs: list[Any]) -> Any:
    if fn == "count":
        return len(vs)
    if fn == "first":
        return vs[0]
    if fn == "last":
        return vs[-1]
    nums = [float(v) for v in vs if isinstance(v, (int, float))]
    if not nums:
        return None
    if fn == "avg":
        return sum(nums) / len(nums)
    if fn == "sum":
        return sum(nums)
    return max(nums) if fn == "max" else min(nums)


async def _latest_rows(
    svc: Services, devs: list[Dev], points: list[str], window: int | None
) -> list[Series]:
    marks = svc.latest_marks
    since = int(time.time() * 1000) - window * MINUTE if window is not None else None

    latest = await svc.store.latest_many([d.entry.id for d in devs], points)

    def one(d: Dev) -> Series:
        got = latest.get(d.entry.id, {})
        rows = []
        for p in points:
            s = got.get(p)
            if (
                s is None
                or marks.hidden(d.asset_id, p, s.ts)
                or (since is not None and s.ts < since)
            ):
                continue
            rows.append((p, s.ts, _out(d.model, p, s.value), s.quality))
        rows.sort(key=lambda r: r[1])
        return Series(d, rows)

    return [one(d) for d in devs]


async def _latest(
    svc: Services, acc: ServiceAccount, body: dict[str, Any], request: Req
) -> dict[str, Any] | None:
    devs = await _devices(svc, acc.orgId, body)
    points = _list(body, "pointIds")
    _check_points(svc, devs, points, "raw")
    _check_limits(len(devs), len(points), None)
    if request.query_params.get("action", "") == "delete":
        latest = await svc.store.latest_many([d.entry.id for d in devs], points)
        for d in devs:
            got = latest.get(d.entry.id, {})
            await svc.latest_marks.mark(acc.orgId, d.asset_id, {p: s.ts for p, s in got.items()})
        return None
    if request.query_params.get("action", ""):
        raise bad("action must be delete (or absent)")
    window = _int(body, "timeWindow", None, 0, 10**9)
    local = _local_time(body) if _bool(body, "ifWithLocalTime") else None
    rows = await _latest_rows(svc, devs, points, window)
    return {"items": _items(rows, _item_format(body), local, False, points)}


_OPERATORS = ("eq", "nq", "gt", "lt", "ge", "le", "between", "in")


async def _latest_filter(
    svc: Services, acc: ServiceAccount, body: dict[str, Any], request: Req
) -> dict[str, Any]:
    devs = await _devices(svc, acc.orgId, body, model_required=True)
    point = _str(body, "pointId", required=True)
    _check_points(svc, devs, [point], "raw")
    _check_limits(len(devs), 1, None)
    op = _str(body, "operator", required=True).lower()
    if op not in _OPERATORS:
        raise bad(f"operator must be one of {', '.join(_OPERATORS)}")
    texts = [t.strip() for t in _str(body, "valueFilter", required=True).split(",")]
    if op == "between" and len(texts) != 2:
        raise bad("operator between takes two values in valueFilter, as 'a,b'")
    if op not in ("between", "in") and len(texts) != 1:
        raise bad(f"operator {op} takes one value in valueFilter")
    spec = devs[0].model.measurepoint_specs[point]
    wanted = [_filter_value(spec.type, t) for t in texts]
    window = _int(body, "timeWindow", None, 0, 10**9)
    local = _local_time(body) if _bool(body, "ifWithLocalTime") else None
    rows = await _latest_rows(svc, devs, [point], window)
    kept = [Series(s.dev, [r for r in s.rows if _passes(op, r[2], wanted)]) for s in rows]
    return {"items": _items(kept, _item_format(body), local, False, [point])}


def _filter_value(kind: str, text: str) -> Any:
    if kind == "bool":
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise bad(f"valueFilter {text!r} is not a bool (true, false, 1, 0)")
    if kind in ("int", "float", "double", "timestamp", "enum"):
        try:
            return float(text)
        except ValueError:
            if kind == "enum":
                return text
            raise bad(f"valueFilter {text!r} is not a number") from None
    return text


def _passes(op: str, value: Any, wanted: list[Any]) -> bool:
    try:
        if isinstance(wanted[0], float) and not isinstance(value, (int, float)):
            value = float(value)
        elif isinstance(wanted[0], str) and not isinstance(value, str):
            value = str(value)
        w = wanted[0]
        if op == "eq":
            return bool(value == w)
        if op == "nq":
            return bool(value != w)
        if op == "gt":
            return bool(value > w)
        if op == "lt":
            return bool(value < w)
        if op == "ge":
            return bool(value >= w)
        if op == "le":
            return bool(value <= w)
        if op == "between":
            return bool(wanted[0] <= value <= wanted[1])
        return value in wanted
    except (TypeError, ValueError):
        return False


# -- routes ------------------------------------------------------------------------------


def _route(path: str, handler: Handler, doc: str) -> Any:
    async def route(request: Req) -> Response[bytes]:
        return await _run(request, handler)

    route.__doc__ = doc
    route.__name__ = "tsdb_" + (path.strip("/").replace("/", "_").replace("-", "_") or "root")
    return post(path, request_max_body_size=MAX_BODY, status_code=200, tags=["EnOS TSDB"])(route)


def _kind(kind: str) -> Handler:
    async def handler(
        svc: Services, acc: ServiceAccount, body: dict[str, Any], request: Req
    ) -> Any:
        return await _raw_like(svc, acc, body, request, kind)

    return handler


tsdb_router = Router(
    path="/tsdb-service/v2.1",
    route_handlers=[
        _route("/ai", _kind("ai"), "Raw samples of AI (numeric) points."),
        _route(
            "/ai-normalized",
            _normalized,
            "Normalized (last value per minute) AI data, aggregated by interval.",
        ),
        _route("/di", _kind("di"), "State changes of DI points."),
        _route("/raw", _kind("raw"), "Raw samples of any point, orderBy timestamp asc|desc."),
        _route("/generic", _kind("generic"), "Raw samples of any (generic) point."),
        _route("/latest", _latest, "Latest values; ?action=delete hides them."),
        _route(
            "/latest/filter", _latest_filter, "Latest values of one point that pass an operator."
        ),
    ],
)


# -- TSDB policy read (G) -----------------------------------------------------------------


@get("/policies/{policy_id:str}", tags=["EnOS TSDB"])
async def tsdb_policy(request: Req, policy_id: str) -> Response[bytes]:
    """A storage policy in the EnOS shape: ``{policyId, policyName, policyType, retention,
    models: [{modelId, points}]}``."""

    async def handler(svc: Services, acc: ServiceAccount, body: dict[str, Any], req: Req) -> Any:
        p = svc.policies.policies.get(policy_id)
        if p is None or p.orgId != acc.orgId:
            raise bad(f"storage policy {policy_id!r} not found in organization {acc.orgId!r}")
        return {
            "policyId": p.policyId,
            "policyName": p.policyName,
            "policyType": p.policyType,
            "retention": p.retention,
            "models": [{"modelId": m.modelId, "points": list(m.points)} for m in p.models],
        }

    return await _run(request, handler)


tsdb_policy_router = Router(path="/tsdb-policy/v2.0", route_handlers=[tsdb_policy])
