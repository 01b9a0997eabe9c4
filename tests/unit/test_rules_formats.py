"""Rule formats (docs/protocols.md D.2): the lean path (content left as JSON) makes the
same bytes as the full one; topics, keys and template checks."""

from __future__ import annotations

import msgspec
import pytest

from headrace.errors import ValidationFailed
from headrace.rules.formats import Formatter, Message
from headrace.rules.model import KafkaSink, Rule, check_rule
from headrace.stream.records import Record, decode, decode_lean


def doc(kind: str, content: dict, source: str = "offline") -> bytes:
    return msgspec.json.encode(
        {
            "org": "o1",
            "product": "p",
            "model": "m",
            "assetId": "A1",
            "deviceKey": "d1",
            "source": source,
            "kind": kind,
            "time": 1700,
            "content": content,
        }
    )


CASES = [
    ("measurepoint", {"measurepoints": {"t": 1.5, "s": "x\u00e9"}}, "offline"),
    ("measurepoint", {"measurepoints": {"t": 1.5}, "quality": {"t": 9}}, "realtime"),
    ("attribute", {"attributes": {"mac": "aa"}}, "realtime"),
    ("event", {"events": {"alarm": {"level": 3}}}, "offline"),
]


@pytest.mark.parametrize("fmt", ["enos", "headrace"])
@pytest.mark.parametrize(("kind", "content", "source"), CASES)
def test_lean_and_full_make_the_same_messages(
    fmt: str, kind: str, content: dict, source: str
) -> None:
    raw = doc(kind, content, source)
    topic = None if fmt == "enos" else "t-{orgId}-{kind}"
    f = Formatter(fmt, topic, "{assetId}")
    full: list[Message] = []
    lean: list[Message] = []
    f.messages(decode(7, 99, raw), full)
    f.lean_messages(decode_lean(7, 99, raw), lean)
    assert [(m.topic, m.key, msgspec.json.decode(m.value)) for m in lean] == [
        (m.topic, m.key, msgspec.json.decode(m.value)) for m in full
    ]


def test_enos_pages_make_the_same_bytes_as_the_full_path() -> None:
    """The enos path for whole pages (lean records + ``enos_batch``: item cut out and spliced,
    envelope heads cached per organization and model) sends byte for byte what the full
    path sends, keys and topics included; a record the envelope cannot carry fails
    alone."""
    rows = []
    for i, (kind, content, source) in enumerate(CASES * 2):
        raw = doc(kind, content, source)
        if i >= len(CASES):  # other organizations, models and assets: not the cached heads
            d = msgspec.json.decode(raw)
            d.update(org="o\u00e92", model='m"x', assetId="A\u00e9")
            raw = msgspec.json.encode(d)
        rows.append((i + 1, 100 + i, raw))
    rows.append((99, 5, doc("online", {"ip": "1.2.3.4"})))
    f = Formatter("enos", None, "{assetId}")
    fast: list[Message] = []
    failed: list[tuple[object, str]] = []
    f.enos_batch([decode_lean(*row) for row in rows], fast, failed)
    full: list[Message] = []
    for seq, at, raw in rows[:-1]:
        f.messages(decode(seq, at, raw), full)
    assert [(m.topic, m.key, m.value, m.seq, m.at) for m in fast] == [
        (m.topic, m.key, m.value, m.seq, m.at) for m in full
    ]
    assert len(fast) == 8 and fast[4].key == "A\u00e9".encode()
    assert fast[4].topic == "MEASURE_POINT_ORIGIN_OFFLINE_o\u00e92"
    assert msgspec.json.decode(fast[4].value)["modelIdPath"] == '/m"x'
    assert [(r.seq, err) for r, err in failed] == [(99, "KeyError: 'online'")]  # type: ignore[attr-defined]


def test_enos_envelope_and_topics() -> None:
    f = Formatter("enos", None, "{assetId}")
    out: list[Message] = []
    for kind, content, source in CASES:
        f.messages(decode(1, 2, doc(kind, content, source)), out)
    assert [m.topic for m in out] == [
        "MEASURE_POINT_ORIGIN_OFFLINE_o1",
        "MEASURE_POINT_ORIGIN_o1",
        "ATTRIBUTE_ORIGIN_o1",
        "REALTIME_MODEL_EVENT_TOPIC",
    ]
    assert msgspec.json.decode(out[1].value) == {
        "orgId": "o1",
        "modelId": "m",
        "modelIdPath": "/m",
        "payload": [{"assetId": "A1", "time": 1700, "measurepoints": {"t": 1.5}}],
    }
    assert all(m.key == b"A1" for m in out)


def test_enos_points_one_per_point_with_quality() -> None:
    f = Formatter("enos-point", "pts", "{assetId}/{pointId}")
    out: list[Message] = []
    r: Record = decode(
        1, 2, doc("measurepoint", {"measurepoints": {"a": 1, "b": 2}, "quality": {"b": 9}})
    )
    f.messages(r, out)
    assert [(m.key, msgspec.json.decode(m.value)["quality"]) for m in out] == [
        (b"A1/a", None),
        (b"A1/b", 9),
    ]


def test_templates_are_checked() -> None:
    def rule(**sink: object) -> Rule:
        return Rule(orgId="o", ruleId="r", name="n", sink=KafkaSink(bootstrap="h:1", **sink))  # type: ignore[arg-type]

    check_rule(rule(topic="x-{orgId}-{source}", key="{deviceKey}"))
    for bad in ({"topic": "x-{secret}"}, {"key": "{assetId!r}"}, {"topic": "sp ace"}, {"key": "{"}):
        with pytest.raises(ValidationFailed):
            check_rule(rule(**bad))
