"""History file readers of ``headrace import``: layouts, typing, positions, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headrace.client.importer import _batches, file_identity
from headrace.client.readers import (
    BadRow,
    Columns,
    Position,
    Record,
    SourceError,
    convert_cell,
    detect_format,
    parse_time,
    read_records,
    source_size,
)


def records(path: Path, fmt: str, layout: str = "wide", **kw: object) -> list[Record | BadRow]:
    return list(read_records(path, fmt, layout, **kw))  # type: ignore[arg-type]


def only_records(items: list[Record | BadRow]) -> list[Record]:
    return [r for r in items if isinstance(r, Record)]


def test_convert_cell_types() -> None:
    assert convert_cell("42") == 42 and type(convert_cell("42")) is int
    assert convert_cell("-7") == -7
    assert convert_cell("1.5") == 1.5
    assert convert_cell("-0.25") == -0.25
    assert convert_cell("1e3") == 1000.0
    assert convert_cell(".5") == 0.5
    assert convert_cell("true") is True and convert_cell("false") is False
    assert convert_cell('["1.02","2.02"]') == ["1.02", "2.02"]
    assert convert_cell('{"value": 1, "quality": 9}') == {"value": 1, "quality": 9}
    assert convert_cell("[not json") == "[not json"
    assert convert_cell("00:11:22") == "00:11:22"
    assert convert_cell("-") == "-"
    assert convert_cell("nan") == "nan"  # stays text: the model decides


def test_parse_time() -> None:
    assert parse_time(1_700_000_000_000) == 1_700_000_000_000
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("1700000000000.4") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # naive is UTC
    assert parse_time("2023-11-15T06:13:20.5+08:00") == 1_700_000_000_500
    for bad in ("yesterday", "", None, True, float("nan")):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_detect_format() -> None:
    assert detect_format("a.csv") == "csv"
    assert detect_format("a.JSONL") == "jsonl"
    assert detect_format("a.ndjson") == "jsonl"
    assert detect_format("a.parquet") == "parquet"
    assert detect_format("a.txt") == "csv"
    with pytest.raises(SourceError):
        detect_format("a.csv.gz")


def test_csv_wide(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text(
        "deviceKey,time,temp,mode,mac,branchCurr\n"
        'd1,1000,20.5,1,00:11,"[""1"",""2""]"\n'
        "d2,1000,,0,,\n"
        "\n"
        "d3,2000,,,,\n"  # nothing measured: skipped
        "d1,2023-11-14T22:13:20Z,21,,,\n"
    )
    got = only_records(records(p, "csv"))
    assert [(r.device, r.time, r.values) for r in got] == [
        ("d1", 1000, {"temp": 20.5, "mode": 1, "mac": "00:11", "branchCurr": ["1", "2"]}),
        ("d2", 1000, {"mode": 0}),
        ("d1", 1_700_000_000_000, {"temp": 21}),
    ]
    assert [r.pos.row for r in got] == [1, 2, 4]  # blank lines are not rows


def test_csv_string_points_and_columns(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("id;ts;serial;temp\n".replace(";", ",") + "d1,5,0042,1.5\n")
    cols = Columns(device="id", time="ts", string_points=frozenset({"serial"}))
    (r,) = only_records(records(p, "csv", columns=cols))
    assert r.values == {"serial": "0042", "temp": 1.5}


def test_csv_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("device,time,temp\nd1,1,2\n")
    with pytest.raises(SourceError, match="deviceKey"):
        records(p, "csv")


def test_csv_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("deviceKey,time,temp\nd1,1,2\n,2,3\nd1,soon,4\nd1,3\nd1,4,5\n")
    got = records(p, "csv")
    bad = [b for b in got if isinstance(b, BadRow)]
    assert [(b.pos.row, b.message.split(" ")[0]) for b in bad] == [
        (2, "no"),
        (3, "time"),
        (4, "2"),
    ]
    assert [r.pos.row for r in only_records(got)] == [1, 5]


def test_csv_bom_quotes_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_bytes(
        b'\xef\xbb\xbfdeviceKey,time,note\r\nd1,1,"a, b"\r\nd2,2,"multi\nline"\r\nd3,3,x\r\n'
    )
    got = only_records(records(p, "csv", columns=Columns(string_points=frozenset({"note"}))))
    assert [(r.device, r.values["note"]) for r in got] == [
        ("d1", "a, b"),
        ("d2", "multi\nline"),
        ("d3", "x"),
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_resume_from_every_position(tmp_path: Path, fmt: str) -> None:
    """Reading from any record's position yields exactly the rest of the file."""
    rows = [{"deviceKey": f"d{i % 3}", "time": 1000 + i, "temp": i * 0.5} for i in range(40)]
    p = tmp_path / f"h.{fmt}"
    if fmt == "csv":
        p.write_text(
            "deviceKey,time,temp\n"
            + "".join(f"{r['deviceKey']},{r['time']},{r['temp']}\n" for r in rows)
        )
    elif fmt == "jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), p, row_group_size=7)
    full = only_records(records(p, fmt))
    assert [(r.device, r.time, r.values) for r in full] == [
        (r["deviceKey"], r["time"], {"temp": r["temp"]}) for r in rows
    ]
    for k, rec in enumerate(full):
        rest = only_records(records(p, fmt, start=rec.pos))
        assert rest == full[k:]
    assert source_size(p, fmt) == (40 if fmt == "parquet" else p.stat().st_size)


