"""Semantic checks of thing models and compiled value validators for the hot path.

Two halves:

- ``check_model`` looks at a thing model once (admin API, import) and raises
  ``ValidationFailed`` with a precise ``field`` path such as
  ``measurepoints[2].items`` or ``events[0].outputs[1].id``.
- ``compile_model`` turns a checked model into plain closures, built once per model, that
  the ingest pipeline calls for every value (~300k values/s). The happy path does no
  per-value lookups of type names and raises nothing; the error path (``ValueInvalid``)
  may be slow and does the diagnosis.

Value paths inside ``ValueInvalid`` name the container and the key, like the model does:
``fields.a`` for a struct field, ``[3]`` for an array element, ``outputs.x`` for an event
output, so ``fields.x[2].fields.y: expected int, got bool`` points into a nested value.

Where the brief left a choice, the rules here are:
- the value-type rules of a spec apply to its *element type* (``items`` for arrays, else
  ``type``): an array of enum carries ``enum``, an array of struct carries ``fields``, and
  an array of string may carry ``maxLength`` (applied to each element);
- floats must be finite (NaN and infinities cannot be stored or sent back as JSON);
- a struct nested in a struct counts one level deeper; a top-level struct (or array of
  struct) is level 1 and ``MAX_STRUCT_DEPTH`` levels are allowed.
- for a point with quality, an object with a ``value`` key and no keys but
  ``value``/``quality`` is always the quality wrapper (``quality`` optional, an int);
  sent to a point without quality, such an object is refused unless it is a valid struct.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from headrace.errors import ValidationFailed
from headrace.model.fast import Checked, compile_measurepoint_request
from headrace.model.types import (
    DEFAULT_STRING_MAX,
    MAX_ARRAY_ITEMS,
    MAX_ID_LENGTH,
    POINT_TYPES,
    EventSpec,
    ThingModel,
    TypeSpec,
)

__all__ = [
    "MAX_FILE_URI_LENGTH",
    "MAX_STRING_MAX",
    "MAX_STRUCT_DEPTH",
    "CompiledModel",
    "EventValidator",
    "FlaggedPoint",
    "PointValidator",
    "Validator",
    "ValueInvalid",
    "check_model",
    "check_spec",
    "compile_model",
    "compile_spec",
    "is_identifier",
    "validate_value",
]

MAX_STRING_MAX = 1_048_576
MAX_STRUCT_DEPTH = 4
MAX_FILE_URI_LENGTH = 2048

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Float bounds for "integral float fits in int64": -2**63 is exact, 2**63 is the first
# float beyond the range.
_F_INT64_MIN = -(2.0**63)
_F_INT64_LIMIT = 2.0**63

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Enum keys written like this are normalized to int; anything else ("07", "+7", "-0")
# stays a string, so that normalizing is idempotent (str(int(key)) == key).
_INT_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)")

_VALUE_TYPES = frozenset(POINT_TYPES)


class ValueInvalid(ValueError):
    """A value does not fit its declared type. ``str(exc)`` says why and where.

    ``reason`` is the bare explanation, ``path`` the place inside the value ("" for the
    value itself; ``fields.a``, ``[3]``, ``outputs.x``, ``measurepoints.temp`` ...).
    """

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def within(self, prefix: str) -> ValueInvalid:
        """The same error seen from the container ``prefix`` (path prepended)."""
        if not self.path:
            path = prefix
        elif self.path.startswith("["):
            path = prefix + self.path
        else:
            path = f"{prefix}.{self.path}"
        return ValueInvalid(self.reason, path)


Validator = Callable[[Any], Any]
"""value -> normalized value; raises ``ValueInvalid``."""

PointValidator = Callable[[Any], tuple[Any, int | None]]
"""measurepoint value (plain, or ``{"value": v, "quality": q}`` for points with quality)
-> ``(normalized value, quality or None)``; raises ``ValueInvalid``."""

EventValidator = Callable[[Any], dict[str, Any]]
"""event outputs object ``{outputId: value}`` -> normalized dict; raises ``ValueInvalid``."""


# -- check_model ----------------------------------------------------------------------------


def is_identifier(value: object) -> bool:
    """An EnOS-style identifier: 1..128 chars of ``[A-Za-z0-9_]``, not starting with a digit."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LENGTH
        and _IDENTIFIER.fullmatch(value) is not None
    )


