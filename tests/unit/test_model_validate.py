"""Thing model checks (check_model) and compiled value validators: example-based tests.

Property tests live in test_model_validate_props.py.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from headrace.errors import ClientError, ValidationFailed
from headrace.model.types import EventSpec, ThingModel, TypeSpec
from headrace.model.validate import (
    MAX_STRUCT_DEPTH,
    CompiledModel,
    FlaggedPoint,
    ValueInvalid,
    check_model,
    check_spec,
    compile_model,
    compile_spec,
    is_identifier,
    validate_value,
)

# -- helpers ----------------------------------------------------------------------------------


def spec(type_: str, id_: str = "p", **kw: Any) -> TypeSpec:
    return TypeSpec(id=id_, type=type_, **kw)  # type: ignore[arg-type]


def model(**kw: Any) -> ThingModel:
    return ThingModel(id=kw.pop("id", "m1"), **kw)


def fails(m: ThingModel) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        check_model(m)
    return info.value


def invalid(s: TypeSpec, value: Any) -> str:
    with pytest.raises(ValueInvalid) as info:
        compile_spec(s)(value)
    return str(info.value)


def nested_struct(levels: int) -> TypeSpec:
    """A struct point with ``levels`` struct levels (1 = a flat struct)."""
    inner = spec("struct", "f", fields=[spec("int", "leaf")])
    for _ in range(levels - 1):
        inner = spec("struct", "f", fields=[inner])
    return spec("struct", "s", fields=inner.fields)


FULL = ThingModel(
    id="Inverter_1",
    name="Inverter",
    attributes=[
        spec("string", "serial", maxLength=64),
        spec("enum", "phase", enum={"1": "single", "3": "three"}),
        spec("date", "installed"),
    ],
    measurepoints=[
        spec("float", "temp", unit="C"),
        spec("double", "energy"),
        spec("int", "Power", withQuality=True),
        spec("bool", "fault1", flag="fault", name="Grid fault"),
        spec("int", "alarmCode", flag="alert"),
        spec("array", "branchCurr", items="float"),
        spec("array", "tags", items="string", maxLength=8),
        spec("array", "modes", items="enum", enum={"0": "off", "1": "on"}),
        spec(
            "struct",
            "gps",
            fields=[spec("double", "lat"), spec("double", "lon"), spec("timestamp", "fix")],
        ),
        spec("array", "strings", items="struct", fields=[spec("int", "n"), spec("float", "v")]),
        spec("timestamp", "lastReset"),
        spec("file", "snapshot"),
        spec("enum", "state", enum={"0": "idle", "1": "run", "x": "other"}),
        spec("string", "serial"),  # same id as an attribute: separate namespaces
    ],
    events=[
        EventSpec(id="overheat", outputs=[spec("float", "temp"), spec("string", "where")]),
        EventSpec(id="boot"),
    ],
)


# -- check_model: accepted ----------------------------------------------------------------------


def test_full_model_is_accepted() -> None:
    check_model(FULL)


def test_model_round_trips_through_json_and_stays_valid() -> None:
    again = msgspec.json.decode(msgspec.json.encode(FULL), type=ThingModel)
    assert again == FULL
    check_model(again)


def test_empty_model_is_accepted() -> None:
    check_model(model())


@pytest.mark.parametrize("ident", ["a", "_", "A1", "a_1_b", "_9", "x" * 128, "Power"])
def test_identifier_accepted(ident: str) -> None:
    assert is_identifier(ident)
    check_model(model(id=ident, measurepoints=[spec("int", ident)]))


def test_struct_depth_limit_is_allowed() -> None:
    check_model(model(measurepoints=[nested_struct(MAX_STRUCT_DEPTH)]))
    check_model(model(attributes=[nested_struct(MAX_STRUCT_DEPTH)]))


def test_max_length_bounds_accepted() -> None:
    check_model(model(measurepoints=[spec("string", "a", maxLength=1)]))
    check_model(model(measurepoints=[spec("string", "a", maxLength=1_048_576)]))


def test_flag_on_bool_and_int() -> None:
    check_model(
        model(measurepoints=[spec("bool", "a", flag="fault"), spec("int", "b", flag="alert")])
    )


def test_same_ids_across_namespaces_and_structs() -> None:
    check_model(
        model(
            attributes=[spec("int", "x")],
            measurepoints=[spec("int", "x"), spec("struct", "s", fields=[spec("int", "x")])],
            events=[EventSpec(id="x", outputs=[spec("int", "x")])],
        )
    )


# -- check_model: refused, with paths --------------------------------------------------------------


@pytest.mark.parametrize(
    "ident", ["", "1a", "a-b", "a b", "a.b", "ä", "x" * 129, "a\n", "é1", "a$", "٣"]
)
def test_bad_model_id(ident: str) -> None:
    assert not is_identifier(ident)
    error = fails(model(id=ident))
    assert error.field == "id"
    assert "invalid identifier" in error.message
    assert "^[A-Za-z_][A-Za-z0-9_]*$" in error.message


def test_error_shape() -> None:
    error = fails(model(id="1"))
    assert isinstance(error, ClientError)
    assert error.status == 422
    assert error.reply_code == 1204
    assert error.to_json()["error"]["field"] == "id"


REFUSED: list[tuple[str, ThingModel, str, str]] = [
    (
        "bad measurepoint id",
        model(measurepoints=[spec("int", "a"), spec("int", "b"), spec("int", "9x")]),
        "measurepoints[2].id",
        "invalid identifier '9x'",
    ),
    (
        "bad attribute id",
        model(attributes=[spec("int", "a-b")]),
        "attributes[0].id",
        "invalid identifier",
    ),
    (
        "bad event id",
        model(events=[EventSpec(id="ok"), EventSpec(id="")]),
        "events[1].id",
        "invalid identifier ''",
    ),
    (
        "bad output id",
        model(events=[EventSpec(id="e", outputs=[spec("int", "a"), spec("int", "b c")])]),
        "events[0].outputs[1].id",
        "invalid identifier 'b c'",
    ),
    (
        "bad nested field id",
        model(
            measurepoints=[
                spec(
                    "struct",
                    "s",
                    fields=[spec("struct", "t", fields=[spec("int", "a"), spec("int", "-")])],
                )
            ]
        ),
        "measurepoints[0].fields[0].fields[1].id",
        "invalid identifier '-'",
    ),
    (
        "duplicate measurepoint",
        model(measurepoints=[spec("int", "a"), spec("float", "b"), spec("bool", "a")]),
        "measurepoints[2].id",
        "duplicate measurepoint id 'a' (also at measurepoints[0])",
    ),
    (
        "duplicate attribute",
        model(attributes=[spec("int", "a"), spec("int", "a")]),
        "attributes[1].id",
        "duplicate attribute id 'a' (also at attributes[0])",
    ),
    (
        "duplicate event",
        model(events=[EventSpec(id="e"), EventSpec(id="e")]),
        "events[1].id",
        "duplicate event id 'e' (also at events[0])",
    ),
    (
        "duplicate output",
        model(events=[EventSpec(id="e", outputs=[spec("int", "o"), spec("float", "o")])]),
        "events[0].outputs[1].id",
        "duplicate output id 'o' (also at events[0].outputs[0])",
    ),
    (
        "duplicate struct field",
        model(measurepoints=[spec("struct", "s", fields=[spec("int", "f"), spec("int", "f")])]),
        "measurepoints[0].fields[1].id",
        "duplicate field id 'f' (also at measurepoints[0].fields[0])",
    ),
    (
        "unknown type",
        model(measurepoints=[spec("decimal", "a")]),
        "measurepoints[0].type",
        "unknown type 'decimal'",
    ),
    (
        "maxLength on int",
        model(measurepoints=[spec("int", "a", maxLength=5)]),
        "measurepoints[0].maxLength",
        "'maxLength' is only allowed on string, not on int",
    ),
    (
        "maxLength on array of int",
        model(measurepoints=[spec("array", "a", items="int", maxLength=5)]),
        "measurepoints[0].maxLength",
        "not on array of int",
    ),
    (
        "maxLength zero",
        model(measurepoints=[spec("string", "a", maxLength=0)]),
        "measurepoints[0].maxLength",
        "maxLength must be 1..1048576, got 0",
    ),
    (
        "maxLength too big",
        model(attributes=[spec("string", "a", maxLength=1_048_577)]),
        "attributes[0].maxLength",
        "maxLength must be 1..1048576, got 1048577",
    ),
    (
        "enum missing",
        model(measurepoints=[spec("int", "a"), spec("enum", "b")]),
        "measurepoints[1].enum",
        "enum needs a non-empty 'enum' map",
    ),
    (
        "enum empty",
        model(measurepoints=[spec("enum", "b", enum={})]),
        "measurepoints[0].enum",
        "enum needs a non-empty 'enum' map",
    ),
    (
        "enum on string",
        model(measurepoints=[spec("string", "b", enum={"a": "A"})]),
        "measurepoints[0].enum",
        "'enum' is only allowed on enum, not on string",
    ),
    (
        "enum missing on array of enum",
        model(measurepoints=[spec("array", "b", items="enum")]),
        "measurepoints[0].enum",
        "non-empty 'enum'",
    ),
    (
        "empty enum key",
        model(measurepoints=[spec("enum", "b", enum={"": "nothing"})]),
        "measurepoints[0].enum",
        "enum keys must be non-empty strings",
    ),
    (
        "items missing",
        model(measurepoints=[spec("int", "a"), spec("int", "b"), spec("array", "c")]),
        "measurepoints[2].items",
        "array needs 'items'",
    ),
    (
        "items on int",
        model(measurepoints=[spec("int", "a", items="int")]),
        "measurepoints[0].items",
        "'items' is only allowed on array, not on int",
    ),
    (
        "array of array",
        model(measurepoints=[spec("array", "a", items="array")]),
        "measurepoints[0].items",
        "array items cannot be arrays",
    ),
    (
        "unknown items type",
        model(measurepoints=[spec("array", "a", items="blob")]),
        "measurepoints[0].items",
        "unknown items type 'blob'",
    ),
    (
        "array of struct without fields",
        model(measurepoints=[spec("array", "a", items="struct")]),
        "measurepoints[0].fields",
        "struct needs non-empty 'fields'",
    ),
    (
        "struct without fields",
        model(measurepoints=[spec("struct", "a")]),
        "measurepoints[0].fields",
        "struct needs non-empty 'fields'",
    ),
    (
        "struct with empty fields",
        model(attributes=[spec("struct", "a", fields=[])]),
        "attributes[0].fields",
        "struct needs non-empty 'fields'",
    ),
    (
        "fields on int",
        model(measurepoints=[spec("int", "a", fields=[spec("int", "b")])]),
        "measurepoints[0].fields",
        "'fields' is only allowed on struct or array of struct, not on int",
    ),
    (
        "fields on array of float",
        model(measurepoints=[spec("array", "a", items="float", fields=[spec("int", "b")])]),
        "measurepoints[0].fields",
        "not on array of float",
    ),
    (
        "struct too deep",
        model(measurepoints=[nested_struct(MAX_STRUCT_DEPTH + 1)]),
        "measurepoints[0]" + ".fields[0]" * MAX_STRUCT_DEPTH + ".fields",
        f"struct nesting deeper than {MAX_STRUCT_DEPTH}",
    ),
    (
        "withQuality on attribute",
        model(attributes=[spec("int", "a", withQuality=True)]),
        "attributes[0].withQuality",
        "'withQuality' is only allowed on measurepoints, not on a attribute",
    ),
    (
        "withQuality on event output",
        model(events=[EventSpec(id="e", outputs=[spec("int", "o", withQuality=True)])]),
        "events[0].outputs[0].withQuality",
        "not on a event output",
    ),
    (
        "withQuality on struct field",
        model(measurepoints=[spec("struct", "s", fields=[spec("int", "f", withQuality=True)])]),
        "measurepoints[0].fields[0].withQuality",
        "not on a struct field",
    ),
    (
        "flag on attribute",
        model(attributes=[spec("bool", "a", flag="fault")]),
        "attributes[0].flag",
        "'flag' is only allowed on measurepoints",
    ),
    (
        "flag on struct field",
        model(measurepoints=[spec("struct", "s", fields=[spec("bool", "f", flag="alert")])]),
        "measurepoints[0].fields[0].flag",
        "'flag' is only allowed on measurepoints",
    ),
    (
        "flag on float",
        model(measurepoints=[spec("float", "a", flag="alert")]),
        "measurepoints[0].flag",
        "'flag' is only allowed on bool or int points, not on float",
    ),
    (
        "flag on array of bool",
        model(measurepoints=[spec("array", "a", items="bool", flag="alert")]),
        "measurepoints[0].flag",
        "not on array of bool",
    ),
    (
        "unknown flag",
        model(measurepoints=[spec("bool", "a", flag="warning")]),
        "measurepoints[0].flag",
        "flag must be 'fault' or 'alert'",
    ),
]


@pytest.mark.parametrize(
    ("m", "field", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_model_refused(m: ThingModel, field: str, message: str) -> None:
    error = fails(m)
    assert error.field == field
    assert message in error.message


def test_compile_model_checks_first() -> None:
    with pytest.raises(ValidationFailed) as info:
        compile_model(model(measurepoints=[spec("array", "a")]))
    assert info.value.field == "measurepoints[0].items"


def test_check_spec_alone() -> None:
    check_spec(spec("int", "a"), "x")
    with pytest.raises(ValidationFailed) as info:
        check_spec(spec("int", "a", withQuality=True), "x", "attribute")
    assert info.value.field == "x.withQuality"


# -- scalar validators -------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type, all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


ACCEPTED: list[tuple[TypeSpec, Any, Any]] = [
    (spec("int"), 5, 5),
    (spec("int"), -(2**63), -(2**63)),
    (spec("int"), 2**63 - 1, 2**63 - 1),
    (spec("int"), 5.0, 5),
    (spec("int"), -0.0, 0),
    (spec("int"), -9.223372036854775808e18, -(2**63)),
    (spec("float"), 1.5, 1.5),
    (spec("float"), 1, 1.0),
    (spec("float"), 2**63, float(2**63)),
    (spec("double"), -3, -3.0),
    (spec("double"), 1e308, 1e308),
    (spec("bool"), True, True),
    (spec("bool"), False, False),
    (spec("bool"), 0, False),
    (spec("bool"), 1, True),
    (spec("string"), "", ""),
    (spec("string"), "ü" * 1024, "ü" * 1024),
    (spec("string", maxLength=3), "abc", "abc"),
    (spec("enum", enum={"0": "a", "1": "b", "2": "c"}), "1", 1),
    (spec("enum", enum={"0": "a", "1": "b", "2": "c"}), 2, 2),
    (spec("enum", enum={"-1": "neg", "x": "ex"}), -1, -1),
    (spec("enum", enum={"-1": "neg", "x": "ex"}), "x", "x"),
    (spec("enum", enum={"07": "zero-seven", "+1": "plus"}), "07", "07"),
    (spec("enum", enum={"07": "zero-seven", "+1": "plus"}), "+1", "+1"),
    (spec("date"), "2024-02-29", "2024-02-29"),
    (spec("date"), "0001-01-01", "0001-01-01"),
    (spec("date"), "9999-12-31", "9999-12-31"),
    (spec("timestamp"), 0, 0),
    (spec("timestamp"), 1_700_000_000_000, 1_700_000_000_000),
    (spec("timestamp"), 1.7e12, 1_700_000_000_000),
    (spec("file"), "local://photo.jpg", "local://photo.jpg"),
    (spec("file"), "enos-connect://" + "a" * 2033, "enos-connect://" + "a" * 2033),
    (spec("array", items="float"), [], []),
    (spec("array", items="float"), [1, 2.5], [1.0, 2.5]),
    (spec("array", items="float"), (1, 2), [1.0, 2.0]),
    (spec("array", items="int"), [0] * 128, [0] * 128),
    (spec("array", items="string", maxLength=2), ["ab", ""], ["ab", ""]),
    (spec("array", items="enum", enum={"0": "a", "b": "b"}), ["0", 0, "b"], [0, 0, "b"]),
    (
        spec("array", items="struct", fields=[spec("int", "n")]),
        [{"n": 1.0}, {}],
        [{"n": 1}, {}],
    ),
    (spec("struct", fields=[spec("int", "a"), spec("float", "b")]), {}, {}),
    (
        spec("struct", fields=[spec("int", "a"), spec("float", "b")]),
        {"a": 1, "b": 2},
        {"a": 1, "b": 2.0},
    ),
    (
        spec("struct", fields=[spec("array", "xs", items="bool")]),
        {"xs": [0, 1, True]},
        {"xs": [False, True, True]},
    ),
]


@pytest.mark.parametrize(("s", "value", "expected"), ACCEPTED)
def test_value_accepted(s: TypeSpec, value: Any, expected: Any) -> None:
    result = validate_value(s, value)
    assert same(result, expected), (result, expected)
    assert same(validate_value(s, result), result)  # idempotent


REFUSED_VALUES: list[tuple[TypeSpec, Any, str]] = [
    (spec("int"), True, "expected int, got bool"),
    (spec("int"), "5", "expected int, got string"),
    (spec("int"), None, "expected int, got null"),
    (spec("int"), [1], "expected int, got array"),
    (spec("int"), {"a": 1}, "expected int, got object"),
    (spec("int"), 1.5, "expected int, got non-integral float 1.5"),
    (spec("int"), float("nan"), "expected int, got non-integral float nan"),
    (spec("int"), 2**63, "int out of signed 64-bit range"),
    (spec("int"), -(2**63) - 1, "int out of signed 64-bit range"),
    (spec("int"), 9.3e18, "int out of signed 64-bit range"),
    (spec("int"), float("inf"), "expected int, got non-integral float inf"),
    (spec("float"), "1.0", "expected float, got string"),
    (spec("float"), True, "expected float, got bool"),
    (spec("float"), None, "expected float, got null"),
    (spec("float"), float("nan"), "expected finite float, got nan"),
    (spec("double"), float("-inf"), "expected finite float, got -inf"),
    (spec("double"), 10**400, "int too large for float"),
    (spec("bool"), 2, "expected bool (true/false or 0/1), got 2"),
    (spec("bool"), -1, "expected bool (true/false or 0/1), got -1"),
    (spec("bool"), 1.0, "expected bool, got float"),
    (spec("bool"), "true", "expected bool, got string"),
    (spec("bool"), None, "expected bool, got null"),
    (spec("string"), "x" * 1025, "string longer than 1024"),
    (spec("string", maxLength=3), "abcd", "string longer than 3"),
    (spec("string"), 5, "expected string, got int"),
    (spec("string"), None, "expected string, got null"),
    (spec("enum", enum={"0": "a", "1": "b", "2": "c"}), 7, "enum value 7 not in [0, 1, 2]"),
    (spec("enum", enum={"0": "a", "1": "b", "2": "c"}), "7", "enum value '7' not in [0, 1, 2]"),
    (spec("enum", enum={"0": "a", "1": "b", "2": "c"}), 1.0, "enum value 1.0 not in [0, 1, 2]"),
    (spec("enum", enum={"0": "a"}), True, "expected enum value (string or int), got bool"),
    (spec("enum", enum={"0": "a"}), None, "expected enum value (string or int), got null"),
    (spec("enum", enum={"0": "a"}), [0], "expected enum value (string or int), got array"),
    (spec("enum", enum={"07": "a"}), 7, "enum value 7 not in [07]"),
    (spec("enum", enum={str(i): "" for i in range(30)}), 99, "not in [0, 1, 2, "),
    (spec("date"), "2023-02-29", "not a real date: '2023-02-29'"),
    (spec("date"), "2024-13-01", "not a real date"),
    (spec("date"), "0000-01-01", "not a real date"),
    (spec("date"), "2024-2-1", "expected date YYYY-MM-DD, got '2024-2-1'"),
    (spec("date"), "20240101", "expected date YYYY-MM-DD"),
    (spec("date"), "2024-01-01T00:00:00", "expected date YYYY-MM-DD"),
    (spec("date"), "2024-01-0\N{ARABIC-INDIC DIGIT ONE}", "expected date YYYY-MM-DD"),
    (spec("date"), 20240101, "expected date (YYYY-MM-DD string), got int"),
    (spec("timestamp"), -1, "timestamp must be >= 0"),
    (spec("timestamp"), -1.0, "timestamp must be >= 0"),
    (spec("timestamp"), 1.5, "expected timestamp (int ms), got non-integral float 1.5"),
    (spec("timestamp"), True, "expected timestamp (int ms), got bool"),
    (spec("timestamp"), "1700000000000", "expected timestamp (int ms), got string"),
    (spec("timestamp"), 2**63, "timestamp (int ms) out of signed 64-bit range"),
    (spec("file"), "", "file reference is empty"),
    (spec("file"), "x" * 2049, "file reference longer than 2048"),
    (spec("file"), 5, "expected file reference (string), got int"),
    (spec("array", items="float"), "x", "expected array, got string"),
    (spec("array", items="float"), {"0": 1}, "expected array, got object"),
    (spec("array", items="float"), [1.0] * 129, "array longer than 128"),
    (spec("array", items="float"), [1, "x"], "[1]: expected float, got string"),
    (spec("array", items="string", maxLength=2), ["abc"], "[0]: string longer than 2"),
    (
        spec("array", items="struct", fields=[spec("int", "n")]),
        [{"n": 1}, {"n": True}],
        "[1].fields.n: expected int, got bool",
    ),
    (
        spec("array", items="struct", fields=[spec("int", "n")]),
        [{"m": 1}],
        "[0]: struct field 'm' not declared",
    ),
    (spec("struct", fields=[spec("int", "a")]), {"x": 1}, "struct field 'x' not declared"),
    (spec("struct", fields=[spec("int", "a")]), {"a": True}, "fields.a: expected int, got bool"),
    (spec("struct", fields=[spec("int", "a")]), [1], "expected object (struct), got array"),
    (
        spec(
            "struct",
            fields=[spec("array", "x", items="struct", fields=[spec("int", "y")])],
        ),
        {"x": [{"y": 1}, {"y": 2}, {"y": "3"}]},
        "fields.x[2].fields.y: expected int, got string",
    ),
    (
        spec("struct", fields=[spec("struct", "a", fields=[spec("float", "b")])]),
        {"a": {"b": None}},
        "fields.a.fields.b: expected float, got null",
    ),
]


@pytest.mark.parametrize(("s", "value", "message"), REFUSED_VALUES)
def test_value_refused(s: TypeSpec, value: Any, message: str) -> None:
    text = invalid(s, value)
    assert text.startswith(message) or message in text, text


def test_value_invalid_is_a_value_error_with_path() -> None:
    with pytest.raises(ValueInvalid) as info:
        validate_value(spec("struct", fields=[spec("int", "a")]), {"a": "x"})
    error = info.value
    assert isinstance(error, ValueError)
    assert error.path == "fields.a"
    assert error.reason == "expected int, got string"
    assert str(error.within("measurepoints.p")) == (
        "measurepoints.p.fields.a: expected int, got string"
    )
    assert str(ValueInvalid("bad").within("x")) == "x: bad"
    assert str(ValueInvalid("bad", "[2]").within("x")) == "x[2]: bad"


def test_long_values_are_shortened_in_messages() -> None:
    text = invalid(spec("enum", enum={"a": "A"}), "z" * 10_000)
    assert len(text) < 100


def test_validate_value_checks_the_spec() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_value(spec("array"), [])
    assert info.value.field == "spec.items"


def test_str_subclass_normalized_to_str() -> None:
    class S(str):
        pass

    for s in (spec("string"), spec("date"), spec("file")):
        result = validate_value(s, S("2024-01-01"))
        assert type(result) is str


def test_int_subclass_accepted_as_int() -> None:
    class I(int):  # noqa: E742
        pass

    assert type(validate_value(spec("int"), I(3))) is int
    assert type(validate_value(spec("float"), I(3))) is float
    assert validate_value(spec("bool"), I(1)) is True
    assert validate_value(spec("enum", enum={"3": "x"}), I(3)) == 3


# -- measurepoints with and without quality -------------------------------------------------------


@pytest.fixture(scope="module")
def compiled() -> CompiledModel:
    return compile_model(FULL)


def test_point_plain_value(compiled: CompiledModel) -> None:
    assert compiled.measurepoints["temp"](1) == (1.0, None)
    assert compiled.measurepoints["Power"](5) == (5, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"value": 5, "quality": 9}, (5, 9)),
        ({"value": 5.0, "quality": 0}, (5, 0)),
        ({"value": 5}, (5, None)),
        ({"quality": -1, "value": 5}, (5, -1)),
    ],
)
def test_point_with_quality(compiled: CompiledModel, value: Any, expected: Any) -> None:
    assert compiled.measurepoints["Power"](value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"value": 5, "quality": "9"}, "quality must be an int, got string"),
        ({"value": 5, "quality": True}, "quality must be an int, got bool"),
        ({"value": 5, "quality": 1.0}, "quality must be an int, got float"),
        ({"value": 5, "quality": None}, "quality must be an int, got null"),
        ({"value": 5, "quality": 2**63}, "quality out of signed 64-bit range"),
        ({"value": 5, "quality": 1, "q": 2}, "unexpected keys 'q' beside value/quality"),
        ({"value": "5", "quality": 1}, "value: expected int, got string"),
        ({"quality": 1}, "expected int, got object"),
        ("5", "expected int, got string"),
    ],
)
def test_point_with_quality_refused(compiled: CompiledModel, value: Any, message: str) -> None:
    with pytest.raises(ValueInvalid) as info:
        compiled.measurepoints["Power"](value)
    assert str(info.value) == message


def test_quality_wrapper_sent_to_point_without_quality(compiled: CompiledModel) -> None:
    with pytest.raises(ValueInvalid) as info:
        compiled.measurepoints["temp"]({"value": 1.0, "quality": 9})
    assert "point has no quality" in str(info.value)
    with pytest.raises(ValueInvalid, match="point has no quality"):
        compiled.measurepoints["gps"]({"value": 1.0, "quality": 9})


def test_struct_point_with_fields_named_value_and_quality() -> None:
    fields = [spec("int", "value"), spec("int", "quality"), spec("int", "other")]
    compiled = compile_model(
        model(
            measurepoints=[
                spec("struct", "plain", fields=fields),
                spec("struct", "wrapped", fields=fields, withQuality=True),
            ]
        )
    )
    # Without quality the object is simply the struct.
    assert compiled.measurepoints["plain"]({"value": 1, "quality": 2}) == (
        {"value": 1, "quality": 2},
        None,
    )
    # With quality, {value, quality} is the wrapper; other shapes are the struct itself.
    assert compiled.measurepoints["wrapped"]({"value": {"other": 3}, "quality": 2}) == (
        {"other": 3},
        2,
    )
    assert compiled.measurepoints["wrapped"]({"value": 1, "other": 2}) == (
        {"value": 1, "other": 2},
        None,
    )


# -- events -------------------------------------------------------------------------------------


def test_event_outputs(compiled: CompiledModel) -> None:
    overheat = compiled.events["overheat"]
    assert overheat({"temp": 90, "where": "inlet"}) == {"temp": 90.0, "where": "inlet"}
    assert overheat({}) == {}
    assert overheat({"temp": 1}) == {"temp": 1.0}
    assert compiled.events["boot"]({}) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": 1}, "output 'x' not declared in event 'overheat'"),
        ({"temp": "hot"}, "outputs.temp: expected float, got string"),
        ([1], "expected object (event outputs), got array"),
        (None, "expected object (event outputs), got null"),
    ],
)
def test_event_outputs_refused(compiled: CompiledModel, value: Any, message: str) -> None:
    with pytest.raises(ValueInvalid) as info:
        compiled.events["overheat"](value)
    assert str(info.value) == message


# -- the compiled model as a whole -------------------------------------------------------------


def test_compiled_model_lookups(compiled: CompiledModel) -> None:
    assert compiled.model is FULL
    assert set(compiled.measurepoints) == {s.id for s in FULL.measurepoints}
    assert set(compiled.attributes) == {s.id for s in FULL.attributes}
    assert set(compiled.events) == {"overheat", "boot"}
    assert compiled.measurepoint_specs["temp"].unit == "C"
    assert compiled.attribute_specs["serial"].maxLength == 64
    assert compiled.event_specs["boot"].outputs == []
    assert compiled.flagged == {
        "fault1": FlaggedPoint("fault1", "fault", "Grid fault"),
        "alarmCode": FlaggedPoint("alarmCode", "alert", "alarmCode"),
    }
    assert compiled.faults == {"fault1": "Grid fault"}
    assert compiled.alerts == {"alarmCode": "alarmCode"}


def test_attribute_and_measurepoint_namespaces_differ(compiled: CompiledModel) -> None:
    assert compiled.attributes["serial"]("x" * 64) == "x" * 64
    with pytest.raises(ValueInvalid, match="string longer than 64"):
        compiled.attributes["serial"]("x" * 65)
    assert compiled.measurepoints["serial"]("x" * 1000) == ("x" * 1000, None)


def test_check_measurepoints_like_a4(compiled: CompiledModel) -> None:
    sample = {
        "Power": {"value": 1, "quality": 9},
        "temp": 1.02,
        "branchCurr": [1.02, 2],
        "gps": {"lat": 1, "lon": 2.5},
        "state": "1",
    }
    assert compiled.check_measurepoints(sample) == {
        "Power": (1, 9),
        "temp": (1.02, None),
        "branchCurr": ([1.02, 2.0], None),
        "gps": ({"lat": 1.0, "lon": 2.5}, None),
        "state": (1, None),
    }
    assert compiled.check_measurepoints({}) == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nope": 1}, "measurepoints.nope: measurepoint 'nope' not in model 'Inverter_1'"),
        ({"temp": 1, "branchCurr": ["1.02"]}, "measurepoints.branchCurr[0]: expected float"),
        ({"gps": {"lat": "n"}}, "measurepoints.gps.fields.lat: expected float, got string"),
        ({"Power": {"value": 1, "quality": "x"}}, "measurepoints.Power: quality must be an int"),
        ({"Power": {"value": "1"}}, "measurepoints.Power.value: expected int, got string"),
        ([1], "measurepoints: expected object, got array"),
    ],
)
def test_check_measurepoints_refused(compiled: CompiledModel, values: Any, message: str) -> None:
    with pytest.raises(ValueInvalid) as info:
        compiled.check_measurepoints(values)
    assert str(info.value).startswith(message), str(info.value)


def test_check_attributes(compiled: CompiledModel) -> None:
    assert compiled.check_attributes({"phase": 3, "installed": "2020-01-31"}) == {
        "phase": 3,
        "installed": "2020-01-31",
    }
    with pytest.raises(ValueInvalid) as info:
        compiled.check_attributes({"phase": 2})
    assert str(info.value) == "attributes.phase: enum value 2 not in [1, 3]"
    with pytest.raises(ValueInvalid, match=r"^attributes.temp: attribute 'temp' not in model"):
        compiled.check_attributes({"temp": 2})


def test_check_events(compiled: CompiledModel) -> None:
    assert compiled.check_events({"overheat": {"temp": 3}, "boot": {}}) == {
        "overheat": {"temp": 3.0},
        "boot": {},
    }
    with pytest.raises(ValueInvalid) as info:
        compiled.check_events({"overheat": {"temp": False}})
    assert str(info.value) == "events.overheat.outputs.temp: expected float, got bool"
    with pytest.raises(ValueInvalid, match=r"^events.x: event 'x' not in model"):
        compiled.check_events({"x": {}})
    with pytest.raises(ValueInvalid, match=r"^events.boot: expected object"):
        compiled.check_events({"boot": 1})


def test_results_do_not_alias_input(compiled: CompiledModel) -> None:
    value = {"lat": 1.0}
    result, _ = compiled.measurepoints["gps"](value)
    assert result == value
    assert result is not value
    items = [1.0]
    assert compiled.measurepoints["branchCurr"](items)[0] is not items
