"""Property tests of thing model checks and value validators (hypothesis).

- values drawn from a type's valid domain are accepted, and normalizing is idempotent;
- values of the other JSON kinds are refused with ValueInvalid, never another exception;
- arbitrary JSON fed to any validator returns or raises ValueInvalid, nothing else;
- generated valid models pass check_model and compile, also after a JSON round trip.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headrace.model.types import DEFAULT_STRING_MAX, EventSpec, ThingModel, TypeSpec
from headrace.model.validate import (
    MAX_STRUCT_DEPTH,
    ValueInvalid,
    check_model,
    compile_model,
    compile_spec,
    validate_value,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SCALARS = ["int", "float", "double", "bool", "string", "enum", "date", "timestamp", "file"]
SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- strategies: specs and models ----------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)

enum_maps = st.dictionaries(
    keys=st.one_of(
        st.integers(-1000, 1000).map(str),
        st.text(min_size=1, max_size=6),
        st.sampled_from(["07", "+1", "-0", "1.5", " 1"]),
    ),
    values=st.text(max_size=5),
    min_size=1,
    max_size=6,
)


@st.composite
def type_specs(
    draw: st.DrawFn, depth: int = 0, context: str = "measurepoint", kind: str | None = None
) -> TypeSpec:
    """A valid spec; ``depth`` is the number of enclosing struct levels."""
    nested_ok = depth < MAX_STRUCT_DEPTH
    if kind is None:
        kind = draw(st.sampled_from([*SCALARS, "array", *(["struct"] if nested_ok else [])]))
    kw: dict[str, Any] = {}
    element = kind
    if kind == "array":
        element = draw(st.sampled_from([*SCALARS, *(["struct"] if nested_ok else [])]))
        kw["items"] = element
    if element == "string" and draw(st.booleans()):
        kw["maxLength"] = draw(st.one_of(st.integers(1, 40), st.integers(1, 1_048_576)))
    if element == "enum":
        kw["enum"] = draw(enum_maps)
    if element == "struct":
        kw["fields"] = draw(
            st.lists(
                type_specs(depth + 1, "field"),
                min_size=1,
                max_size=max(1, 4 - depth),
                unique_by=lambda s: s.id,
            )
        )
    if context == "measurepoint":
        kw["withQuality"] = draw(st.booleans())
        if kind in ("bool", "int"):
            kw["flag"] = draw(st.sampled_from([None, "fault", "alert"]))
        kw["name"] = draw(st.sampled_from(["", "Display name"]))
    return TypeSpec(id=draw(identifiers), type=kind, **kw)


def spec_lists(context: str) -> st.SearchStrategy[list[TypeSpec]]:
    return st.lists(type_specs(0, context), max_size=5, unique_by=lambda s: s.id)


event_specs = st.builds(
    EventSpec,
    id=identifiers,
    outputs=spec_lists("output"),
)

thing_models = st.builds(
    ThingModel,
    id=identifiers,
    name=st.text(max_size=10),
    attributes=spec_lists("attribute"),
    measurepoints=spec_lists("measurepoint"),
    events=st.lists(event_specs, max_size=3, unique_by=lambda e: e.id),
)


# -- strategies: values -------------------------------------------------------------------------


def element_values(element: str, spec: TypeSpec) -> st.SearchStrategy[Any]:
    if element == "int":
        return st.one_of(
            st.integers(INT64_MIN, INT64_MAX),
            st.integers(-(2**53), 2**53).map(float),
            st.sampled_from([INT64_MIN, INT64_MAX, float(INT64_MIN)]),
        )
    if element in ("float", "double"):
        return st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**100), 2**100),
        )
    if element == "bool":
        return st.sampled_from([True, False, 0, 1])
    if element == "string":
        limit = spec.maxLength or DEFAULT_STRING_MAX
        exact = st.just("x" * limit) if limit <= 4096 else st.nothing()
        return st.one_of(st.text(max_size=min(limit, 30)), exact)
    if element == "enum":
        keys = list(spec.enum or {})
        ints = [int(k) for k in keys if _is_canonical_int(k)]
        return st.sampled_from(keys + ints)  # type: ignore[operator]
    if element == "date":
        return st.dates().map(lambda d: d.isoformat())
    if element == "timestamp":
        return st.one_of(st.integers(0, INT64_MAX), st.integers(0, 2**53).map(float))
    if element == "file":
        return st.text(min_size=1, max_size=40)
    if element == "struct":
        return st.fixed_dictionaries({}, optional={f.id: values_for(f) for f in spec.fields or ()})
    raise AssertionError(element)


def _is_canonical_int(key: str) -> bool:
    try:
        return str(int(key)) == key
    except ValueError:
        return False


def values_for(spec: TypeSpec) -> st.SearchStrategy[Any]:
    if spec.type == "array":
        assert spec.items is not None
        return st.lists(element_values(spec.items, spec), max_size=6)
    return element_values(spec.type, spec)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    finite_or_not,
    st.text(max_size=20),
    st.dates().map(lambda d: d.isoformat()),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(identifiers, st.text(max_size=5)), children, max_size=5),
    ),
    max_leaves=25,
)

KINDS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(),
    "float": finite_or_not,
    "string": st.text(max_size=20),
    "array": st.lists(json_values, max_size=4),
    "object": st.dictionaries(st.text(max_size=5), json_values, max_size=4),
}
# The JSON kinds each element type accepts (some of their values; the rest are refused).
ACCEPTS: dict[str, set[str]] = {
    "int": {"int", "float"},
    "float": {"int", "float"},
    "double": {"int", "float"},
    "timestamp": {"int", "float"},
    "bool": {"bool", "int"},
    "string": {"string"},
    "date": {"string"},
    "file": {"string"},
    "enum": {"string", "int"},
    "array": {"array"},
    "struct": {"object"},
}


def other_kinds(kind: str) -> st.SearchStrategy[Any]:
    return st.one_of([s for k, s in KINDS.items() if k not in ACCEPTS[kind]])


# -- properties ---------------------------------------------------------------------------------


ALL_TYPES = [*SCALARS, "array", "struct"]
PER_TYPE = settings(SLOW, max_examples=60)


@pytest.mark.parametrize("kind", ALL_TYPES)
@PER_TYPE
@given(data=st.data())
def test_valid_values_are_accepted_and_normalizing_is_idempotent(
    kind: str, data: st.DataObject
) -> None:
    spec = data.draw(type_specs(kind=kind), label="spec")
    value = data.draw(values_for(spec), label="value")
    validate = compile_spec(spec)
    normalized = validate(value)
    assert same(validate(normalized), normalized)
    assert same(validate_value(spec, value), normalized)
    # Normalized values are plain JSON and survive a JSON round trip unchanged.
    assert same(msgspec.json.decode(msgspec.json.encode(normalized)), normalized)


@pytest.mark.parametrize("kind", ALL_TYPES)
@PER_TYPE
@given(data=st.data())
def test_other_json_kinds_are_refused(kind: str, data: st.DataObject) -> None:
    spec = data.draw(type_specs(kind=kind), label="spec")
    value = data.draw(other_kinds(kind), label="value")
    try:
        compile_spec(spec)(value)
    except ValueInvalid as exc:
        assert str(exc)
    else:
        raise AssertionError(f"{kind} accepted {value!r}")


@pytest.mark.parametrize("kind", ALL_TYPES)
@PER_TYPE
@given(data=st.data())
def test_arbitrary_json_returns_or_raises_value_invalid(kind: str, data: st.DataObject) -> None:
    spec = data.draw(type_specs(kind=kind), label="spec")
    value = data.draw(st.one_of(json_values, json_scalars, values_for(spec)), label="value")
    validate = compile_spec(spec)
    try:
        normalized = validate(value)
    except ValueInvalid:
        return
    assert same(validate(normalized), normalized)
    assert same(msgspec.json.decode(msgspec.json.encode(normalized)), normalized)


@pytest.mark.parametrize("kind", ["int", "float", "double", "timestamp", "bool", "enum"])
@PER_TYPE
@given(data=st.data())
def test_any_number_gives_a_finite_number_or_value_invalid(kind: str, data: st.DataObject) -> None:
    spec = data.draw(type_specs(kind=kind), label="spec")
    value = data.draw(st.one_of(st.floats(), st.integers(), st.integers(-(2**70), 2**70)))
    try:
        normalized = compile_spec(spec)(value)
    except ValueInvalid:
        return
    if isinstance(normalized, float):
        assert math.isfinite(normalized)
    if isinstance(normalized, int) and not isinstance(normalized, bool):
        assert INT64_MIN <= normalized <= INT64_MAX
    assert same(compile_spec(spec)(normalized), normalized)


@st.composite
def array_specs_with_bad_elements(draw: st.DrawFn) -> tuple[TypeSpec, list[Any], int]:
    spec = draw(type_specs(kind="array"))
    assert spec.items is not None
    good = draw(st.lists(element_values(spec.items, spec), max_size=4))
    index = draw(st.integers(0, len(good)))
    bad = draw(other_kinds(spec.items))
    return spec, [*good[:index], bad, *good[index:]], index


@SLOW
@given(array_specs_with_bad_elements())
def test_bad_array_element_is_named_by_index(case: tuple[TypeSpec, list[Any], int]) -> None:
    spec, value, index = case
    try:
        compile_spec(spec)(value)
    except ValueInvalid as exc:
        assert exc.path.startswith(f"[{index}]"), (exc.path, index)
    else:
        raise AssertionError("accepted")


@SLOW
@given(thing_models, st.data())
def test_generated_models_check_compile_and_validate(
    model: ThingModel, data: st.DataObject
) -> None:
    check_model(model)
    again = msgspec.json.decode(msgspec.json.encode(model), type=ThingModel)
    check_model(again)
    compiled = compile_model(again)
    assert set(compiled.measurepoints) == {s.id for s in model.measurepoints}
    assert set(compiled.faults) | set(compiled.alerts) == {
        s.id for s in model.measurepoints if s.flag
    }

    # A sample drawn from the model's own points validates, with and without quality.
    sample: dict[str, Any] = {}
    for spec in model.measurepoints:
        if data.draw(st.booleans()):
            value = data.draw(values_for(spec))
            if spec.withQuality:
                if data.draw(st.booleans()):
                    value = {"value": value, "quality": data.draw(st.integers(-5, 200))}
                else:
                    # A plain struct that looks like a {value, quality} wrapper is read as one.
                    assume(
                        not (
                            isinstance(value, dict)
                            and "value" in value
                            and set(value) <= {"value", "quality"}
                        )
                    )
            sample[spec.id] = value
    checked = compiled.check_measurepoints(sample)
    assert set(checked) == set(sample)
    for point_id, (value, quality) in checked.items():
        again_in = {"value": value, "quality": quality} if quality is not None else value
        assert same(compiled.measurepoints[point_id](again_in), (value, quality))

    attributes = {s.id: data.draw(values_for(s)) for s in model.attributes}
    assert compiled.check_attributes(attributes).keys() == attributes.keys()
    for event in model.events:
        outputs = {o.id: data.draw(values_for(o)) for o in event.outputs}
        result = compiled.check_events({event.id: outputs})
        assert same(compiled.events[event.id](result[event.id]), result[event.id])


@SLOW
@given(thing_models, json_values)
def test_compiled_model_takes_arbitrary_json(model: ThingModel, value: Any) -> None:
    compiled = compile_model(model)
    validators: list[Any] = [
        compiled.check_measurepoints,
        compiled.check_attributes,
        compiled.check_events,
        *compiled.measurepoints.values(),
        *compiled.attributes.values(),
        *compiled.events.values(),
    ]
    for validate in validators:
        try:
            validate(value)
        except ValueInvalid:
            pass