def _check_identifier(value: object, path: str) -> None:
    if not is_identifier(value):
        raise ValidationFailed(
            f"invalid identifier {_show(value)}: must be 1..{MAX_ID_LENGTH} characters "
            "matching ^[A-Za-z_][A-Za-z0-9_]*$",
            field=path,
        )


def _check_unique_ids(ids: Iterable[str], path: str, what: str) -> None:
    seen: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if ident in seen:
            raise ValidationFailed(
                f"duplicate {what} id {ident!r} (also at {path}[{seen[ident]}])",
                field=f"{path}[{i}].id",
            )
        seen[ident] = i


SpecContext = Literal["measurepoint", "attribute", "output", "field"]


def check_spec(spec: TypeSpec, path: str, context: SpecContext = "measurepoint") -> None:
    """Check one typed slot; ``path`` names it in errors (e.g. ``measurepoints[2]``)."""
    _check_spec(spec, path, context, 0)


def _check_spec(spec: TypeSpec, path: str, context: SpecContext, depth: int) -> None:
    _check_identifier(spec.id, f"{path}.id")
    if spec.type not in _VALUE_TYPES:
        raise ValidationFailed(
            f"unknown type {_show(spec.type)}; one of: {', '.join(POINT_TYPES)}",
            field=f"{path}.type",
        )
    if spec.type == "array":
        if spec.items is None:
            raise ValidationFailed("array needs 'items' (the element type)", field=f"{path}.items")
        if spec.items == "array":
            raise ValidationFailed("array items cannot be arrays", field=f"{path}.items")
        if spec.items not in _VALUE_TYPES:
            raise ValidationFailed(
                f"unknown items type {_show(spec.items)}; one of: {', '.join(POINT_TYPES)}",
                field=f"{path}.items",
            )
        element = spec.items
    else:
        if spec.items is not None:
            raise ValidationFailed(
                f"'items' is only allowed on array, not on {spec.type}", field=f"{path}.items"
            )
        element = spec.type
    described = spec.type if spec.type != "array" else f"array of {element}"

    if spec.maxLength is not None:
        if element != "string":
            raise ValidationFailed(
                f"'maxLength' is only allowed on string, not on {described}",
                field=f"{path}.maxLength",
            )
        if type(spec.maxLength) is not int or spec.maxLength < 1 or spec.maxLength > MAX_STRING_MAX:
            raise ValidationFailed(
                f"maxLength must be 1..{MAX_STRING_MAX}, got {_show(spec.maxLength)}",
                field=f"{path}.maxLength",
            )

    if element == "enum":
        if not spec.enum:
            raise ValidationFailed("enum needs a non-empty 'enum' map", field=f"{path}.enum")
        for key in spec.enum:
            if not isinstance(key, str) or not key:
                raise ValidationFailed(
                    f"enum keys must be non-empty strings, got {_show(key)}",
                    field=f"{path}.enum",
                )
    elif spec.enum is not None:
        raise ValidationFailed(
            f"'enum' is only allowed on enum, not on {described}", field=f"{path}.enum"
        )

    if element == "struct":
        if not spec.fields:
            raise ValidationFailed("struct needs non-empty 'fields'", field=f"{path}.fields")
        if depth + 1 > MAX_STRUCT_DEPTH:
            raise ValidationFailed(
                f"struct nesting deeper than {MAX_STRUCT_DEPTH}", field=f"{path}.fields"
            )
        for i, sub in enumerate(spec.fields):
            _check_spec(sub, f"{path}.fields[{i}]", "field", depth + 1)
        _check_unique_ids((f.id for f in spec.fields), f"{path}.fields", "field")
    elif spec.fields is not None:
        raise ValidationFailed(
            f"'fields' is only allowed on struct or array of struct, not on {described}",
            field=f"{path}.fields",
        )

    if context != "measurepoint":
        if spec.withQuality:
            raise ValidationFailed(
                f"'withQuality' is only allowed on measurepoints, not on a {_CONTEXT[context]}",
                field=f"{path}.withQuality",
            )
        if spec.flag is not None:
            raise ValidationFailed(
                f"'flag' is only allowed on measurepoints, not on a {_CONTEXT[context]}",
                field=f"{path}.flag",
            )
    if spec.flag is not None:
        if spec.flag not in ("fault", "alert"):
            raise ValidationFailed(
                f"flag must be 'fault' or 'alert', got {_show(spec.flag)}", field=f"{path}.flag"
            )
        if spec.type not in ("bool", "int"):
            raise ValidationFailed(
                f"'flag' is only allowed on bool or int points, not on {described}",
                field=f"{path}.flag",
            )