def test_jsonl_wide_forms(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text(
        '{"deviceKey":"d1","time":1,"temp":1.5,"mode":null}\n'
        '{"deviceKey":"d1","time":2,"measurepoints":{"Power":{"value":1,"quality":9}}}\n'
        "not json\n"
        "[1,2]\n"
        '{"time":3,"temp":1}\n'
        '{"deviceKey":"d2","time":"2023-11-14T22:13:20Z","temp":2}\n'
    )
    got = records(p, "jsonl")
    assert [(r.device, r.time, r.values) for r in only_records(got)] == [
        ("d1", 1, {"temp": 1.5}),
        ("d1", 2, {"Power": {"value": 1, "quality": 9}}),
        ("d2", 1_700_000_000_000, {"temp": 2}),
    ]
    assert [b.pos.row for b in got if isinstance(b, BadRow)] == [3, 4, 5]


def test_long_layout_merges_consecutive_rows(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text(
        "deviceKey,time,point,value,quality\n"
        "d1,1,temp,20.5,\n"
        "d1,1,Power,3,9\n"
        "d1,2,temp,21,\n"
        "d2,2,temp,,\n"  # empty value: nothing
        "d2,2,mac,00:11,\n"
        "d1,1,mode,1,\n"  # same device+time again later: a separate item
    )
    got = only_records(records(p, "csv", "long"))
    assert [(r.device, r.time, r.values, r.rows, r.pos.row) for r in got] == [
        ("d1", 1, {"temp": 20.5, "Power": {"value": 3, "quality": 9}}, 2, 1),
        ("d1", 2, {"temp": 21}, 1, 3),
        ("d2", 2, {"mac": "00:11"}, 1, 5),
        ("d1", 1, {"mode": 1}, 1, 6),
    ]
    # resume at the start of a merged item
    assert only_records(records(p, "csv", "long", start=got[1].pos)) == got[1:]


def test_long_layout_jsonl_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"dev": "d1", "t": 1, "p": "temp", "v": 1.5},
        {"dev": "d1", "t": 1, "p": "mode", "v": 1},
        {"dev": "d1", "t": 2, "p": "temp", "v": None},
        {"dev": "d2", "t": 2, "p": "temp", "v": 2.5},
    ]
    cols = Columns(device="dev", time="t", point="p", value="v")
    j = tmp_path / "h.jsonl"
    j.write_text("".join(json.dumps(r) + "\n" for r in rows))
    q = tmp_path / "h.parquet"
    table = pa.table(
        {
            "dev": [r["dev"] for r in rows],
            "t": [r["t"] for r in rows],
            "p": [r["p"] for r in rows],
            "v": [float(r["v"]) if r["v"] is not None else None for r in rows],  # type: ignore[arg-type]
        }
    )
    pq.write_table(table, q)
    for path, fmt in ((j, "jsonl"), (q, "parquet")):
        got = only_records(records(path, fmt, "long", columns=cols))
        assert [(r.device, r.time, r.values) for r in got] == [
            ("d1", 1, {"temp": 1.5, "mode": 1}),
            ("d2", 2, {"temp": 2.5}),
        ]


def test_parquet_timestamp_column(tmp_path: Path) -> None:
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    t = datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)
    table = pa.table(
        {
            "deviceKey": ["d1", "d2"],
            "time": pa.array([t, t], type=pa.timestamp("us", tz="UTC")),
            "temp": [1.5, None],
            "mode": [1, 2],
        }
    )
    p = tmp_path / "h.parquet"
    pq.write_table(table, p)
    got = only_records(records(p, "parquet"))
    assert [(r.device, r.time, r.values) for r in got] == [
        ("d1", 1_700_000_000_000, {"temp": 1.5, "mode": 1}),
        ("d2", 1_700_000_000_000, {"mode": 2}),
    ]


def test_batches_end_where_the_next_element_starts(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("deviceKey,time,temp\n" + "".join(f"d1,{i},1\n" for i in range(7)) + ",9,9\n")
    size = p.stat().st_size
    got = list(_batches(read_records(p, "csv"), 3, Position(size, -1)))
    assert [len(b.records) for b in got] == [3, 3, 1]
    assert [len(b.bad) for b in got] == [0, 0, 1]
    assert got[0].end == got[1].records[0].pos
    assert got[1].end == got[2].records[0].pos
    assert got[2].last and got[2].end == Position(size, 8)
    # resuming at a batch end gives the following batches exactly
    again = list(_batches(read_records(p, "csv", start=got[0].end), 3, Position(size, -1)))
    assert [r.pos for b in again for r in b.records] == [r.pos for b in got[1:] for r in b.records]


def test_file_identity_changes_with_content(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("deviceKey,time,temp\nd1,1,2\n")
    a = file_identity(p)
    p.write_text("deviceKey,time,temp\nd1,1,3\n")
    b = file_identity(p)
    assert a["size"] == b["size"] and a["head"] != b["head"]
