"""Property fuzzing of the pipeline's JSON decoders, ``ingest/messages.py`` ENVELOPE and
ITEMS (bounded examples): any JSON-ish bytes give a value or msgspec's DecodeError /
ValidationError, never another exception, at any depth of nesting."""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.ingest.messages import ENVELOPE, ITEMS, Envelope, decode_envelope, decode_items
from headrace.proto.enos import METHODS

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CLEAN = (msgspec.DecodeError, msgspec.ValidationError)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["method", "params", "id", "version", "measurepoints", "attributes", "events", "deviceKey",
     "productKey", "assetId", "time", "files", "isRealtimeIntegration"]
)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """Request-shaped values: the fields the decoders know, filled with anything."""
    item = draw(st.dictionaries(_keys, _json, max_size=5))
    params = draw(st.one_of(_json, st.lists(st.just(item) | _json, max_size=3)))
    request = draw(st.dictionaries(_keys, _json, max_size=4))
    if draw(st.booleans()):
        request["method"] = draw(st.sampled_from(METHODS))
    if draw(st.booleans()):
        request["params"] = params
    return request


@st.composite
def json_ish(draw: st.DrawFn) -> bytes:
    """Valid JSON of requests or anything, then perhaps truncated, spliced or corrupted."""
    value = draw(st.one_of(requests(), _json))
    text = json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
    mangle = draw(st.sampled_from(["none", "cut", "flip", "splice", "raw"]))
    if mangle == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mangle == "flip" and text:
        data = bytearray(text)
        data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from(b'{}[]",:\\0e-.\x00\xff'))
        text = bytes(data)
    elif mangle == "splice":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([b"[", b"{", b'"', b"\\u", b",", b"1e999"]))
            + text[at:]
        )
    elif mangle == "raw":
        text = draw(st.binary(max_size=60))
    return text


def decode_all(payload: bytes) -> None:
    """What the pipeline does with a payload: the envelope, then the items of any method."""
    try:
        env = decode_envelope(payload)
    except CLEAN:
        return
    assert isinstance(env, Envelope)
    for method in ITEMS:
        if env.params:
            try:
                items = decode_items(method, env.params)
            except CLEAN:
                continue
            assert isinstance(items, list)


@FUZZ
@given(payload=json_ish())
def test_json_ish_bytes_give_a_value_or_a_clean_error(payload: bytes) -> None:
    decode_all(payload)
    for method in ITEMS:  # and the items decoders on their own
        try:
            decode_items(method, payload)
        except CLEAN:
            pass


def _deep(depth: int, where: str, shape: str) -> bytes:
    open_, close = (b"[", b"]") if shape == "array" else (b'{"a":', b"}")
    nested = open_ * depth + b"1" + close * depth
    if where == "id":
        return b'{"method":"integration.measurepoint.post","id":' + nested + b',"params":[]}'
    if where == "params":
        return b'{"method":"integration.measurepoint.post","params":' + nested + b"}"
    if where == "item":
        return (
            b'{"method":"integration.measurepoint.post","params":[{"deviceKey":"d",'
            b'"measurepoints":' + nested + b"}]}"
        )
    return b'{"params":' + open_ * depth  # unclosed


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("where", ["id", "params", "item", "unclosed"])
@pytest.mark.parametrize("shape", ["array", "object"])
def test_deep_nesting_is_a_clean_error(depth: int, where: str, shape: str) -> None:
    # msgspec decodes nesting up to the interpreter's recursion limit, then raises
    # RecursionError: the pipeline's decoders turn it into a DecodeError like any other
    payload = _deep(depth, where, shape)
    with pytest.raises(CLEAN):
        env = decode_envelope(payload)
        decode_items("integration.measurepoint.post", env.params)


def test_moderate_nesting_decodes() -> None:
    # what a real request nests (structs of arrays) stays far below any limit
    decode_all(_deep(50, "item", "object"))
    env = ENVELOPE.decode(_deep(50, "item", "array"))
    (item,) = ITEMS["integration.measurepoint.post"].decode(env.params)
    assert item.deviceKey == "d"
