"""A thing model compiled into msgspec types: a measurepoint request decoded and its
values type-checked in one pass in C.

``compile_measurepoint_request`` makes, for one model, a decoder of a whole
``integration.measurepoint.post`` request (envelope, items, and each item's
``measurepoints`` as a Struct with one typed field per point: ranges and lengths as
``msgspec.Meta`` constraints, unknown points forbidden). Python is left only what
msgspec cannot express, through the model's own validators (``validate.py``): dates,
enums (normalized keys), arrays, structs and points with quality.

It is a fast path, never a second set of rules: it answers only when it is sure the
request is valid and its values are what ``validate.py`` makes of them; for anything
else (a decode or type error, a value the Python validators refuse, an int sent to a
bool point, an integral float sent to an int point ...) it returns None and the pipeline
takes the general path, whose errors (codes, messages, paths) are unchanged.
``tests/unit/test_model_fast.py`` checks that both agree on generated models and payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress, repeat
from operator import attrgetter, is_not
from typing import Annotated, Any

import msgspec

from .types import DEFAULT_STRING_MAX, ThingModel, TypeSpec

FLOAT_MAX = 1.7976931348623157e308  # 1e999 decodes to inf, which fails the bound
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_FILE_URI_LENGTH = 2048  # as validate.MAX_FILE_URI_LENGTH (pinned by a test)

Checked = tuple[tuple[str, ...], tuple[Any, ...], tuple[int | None, ...] | None]
"""One item's checked measurepoints: (point ids, normalized values, qualities or None when
no point has one), as ``CompiledModel.check_measurepoints`` makes them, in the model's
order. An item carrying every point of a model whose points msgspec checks alone gets the
model's one names tuple and msgspec's own values tuple (no copy)."""


def _typed(spec: TypeSpec) -> Any | None:
    """The msgspec type that accepts exactly the values the model's validator passes
    unchanged, or None when Python must check the point."""
    if spec.withQuality:
        return None
    t = spec.type
    if t in ("float", "double"):
        return Annotated[float, msgspec.Meta(ge=-FLOAT_MAX, le=FLOAT_MAX)]
    if t == "int":
        return Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
    if t == "timestamp":
        return Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    if t == "bool":
        return bool
    if t == "string":
        limit = spec.maxLength if spec.maxLength is not None else DEFAULT_STRING_MAX
        return Annotated[str, msgspec.Meta(max_length=limit)]
    if t == "file":
        return Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FILE_URI_LENGTH)]
    return None


_measurepoints_of = attrgetter("measurepoints")


def _request_decoder(points: Any) -> Callable[[bytes], Any]:
    """The decoder of a whole measurepoint request whose items' measurepoints are
    ``points``."""
    item = msgspec.defstruct(
        "MeasurepointItem",
        [
            ("measurepoints", points),
            ("deviceKey", str | None, None),
            ("productKey", str | None, None),
            ("assetId", str | None, None),
            ("time", int | None, None),
        ],
        kw_only=True,
        gc=False,
    )
    request = msgspec.defstruct(
        "MeasurepointRequest",
        [
            ("method", str),
            ("params", list[item]),  # type: ignore[valid-type]
            ("id", Any, None),
            ("version", Any, None),
            ("files", Any, None),
            ("isRealtimeIntegration", Any, None),
        ],
    )
    return msgspec.json.Decoder(request).decode


def compile_measurepoint_request(
    model: ThingModel, validators: dict[str, Callable[[Any], tuple[Any, int | None]]]
) -> Callable[[bytes], tuple[Any, list[Checked]] | None]:
    """A function ``payload -> (request, checked values per item)`` or None (not sure:
    take the general path). ``validators``: the model's compiled point validators."""
    names: list[str] = []
    checks: list[Callable[[Any], tuple[Any, int | None]] | None] = []
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, spec in enumerate(model.measurepoints):
        typed = _typed(spec)
        attr = f"f{i}"  # point ids may be Python keywords
        rename[attr] = spec.id
        fields.append((attr, typed if typed is not None else Any, msgspec.UNSET))
        names.append(spec.id)
        checks.append(None if typed is not None else validators[spec.id])
    points = msgspec.defstruct(
        f"Points_{model.id}", fields, forbid_unknown_fields=True, rename=rename, gc=False
    )
    # every point required: an item carrying all of them (a history import's usual shape)
    # decodes with no presence check left to Python
    every = msgspec.defstruct(
        f"AllPoints_{model.id}",
        [(attr, typ) for attr, typ, _ in fields],
        forbid_unknown_fields=True,
        rename=rename,
        gc=False,
    )
    decode = _request_decoder(points)
    decode_every = _request_decoder(every)
    astuple = msgspec.structs.astuple
    unset = msgspec.UNSET
    names_all = tuple(names)
    plan = list(zip(names, checks, strict=True))
    only_typed = all(c is None for c in checks)
    # the names tuple of each subset of points seen (by presence mask): shared by items
    subsets: dict[tuple[bool, ...], tuple[str, ...]] = {}
    # whether the last request carried every point in every item: then try that first
    last_every = [only_typed]

    def fast(payload: bytes) -> tuple[Any, list[Checked]] | None:
        if last_every[0]:
            try:
                req: Any = decode_every(payload)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                last_every[0] = False
            else:  # names and values of every item in C: one shared names tuple
                rows = map(astuple, map(_measurepoints_of, req.params))
                return req, list(zip(repeat(names_all), rows, repeat(None)))
        try:
            req = decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return None
        out: list[Checked] = []
        append = out.append
        partial = False
        try:
            for it in req.params:
                values = astuple(it.measurepoints)
                if only_typed:
                    if unset not in values:  # every point: the model's names, as decoded
                        append((names_all, values, None))
                        continue
                    partial = True
                    mask = tuple(map(is_not, values, repeat(unset)))
                    subset = subsets.get(mask)
                    if subset is None:
                        subset = subsets[mask] = tuple(compress(names_all, mask))
                    append((subset, tuple(compress(values, mask)), None))
                    continue
                ns: list[str] = []
                vs: list[Any] = []
                qs: list[int | None] = []
                for (name, check), value in zip(plan, values, strict=True):
                    if value is not unset:
                        ns.append(name)
                        if check is None:
                            vs.append(value)
                            qs.append(None)
                        else:
                            v, q = check(value)
                            vs.append(v)
                            qs.append(q)
                quals = None if qs.count(None) == len(qs) else tuple(qs)
                append((tuple(ns), tuple(vs), quals))
        except ValueError:  # ValueInvalid: the general path says which and why
            return None
        if only_typed and not partial:
            last_every[0] = True
        return req, out

    return fast