_CONTEXT: dict[str, str] = {
    "measurepoint": "measurepoint",
    "attribute": "attribute",
    "output": "event output",
    "field": "struct field",
}


def _check_event(event: EventSpec, path: str) -> None:
    _check_identifier(event.id, f"{path}.id")
    for i, output in enumerate(event.outputs):
        _check_spec(output, f"{path}.outputs[{i}]", "output", 0)
    _check_unique_ids((o.id for o in event.outputs), f"{path}.outputs", "output")


def check_model(model: ThingModel) -> None:
    """Semantic checks of a thing model; raises ``ValidationFailed`` with ``field`` set."""
    _check_identifier(model.id, "id")
    for i, spec in enumerate(model.attributes):
        _check_spec(spec, f"attributes[{i}]", "attribute", 0)
    _check_unique_ids((s.id for s in model.attributes), "attributes", "attribute")
    for i, spec in enumerate(model.measurepoints):
        _check_spec(spec, f"measurepoints[{i}]", "measurepoint", 0)
    _check_unique_ids((s.id for s in model.measurepoints), "measurepoints", "measurepoint")
    for i, event in enumerate(model.events):
        _check_event(event, f"events[{i}]")
    _check_unique_ids((e.id for e in model.events), "events", "event")


# -- error-path helpers ---------------------------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: object, limit: int = 40) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not turn into another exception
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expected(what: str, value: object) -> ValueInvalid:
    return ValueInvalid(f"expected {what}, got {_json_type(value)}")


# -- scalar validators (module-level: nothing to capture) -------------------------------------


def _int_slow(value: Any, what: str = "int") -> int:
    if isinstance(value, bool):
        raise _expected(what, value)
    if isinstance(value, int):
        number = int(value)
        if INT64_MIN <= number <= INT64_MAX:
            return number
        raise ValueInvalid(f"{what} out of signed 64-bit range")
    if isinstance(value, float):
        if value.is_integer():
            if _F_INT64_MIN <= value < _F_INT64_LIMIT:
                return int(value)
            raise ValueInvalid(f"{what} out of signed 64-bit range")
        raise ValueInvalid(f"expected {what}, got non-integral float {_show(value)}")
    raise _expected(what, value)


def _v_int(value: Any) -> int:
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    return _int_slow(value)


def _v_timestamp(value: Any) -> int:
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    number = _int_slow(value, "timestamp (int ms)")
    if number < 0:
        raise ValueInvalid("timestamp must be >= 0")
    return number


def _v_float(value: Any) -> float:
    if type(value) is float:
        if value - value == 0.0:  # false for NaN and +-inf
            return value
    elif type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise ValueInvalid("int too large for float") from None
    return _float_slow(value)


def _float_slow(value: Any) -> float:
    if isinstance(value, bool):
        raise _expected("float", value)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ValueInvalid("int too large for float") from None
        if number - number == 0.0:
            return number
        raise ValueInvalid(f"expected finite float, got {_show(value)}")
    raise _expected("float", value)


def _v_bool(value: Any) -> bool:
    if value is True:
        return True
    if value is False:
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            return False
        if value == 1:
            return True
        raise ValueInvalid(f"expected bool (true/false or 0/1), got {_show(value)}")
    raise _expected("bool", value)


