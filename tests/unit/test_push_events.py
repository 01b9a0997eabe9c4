"""Event derivation (protocols.md C.3), on a registry filled in memory."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from headrace.model.types import Device, Product, ThingModel
from headrace.model.validate import compile_model
from headrace.push.events import ALERT, FAULT, KV, KV_DOC_LIMIT, RAW, Derived, Deriver
from headrace.state.registry import DeviceEntry, Registry
from headrace.store.base import WriteBatch, point_records
from headrace.store.sqlite.store import SQLiteStore
from headrace.stream import records as R

ALL = frozenset({KV, RAW, FAULT, ALERT})
MODEL = msgspec.convert(
    {
        "id": "m",
        "attributes": [{"id": "mac", "type": "string"}, {"id": "site", "type": "string"}],
        "measurepoints": [
            {"id": "temp", "type": "double"},
            {"id": "note", "type": "string", "maxLength": 9000},
            {"id": "fan", "type": "bool", "flag": "fault", "name": "Fan fault"},
            {"id": "level", "type": "int", "flag": "alert"},
        ],
    },
    ThingModel,
)


@pytest.fixture
def deriver(tmp_path: Path) -> Deriver:
    reg = Registry(SQLiteStore(tmp_path / "unused.db"))
    reg.models[("o", "m")] = (MODEL, compile_model(MODEL))
    reg.products["pk"] = Product(
        orgId="o", productKey="pk", productSecret="s", name="p", modelId="m"
    )
    return Deriver(reg)


def dev(i: int, group: str = "") -> DeviceEntry:
    return DeviceEntry(
        i,
        Device(
            orgId="o",
            productKey="pk",
            deviceKey=f"d{i}",
            assetId=f"A{i}",
            deviceSecret="x",
            group=group,
        ),
    )


def derive(
    deriver: Deriver,
    batch: WriteBatch,
    devices: list[DeviceEntry],
    raw: bytes | None,
    now: int,
    wants: Any,
) -> Derived:
    """The events of one request as the fan-out makes them: the request's stream records
    (``stream.records.Builder``, as the pipeline's ``before_write`` writes them), each
    through ``Deriver.record_events``."""
    deriver.remember_macs(batch)
    by_asset = {e.device.assetId: e for e in devices}
    rows = R.Builder(deriver.registry).batch_rows(
        batch, list(by_asset.values()), raw, now, lambda *_: True
    )
    out = Derived()
    for seq, (_org, _kind, doc) in enumerate(rows, 1):
        rec = R.decode(seq, now, doc)
        deriver.record_events(rec, by_asset[rec.assetId], wants(rec.product), out)
    return out


def docs(derived: Any) -> list[dict[str, Any]]:
    return [json.loads(e.doc) for e in derived.events]


def want(types: frozenset[str] = ALL) -> Any:
    return lambda pk: types


def test_kv_per_record_with_device_fields(deriver: Deriver) -> None:
    d1, d2 = dev(1, "g"), dev(2)
    batch = WriteBatch(
        measurepoints=point_records(
            [
                (1, "temp", 1000, 1.5, None),  # one request item: (device, time) and its points
                (1, "note", 1000, "hi", None),
                (2, "temp", 1000, 2.5, None),
                (1, "temp", 2000, 3.5, None),
            ]
        )
    )
    out = docs(derive(deriver, batch, [d1, d2, d1], None, 99_000, want()))
    assert out == [
        {
            "event_type": KV,
            "product_key": "pk",
            "did": "A1",
            "mac": "",
            "group_id": "g",
            "created_at": 1.0,
            "data": {"temp": 1.5, "note": "hi"},
        },
        {
            "event_type": KV,
            "product_key": "pk",
            "did": "A2",
            "mac": "",
            "group_id": "",
            "created_at": 1.0,
            "data": {"temp": 2.5},
        },
        {
            "event_type": KV,
            "product_key": "pk",
            "did": "A1",
            "mac": "",
            "group_id": "g",
            "created_at": 2.0,
            "data": {"temp": 3.5},
        },
    ]


def test_attributes_kv_and_mac(deriver: Deriver) -> None:
    d1 = dev(1)
    batch = WriteBatch(attributes=[(1, "mac", "AA:BB", 5000), (1, "site", "north", 5000)])
    (ev,) = docs(derive(deriver, batch, [d1], None, 5000, want()))
    assert ev["data"] == {"mac": "AA:BB", "site": "north"} and ev["mac"] == "AA:BB"
    assert ev["created_at"] == 5.0
    later = WriteBatch(measurepoints=point_records([(1, "temp", 6000, 1.0, None)]))
    assert docs(derive(deriver, later, [d1], None, 6000, want()))[0]["mac"] == "AA:BB"
    # loaded from the store at start
    fresh = Deriver(deriver.registry)
    fresh.load([], [(1, "CC:DD"), (2, 12345), (3, b"[1]")])
    assert fresh.macs == {1: "CC:DD", 2: "12345"}


def test_raw_event_per_device(deriver: Deriver) -> None:
    raw = bytes([0, 1, 0xFF, 0x80])
    batch = WriteBatch(measurepoints=point_records([(1, "temp", 1000, 1.0, None)]))
    out = docs(derive(deriver, batch, [dev(1)], raw, 7000, want()))
    assert [e["event_type"] for e in out] == [RAW, KV]
    assert base64.b64decode(out[0]["data"]) == raw and out[0]["created_at"] == 7.0


def test_unwanted_types_are_not_built(deriver: Deriver) -> None:
    batch = WriteBatch(
        measurepoints=point_records([(1, "temp", 1000, 1.0, None), (1, "fan", 1000, True, None)])
    )
    out = derive(deriver, batch, [dev(1)], b"x", 1000, want(frozenset()))
    assert out.events == []
    # the fault state is tracked all the same (stable ids whoever subscribes later)
    assert out.faults == [("A1", "fan", 1, deriver.faults[("A1", "fan")].event_id, 1000)]


def test_fault_lifecycle(deriver: Deriver) -> None:
    d = dev(1)

    def step(ts: int, **values: Any) -> list[dict[str, Any]]:
        batch = WriteBatch(
            measurepoints=point_records([(1, k, ts, v, None) for k, v in values.items()])
        )
        return [
            e for e in docs(derive(deriver, batch, [d], None, ts, want())) if e["event_type"] != KV
        ]

    assert step(1000, fan=False, level=0) == []  # 0 from the start: no event
    on = step(2000, fan=True, level=3)
    assert [(e["event_type"], e["data"]["value"]) for e in on] == [(FAULT, 1), (ALERT, 1)]
    assert on[0]["data"] == {"attr_name": "fan", "attr_displayname": "Fan fault", "value": 1}
    assert on[1]["data"]["attr_displayname"] == "level"  # no name: the identifier
    fan_id = on[0]["event_id"]
    assert str(uuid.UUID(fan_id)) == fan_id and fan_id != on[1]["event_id"]
    assert on[0]["created_at"] == 2.0
    assert step(3000, fan=True, level=1) == []  # still on
    assert step(1500, fan=False) == []  # older than the state: backfill changes nothing
    off = step(4000, fan=False)
    assert len(off) == 1 and off[0]["data"]["value"] == 0 and off[0]["event_id"] == fan_id
    again = step(5000, fan=True)
    assert again[0]["event_id"] != fan_id


def test_fault_state_survives_via_rows(deriver: Deriver) -> None:
    batch = WriteBatch(measurepoints=point_records([(1, "fan", 1000, True, None)]))
    out = derive(deriver, batch, [dev(1)], None, 1000, want())
    fresh = Deriver(deriver.registry)
    fresh.load(out.faults, [])
    off = derive(
        fresh,
        WriteBatch(measurepoints=point_records([(1, "fan", 2000, False, None)])),
        [dev(1)],
        None,
        0,
        want(),
    )
    assert json.loads(off.events[-1].doc)["event_id"] == out.faults[0][3]


def test_undo_restores_state(deriver: Deriver) -> None:
    out = derive(
        deriver,
        WriteBatch(measurepoints=point_records([(1, "fan", 1000, 1, None)])),
        [dev(1)],
        None,
        0,
        want(),
    )
    deriver.undo(out)
    assert ("A1", "fan") not in deriver.faults
    again = derive(
        deriver,
        WriteBatch(measurepoints=point_records([(1, "fan", 1000, 1, None)])),
        [dev(1)],
        None,
        0,
        want(),
    )
    assert len(again.faults) == 1  # the change is seen again when the request is resent


def test_big_kv_is_split_and_single_values_are_not(deriver: Deriver) -> None:
    values = {f"k{i}": "x" * 1000 for i in range(20)}  # ~20 KiB in all
    deriver.registry.models[("o", "m")] = (MODEL, compile_model(MODEL))
    batch = WriteBatch(
        measurepoints=point_records([(1, k, 1000, v, None) for k, v in values.items()])
    )
    out = derive(deriver, batch, [dev(1)], None, 0, want())
    assert len(out.events) > 2
    merged: dict[str, Any] = {}
    for e in out.events:
        assert len(e.doc) <= KV_DOC_LIMIT
        merged.update(json.loads(e.doc)["data"])
    assert merged == values
    one = WriteBatch(measurepoints=point_records([(1, "note", 1000, "y" * 9000, None)]))
    (big,) = derive(deriver, one, [dev(1)], None, 0, want()).events
    assert len(big.doc) > KV_DOC_LIMIT  # cannot be split: sent as it is


def test_online_docs(deriver: Deriver) -> None:
    deriver.macs[1] = "M"
    on = json.loads(deriver.online_doc(dev(1, "g"), True, 1500, "10.0.0.1"))
    assert on == {
        "event_type": "device_online",
        "product_key": "pk",
        "did": "A1",
        "mac": "M",
        "group_id": "g",
        "created_at": 1.5,
        "ip": "10.0.0.1",
        "country": "",
        "region": "",
        "city": "",
    }
    off = json.loads(deriver.online_doc(dev(1), False, 2000, "10.0.0.1"))
    assert off["event_type"] == "device_offline" and "ip" not in off


@pytest.mark.parametrize(
    "values",
    [
        {"temp": 21.5, "note": "x"},
        {"temp": 0.1 + 0.2, "note": 'quote " back \\ slash \u2028 é 中 \n', "big": 10**18},
        {"temp": -0.0, "neg": -1e-300, "f": 1e21, "t": True, "n": None},
        {},
    ],
)
def test_spliced_kv_documents_are_the_decoded_ones(deriver: Deriver, values: Any) -> None:
    """The fan-out's fast path (values spliced from the stream record as they are) makes
    the very bytes of the general path (decoded, then encoded again)."""
    deriver.macs[1] = "aa:bb"
    content = {"measurepoints": values, "quality": {"temp": 9}} if values else {}
    raw = msgspec.Raw(msgspec.json.encode(content))  # as the stream's builder writes it
    spliced = deriver.kv_spliced(dev(1, group="g"), 1_700_000_000_123, raw)
    events: list[Any] = []
    deriver._kv(dev(1, group="g"), 1_700_000_000_123, values, events)
    assert spliced == events[0].doc
    assert json.loads(spliced)["data"] == json.loads(json.dumps(values))


def test_spliced_kv_document_too_long_is_left_to_the_split(deriver: Deriver) -> None:
    values = {"note": "x" * KV_DOC_LIMIT}
    raw = msgspec.Raw(msgspec.json.encode({"measurepoints": values}))
    assert deriver.kv_spliced(dev(1), 1000, raw) is None
