"""The compiled msgspec path of measurepoint requests (model/fast.py) agrees with the
general path (ingest/messages.py + model/validate.py) on generated models and payloads:
when it answers, the request decodes and validates the same way to the same values
(types included); when the general path refuses anything, it does not answer."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.ingest.messages import decode_envelope, decode_items
from headrace.model import fast
from headrace.model.types import ThingModel, TypeSpec
from headrace.model.validate import MAX_FILE_URI_LENGTH, ValueInvalid, compile_model
from tests.unit.test_model_validate_props import (
    SLOW,
    identifiers,
    json_values,
    same,
    thing_models,
    type_specs,
    values_for,
)

MP = "integration.measurepoint.post"
MANY = settings(SLOW, max_examples=300)


def general(payload: bytes, model: Any) -> list[dict[str, Any]] | None:
    """The values of each item as the general path makes them; None if it refuses."""
    try:
        env = decode_envelope(payload)
        if env.method != MP or not env.params:
            return None
        items = decode_items(MP, env.params)
        if not items:
            return None
        return [model.check_measurepoints(i.measurepoints) for i in items]  # type: ignore[union-attr]
    except (msgspec.DecodeError, msgspec.ValidationError, ValueInvalid):
        return None


def compiled_path(payload: bytes, model: Any) -> list[dict[str, Any]] | None:
    decoded = model.fast_measurepoints(payload)
    if decoded is None:
        return None
    req, checked = decoded
    if req.method != MP or not req.params:
        return None
    out = []
    for names, values, quals in checked:  # as the general path's {point: (value, quality)}
        assert len(names) == len(values) and (quals is None or len(quals) == len(names))
        assert quals is None or any(q is not None for q in quals)  # None: no quality at all
        qs = quals if quals is not None else (None,) * len(names)
        out.append({n: (v, q) for n, v, q in zip(names, values, qs, strict=True)})
    return out


def agree(model: Any, payload: bytes) -> bool:
    """Both agree, and whether the compiled path answered."""
    want = general(payload, model)
    got = compiled_path(payload, model)
    if got is not None:
        assert want is not None, payload
        assert same(got, want), (payload, got, want)
    return got is not None


def request(items: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps(
        {"id": "1", "version": "1.0", "method": MP, "params": items, **extra}
    ).encode()


@st.composite
def measurepoint_objects(draw: st.DrawFn, model: ThingModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in model.measurepoints:
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue
        out[spec.id] = draw(values_for(spec) if choice < 3 else json_values)
    if draw(st.integers(0, 9)) == 0:
        out[draw(identifiers)] = draw(json_values)  # perhaps not in the model
    return out


@MANY
@given(data=st.data(), model=thing_models)
def test_compiled_path_agrees_with_the_general_path(data: st.DataObject, model: ThingModel) -> None:
    compiled = compile_model(model)
    items = [
        {"deviceKey": "d", "time": data.draw(st.integers(0, 2**53)), "measurepoints": mp}
        for mp in data.draw(st.lists(measurepoint_objects(model), min_size=1, max_size=3))
    ]
    agree(compiled, request(items))


SIMPLE = ["int", "float", "double", "bool", "string", "timestamp", "file"]


@MANY
@given(
    data=st.data(),
    specs=st.lists(
        st.sampled_from(SIMPLE).flatmap(lambda k: type_specs(0, "measurepoint", k)),
        min_size=1,
        max_size=6,
        unique_by=lambda s: s.id,
    ),
)
def test_valid_values_of_simple_types_take_the_compiled_path(
    data: st.DataObject, specs: list[TypeSpec]
) -> None:
    """Values the validators pass unchanged are decoded by msgspec alone."""
    specs = [msgspec.structs.replace(s, withQuality=False) for s in specs]
    compiled = compile_model(ThingModel(id="m", measurepoints=specs))
    mp = {}
    for s in specs:
        value = data.draw(values_for(s))
        unchanged = compiled.measurepoints[s.id](value)[0]
        if not same(unchanged, value):  # normalized (0/1 for bool, 5.0 for int ...)
            continue
        if isinstance(value, int) and s.type in ("float", "double"):
            continue  # an int for a float point: normalized too (to float)
        mp[s.id] = value
    answered = agree(compiled, request([{"deviceKey": "d", "measurepoints": mp}]))
    assert answered


RAW_CASES = [
    # (measurepoints JSON text, -)
    ('{"i": 5.0}', True),  # an integral float for an int: the general path normalizes it
    ('{"b": 1}', True),  # 0/1 for a bool
    ('{"f": 1e999}', True),  # not finite
    ('{"f": -0}', True),
    ('{"f": 123456789012345678901234567890}', True),
    ('{"i": 9223372036854775808}', True),  # beyond int64
    ('{"i": -9223372036854775809}', True),
    ('{"t": -1}', True),
    ('{"s": ""}', True),
    ('{"file": ""}', True),
    ('{"i": 1, "i": 2}', True),  # duplicate keys
    ('{"i": true}', True),
    ('{"x": 1}', True),
    ("[]", True),
    ("null", True),
    ('{"f": 1.5, "i": -7, "b": false, "s": "\\u00e9\\ud83d\\ude00", "t": 0}', True),
]


@pytest.mark.parametrize(("points", "_"), RAW_CASES)
def test_edge_values_agree(points: str, _: bool) -> None:
    specs = [
        TypeSpec(id="i", type="int"),
        TypeSpec(id="f", type="double"),
        TypeSpec(id="b", type="bool"),
        TypeSpec(id="s", type="string", maxLength=3),
        TypeSpec(id="t", type="timestamp"),
        TypeSpec(id="file", type="file"),
    ]
    compiled = compile_model(ThingModel(id="m", measurepoints=specs))
    head = '{"method":"' + MP + '","id":1,"params":[{"deviceKey":"d","measurepoints":'
    payload = (head + points + "}]}").encode()
    agree(compiled, payload)


def test_request_shapes_the_compiled_path_leaves_to_the_general_one() -> None:
    compiled = compile_model(ThingModel(id="m", measurepoints=[TypeSpec(id="a", type="int")]))
    for payload in (
        b"{",
        b'{"method": 1, "params": []}',
        b'{"method": "%s"}' % MP.encode(),
        b'{"method": "%s", "params": {}}' % MP.encode(),
        b'{"method": "%s", "params": [{"measurepoints": {"a": 1}, "time": "x"}]}' % MP.encode(),
        b'{"method": "%s", "params": [{"deviceKey": 5, "measurepoints": {"a": 1}}]}' % MP.encode(),
    ):
        assert compiled.fast_measurepoints is not None
        assert compiled_path(payload, compiled) is None
        assert general(payload, compiled) is None


def test_point_ids_that_are_python_keywords() -> None:
    specs = [TypeSpec(id="class", type="int"), TypeSpec(id="None", type="double")]
    compiled = compile_model(ThingModel(id="m", measurepoints=specs))
    payload = request([{"deviceKey": "d", "measurepoints": {"class": 3, "None": 2.5}}])
    assert compiled_path(payload, compiled) == [{"class": (3, None), "None": (2.5, None)}]


def test_limits_are_the_validators() -> None:
    assert fast.MAX_FILE_URI_LENGTH == MAX_FILE_URI_LENGTH


def test_items_share_one_names_tuple_and_shapes_may_change() -> None:
    """Items carrying every point get the model's one names tuple (the store transposes
    such records in C); a request missing points after one that had all of them (the
    decoder tries the every-point type first then) is still decoded right, and back."""
    specs = [TypeSpec(id="a", type="int"), TypeSpec(id="b", type="double")]
    compiled = compile_model(ThingModel(id="m", measurepoints=specs))
    full = request([{"deviceKey": "d", "measurepoints": {"b": 2.5, "a": k}} for k in range(3)])
    part = request([{"deviceKey": "d", "measurepoints": {"b": 1.5}}, {"measurepoints": {"a": 1}}])
    assert compiled.fast_measurepoints is not None
    for payload in (full, part, part, full, full, part):
        decoded = compiled.fast_measurepoints(payload)
        assert decoded is not None
        checked = decoded[1]
        if payload is full:
            assert [c[1] for c in checked] == [(k, 2.5) for k in range(3)]
            assert all(c[0] is checked[0][0] and c[0] == ("a", "b") for c in checked)
            assert all(c[2] is None for c in checked)
        else:
            assert checked == [(("b",), (1.5,), None), (("a",), (1,), None)]
        assert agree(compiled, payload)
    bad = request([{"deviceKey": "d", "measurepoints": {"a": 1.5, "b": 1.0}}])  # a is an int
    assert compiled.fast_measurepoints(bad) is None and general(bad, compiled) is None
    assert agree(compiled, full)