def _v_date(value: Any) -> str:
    if isinstance(value, str):
        if len(value) == 10 and _DATE.fullmatch(value) is not None:
            try:
                datetime.date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
            except ValueError:
                raise ValueInvalid(f"not a real date: {_show(value)}") from None
            return str(value)
        raise ValueInvalid(f"expected date YYYY-MM-DD, got {_show(value)}")
    raise _expected("date (YYYY-MM-DD string)", value)


def _v_file(value: Any) -> str:
    if type(value) is str and 0 < len(value) <= MAX_FILE_URI_LENGTH:
        return value
    if isinstance(value, str):
        if not value:
            raise ValueInvalid("file reference is empty")
        if len(value) > MAX_FILE_URI_LENGTH:
            raise ValueInvalid(f"file reference longer than {MAX_FILE_URI_LENGTH}")
        return str(value)
    raise _expected("file reference (string)", value)


# -- validators that capture something from the spec -----------------------------------------


def _string_validator(max_length: int) -> Validator:
    def v_string(value: Any) -> str:
        if type(value) is str and len(value) <= max_length:
            return value
        if isinstance(value, str):
            if len(value) <= max_length:
                return str(value)
            raise ValueInvalid(f"string longer than {max_length}")
        raise _expected("string", value)

    return v_string


def _enum_validator(choices: dict[str, str]) -> Validator:
    by_str: dict[str, int | str] = {}
    by_int: dict[int, int | str] = {}
    for key in choices:
        if _INT_LITERAL.fullmatch(key):
            by_str[key] = by_int[int(key)] = int(key)
        else:
            by_str[key] = key
    shown_keys = list(choices)
    allowed = ", ".join(shown_keys[:20]) + (", ..." if len(shown_keys) > 20 else "")

    def v_enum(value: Any) -> int | str:
        kind = type(value)
        if kind is str:
            result = by_str.get(value)
        elif kind is int:
            result = by_int.get(value)
        else:
            return enum_slow(value)
        if result is not None:
            return result
        return enum_slow(value)

    def enum_slow(value: Any) -> int | str:
        if isinstance(value, bool):
            raise _expected("enum value (string or int)", value)
        if isinstance(value, str):
            found = by_str.get(str(value))
        elif isinstance(value, int):
            found = by_int.get(int(value))
        elif isinstance(value, float):
            found = None
        else:
            raise _expected("enum value (string or int)", value)
        if found is not None:
            return found
        shown = str(value) if isinstance(value, int | float) else _show(value)
        raise ValueInvalid(f"enum value {shown} not in [{allowed}]")

    return v_enum


def _array_validator(item: Validator) -> Validator:
    limit = MAX_ARRAY_ITEMS

    def v_array(value: Any) -> list[Any]:
        if type(value) is list and len(value) <= limit:
            try:
                return [item(element) for element in value]
            except ValueInvalid:
                pass  # fall through to find which element
        return array_slow(value)

    def array_slow(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise _expected("array", value)
        if len(value) > limit:
            raise ValueInvalid(f"array longer than {limit}")
        out = []
        for i, element in enumerate(value):
            try:
                out.append(item(element))
            except ValueInvalid as exc:
                raise exc.within(f"[{i}]") from None
        return out

    return v_array


def _struct_validator(fields: dict[str, Validator]) -> Validator:
    def v_struct(value: Any) -> dict[str, Any]:
        if type(value) is dict:
            try:
                return {key: fields[key](element) for key, element in value.items()}
            except (KeyError, ValueInvalid):
                pass  # fall through to say which field and why
        return struct_slow(value)

    def struct_slow(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _expected("object (struct)", value)
        out: dict[str, Any] = {}
        for key, element in value.items():
            validator = fields.get(key) if isinstance(key, str) else None
            if validator is None:
                raise ValueInvalid(f"struct field {_show(key)} not declared")
            try:
                out[key] = validator(element)
            except ValueInvalid as exc:
                raise exc.within(f"fields.{key}") from None
        return out

    return v_struct


# -- compile ---------------------------------------------------------------------------------

_SCALARS: dict[str, Validator] = {
    "int": _v_int,
    "float": _v_float,
    "double": _v_float,
    "bool": _v_bool,
    "date": _v_date,
    "timestamp": _v_timestamp,
    "file": _v_file,
}


def _element_validator(element: str, spec: TypeSpec) -> Validator:
    scalar = _SCALARS.get(element)
    if scalar is not None:
        return scalar
    if element == "string":
        return _string_validator(
            spec.maxLength if spec.maxLength is not None else DEFAULT_STRING_MAX
        )
    if element == "enum":
        return _enum_validator(spec.enum or {})
    if element == "struct":
        return _struct_validator({f.id: compile_spec(f) for f in spec.fields or ()})
    raise ValueError(f"cannot compile type {element!r}")  # check_spec rules this out


def compile_spec(spec: TypeSpec) -> Validator:
    """The plain value validator of one spec (quality is not handled here).

    The spec is assumed checked (``check_spec``/``check_model``).
    """
    if spec.type == "array":
        return _array_validator(_element_validator(spec.items or "", spec))
    return _element_validator(spec.type, spec)


def _point_validator(spec: TypeSpec) -> PointValidator:
    validate = compile_spec(spec)
    if spec.withQuality:

        def v_quality_point(value: Any) -> tuple[Any, int | None]:
            if type(value) is dict and "value" in value:
                quality = value.get("quality")
                if quality is None:
                    if len(value) == 1:
                        try:
                            return validate(value["value"]), None
                        except ValueInvalid as exc:
                            raise exc.within("value") from None
                elif type(quality) is int and INT64_MIN <= quality <= INT64_MAX and len(value) == 2:
                    try:
                        return validate(value["value"]), quality
                    except ValueInvalid as exc:
                        raise exc.within("value") from None
                return quality_slow(value)
            return validate(value), None

        def quality_slow(value: dict[Any, Any]) -> tuple[Any, int | None]:
            extra = sorted(_show(k) for k in value if k not in ("value", "quality"))
            if extra:
                # Not a wrapper after all: perhaps a struct with fields named like that.
                try:
                    return validate(value), None
                except ValueInvalid:
                    pass
                raise ValueInvalid(f"unexpected keys {', '.join(extra)} beside value/quality")
            quality = value["quality"]
            if not isinstance(quality, int) or isinstance(quality, bool):
                raise ValueInvalid(f"quality must be an int, got {_json_type(quality)}")
            quality = int(quality)
            if not INT64_MIN <= quality <= INT64_MAX:
                raise ValueInvalid("quality out of signed 64-bit range")
            try:
                return validate(value["value"]), quality
            except ValueInvalid as exc:
                raise exc.within("value") from None

        return v_quality_point

    def v_point(value: Any) -> tuple[Any, int | None]:
        try:
            return validate(value), None
        except ValueInvalid:
            if isinstance(value, dict) and "value" in value and "quality" in value:
                raise ValueInvalid(
                    "point has no quality; send a plain value, not {value, quality}"
                ) from None
            raise

    return v_point


def _event_validator(event: EventSpec) -> EventValidator:
    outputs = {o.id: compile_spec(o) for o in event.outputs}

    def v_event(value: Any) -> dict[str, Any]:
        if type(value) is dict:
            try:
                return {key: outputs[key](element) for key, element in value.items()}
            except (KeyError, ValueInvalid):
                pass
        return event_slow(value)

    def event_slow(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _expected("object (event outputs)", value)
        out: dict[str, Any] = {}
        for key, element in value.items():
            validator = outputs.get(key) if isinstance(key, str) else None
            if validator is None:
                raise ValueInvalid(f"output {_show(key)} not declared in event {event.id!r}")
            try:
                out[key] = validator(element)
            except ValueInvalid as exc:
                raise exc.within(f"outputs.{key}") from None
        return out

    return v_event


class FlaggedPoint(NamedTuple):
    """A measurepoint flagged as fault or alert, with the name to show for it."""

    id: str
    flag: Literal["fault", "alert"]
    name: str


@dataclass(frozen=True, slots=True)
class CompiledModel:
    """Validators of one thing model, built once by ``compile_model``."""

    model: ThingModel
    measurepoints: dict[str, PointValidator]
    attributes: dict[str, Validator]
    events: dict[str, EventValidator]
    measurepoint_specs: dict[str, TypeSpec]
    attribute_specs: dict[str, TypeSpec]
    event_specs: dict[str, EventSpec]
    flagged: dict[str, FlaggedPoint] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    """fault-flagged point id -> display name"""
    alerts: dict[str, str] = field(default_factory=dict)
    """alert-flagged point id -> display name"""
    fast_measurepoints: Callable[[bytes], tuple[Any, list[Checked]] | None] | None = None
    """a whole measurepoint request decoded and checked in one msgspec pass (``fast.py``):
    (request, checked values per item), or None when the general path must answer"""

    def check_measurepoints(self, values: Any) -> dict[str, tuple[Any, int | None]]:
        """Validate a whole ``measurepoints`` object of one sample (A.4).

        Returns ``{pointId: (value, quality or None)}``; errors carry the path
        ``measurepoints.<id>...``.
        """
        points = self.measurepoints
        if type(values) is dict:
            try:
                return {key: points[key](value) for key, value in values.items()}
            except (KeyError, ValueInvalid):
                pass
        return _check_members(values, points, "measurepoints", "measurepoint", self.model.id)

    def check_attributes(self, values: Any) -> dict[str, Any]:
        """Validate an ``attributes`` object; errors carry ``attributes.<id>...``."""
        attributes = self.attributes
        if type(values) is dict:
            try:
                return {key: attributes[key](value) for key, value in values.items()}
            except (KeyError, ValueInvalid):
                pass
        return _check_members(values, attributes, "attributes", "attribute", self.model.id)

    def check_events(self, values: Any) -> dict[str, dict[str, Any]]:
        """Validate an ``events`` object ``{eventId: {outputId: value}}``."""
        events = self.events
        if type(values) is dict:
            try:
                return {key: events[key](value) for key, value in values.items()}
            except (KeyError, ValueInvalid):
                pass
        return _check_members(values, events, "events", "event", self.model.id)


def _check_members(
    values: Any, validators: dict[str, Callable[[Any], Any]], path: str, what: str, model_id: str
) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ValueInvalid(f"expected object, got {_json_type(values)}", path)
    out: dict[str, Any] = {}
    for key, value in values.items():
        validator = validators.get(key) if isinstance(key, str) else None
        if validator is None:
            raise ValueInvalid(f"{what} {_show(key)} not in model {model_id!r}", f"{path}.{key}")
        try:
            out[key] = validator(value)
        except ValueInvalid as exc:
            raise exc.within(f"{path}.{key}") from None
    return out


def compile_model(model: ThingModel) -> CompiledModel:
    """Check ``model`` (``ValidationFailed`` if wrong) and build its validators."""
    check_model(model)
    flagged: dict[str, FlaggedPoint] = {}
    for spec in model.measurepoints:
        if spec.flag is not None:
            flagged[spec.id] = FlaggedPoint(spec.id, spec.flag, spec.name or spec.id)
    points = {s.id: _point_validator(s) for s in model.measurepoints}
    return CompiledModel(
        model=model,
        measurepoints=points,
        attributes={s.id: compile_spec(s) for s in model.attributes},
        events={e.id: _event_validator(e) for e in model.events},
        measurepoint_specs={s.id: s for s in model.measurepoints},
        attribute_specs={s.id: s for s in model.attributes},
        event_specs={e.id: e for e in model.events},
        flagged=flagged,
        faults={p.id: p.name for p in flagged.values() if p.flag == "fault"},
        alerts={p.id: p.name for p in flagged.values() if p.flag == "alert"},
        fast_measurepoints=compile_measurepoint_request(model, points),
    )


def validate_value(spec: TypeSpec, value: Any) -> Any:
    """Check ``spec`` and validate one plain value against it (admin API, one-off use).

    ``ValidationFailed`` (field ``spec...``) if the spec is wrong, ``ValueInvalid`` if the
    value is. Quality wrappers are not accepted here: pass the plain value.
    """
    check_spec(spec, "spec")
    return compile_spec(spec)(value)
