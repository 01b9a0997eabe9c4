"""History file readers for ``headrace import``: CSV, JSON Lines and Parquet.

Two layouts:

- ``wide`` (default): one row per device and time; a device column (``deviceKey``), a time
  column (``time``) and one column per measurepoint. An empty cell (CSV) or null
  (JSON Lines, Parquet) means "no value for that point at that time". A JSON Lines
  object may also carry the EnOS item form ``{"deviceKey", "time", "measurepoints": {...}}``.
- ``long``: one row per device, time and point; columns ``deviceKey``, ``time``,
  ``point``, ``value`` and optionally ``quality``. Consecutive rows of the same device and
  time become one item.

Times are UTC milliseconds; CSV and JSON Lines also accept ISO 8601 text (naive means
UTC), Parquet also timestamp columns.

CSV cells are typed by their text: integers (``42``, ``-7``) become ints, other numbers
floats, ``true``/``false`` booleans, text starting with ``[`` or ``{`` is parsed as JSON
(arrays, structs, ``{"value": v, "quality": q}``) when it is valid JSON, anything else
stays a string. Points named in ``string_points`` keep their text as it is (for string
points whose values look like numbers).

Every reader yields ``Record``s in file order, each with the position to resume from at
its first row (a byte offset for CSV and JSON Lines, a row index for Parquet, plus the
row number), and ``BadRow``s for rows that cannot become an item (no device, bad time),
which the importer writes to its reject file.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import msgspec

Format = Literal["csv", "jsonl", "parquet"]
Layout = Literal["wide", "long"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a row starts: ``offset`` (bytes for CSV/JSON Lines, row index for Parquet)
    and ``row``, the 1-based number of the row among the data rows."""

    offset: int
    row: int


@dataclass(slots=True)
class Record:
    """One item: a device's values at one time."""

    device: str
    time: int
    values: dict[str, Any]
    pos: Position  # of its first row
    rows: int = 1  # source rows merged into it (long layout)


@dataclass(slots=True)
class BadRow:
    """A row that cannot become an item; goes to the reject file."""

    pos: Position
    message: str
    row: Any = None


@dataclass(slots=True)
class Columns:
    device: str = "deviceKey"
    time: str = "time"
    point: str = "point"
    value: str = "value"
    quality: str = "quality"
    string_points: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "time": self.time,
            "point": self.point,
            "value": self.value,
            "quality": self.quality,
            "string_points": sorted(self.string_points),
        }


class SourceError(Exception):
    """The file cannot be read as asked (missing column, unknown format, bad header)."""


def detect_format(path: str | os.PathLike[str]) -> Format:
    name = os.fspath(path).lower()
    for suffix in (".gz", ".bz2", ".xz"):
        if name.endswith(suffix):
            raise SourceError("compressed files are not supported: decompress first")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def source_size(path: str | os.PathLike[str], fmt: Format) -> int:
    """The total that positions count toward: bytes, or rows for Parquet."""
    if fmt == "parquet":
        pq = _pyarrow_parquet()
        return int(pq.ParquetFile(os.fspath(path)).metadata.num_rows)
    return os.path.getsize(path)


def read_records(
    path: str | os.PathLike[str],
    fmt: Format,
    layout: Layout = "wide",
    columns: Columns | None = None,
    start: Position | None = None,
) -> Iterator[Record | BadRow]:
    """Records of the file from ``start`` (a position this function yielded earlier)."""
    cols = columns or Columns()
    if layout not in ("wide", "long"):
        raise SourceError(f"unknown layout {layout!r} (wide or long)")
    if fmt == "csv":
        rows: Iterator[tuple[Position, dict[str, Any] | BadRow]] = _csv_rows(path, cols, start)
    elif fmt == "jsonl":
        rows = _jsonl_rows(path, start)
    elif fmt == "parquet":
        rows = _parquet_rows(path, cols, start)
    else:
        raise SourceError(f"unknown format {fmt!r} (csv, jsonl or parquet)")
    if layout == "wide":
        return _wide(rows, cols, fmt)
    return _long(rows, cols, fmt)


# -- value conversion ------------------------------------------------------------------------

_MISSING = object()
_json_decode = msgspec.json.decode


def convert_cell(text: str) -> Any:
    """A CSV cell's value by its text (see the module doc); ``_MISSING`` when empty."""
    if not text:
        return _MISSING
    c = text[0]
    if c.isdigit() or c in "-+.":
        if text.isdigit() or (c == "-" and text[1:].isdigit()):
            return int(text)
        try:
            return float(text)
        except ValueError:
            return text
    if c in "[{":
        try:
            return _json_decode(text)
        except msgspec.DecodeError:
            return text
    if text == "true":
        return True
    if text == "false":
        return False
    return text


def parse_time(value: Any) -> int:
    """UTC milliseconds from an int, a float, digits or ISO 8601 text."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise ValueError(f"time {value!r} is not a timestamp")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"time {value!r} is not a timestamp")
        return round(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        ms: float = value.timestamp() * 1000
        return round(ms)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
            return int(text)
        try:
            return round(float(text))
        except ValueError:
            pass
        try:
            dt = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"time {value!r} is neither milliseconds nor ISO 8601") from None
        return parse_time(dt)
    raise ValueError(f"time {value!r} is not a timestamp")


# -- CSV -------------------------------------------------------------------------------------


def _open_text_lines(f: IO[bytes], start: int, counter: list[int]) -> Iterator[str]:
    """Decoded lines from byte ``start``; ``counter[0]`` is the offset after the last
    line handed out."""
    f.seek(start)
    counter[0] = start
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    for raw in f:
        counter[0] += len(raw)
        yield decoder.decode(raw)


def _csv_rows(
    path: str | os.PathLike[str], cols: Columns, start: Position | None
) -> Iterator[tuple[Position, dict[str, Any] | BadRow]]:
    # CSV rows are handed out as (position, {"__cells__": list}) for speed; the header
    # maps names to indexes in _wide / _long.
    with open(path, "rb") as f:
        head = f.read(3)
        bom = 3 if head == codecs.BOM_UTF8 else 0
        counter = [0]
        lines = _open_text_lines(f, bom, counter)
        reader = csv.reader(lines)
        try:
            header = next(reader)
        except StopIteration:
            return
        header_end = counter[0]
        offset, row = header_end, 0
        if start is not None and start.offset > header_end:
            lines = _open_text_lines(f, start.offset, counter)
            reader = csv.reader(lines)
            offset, row = start.offset, start.row - 1
        yield Position(-1, 0), {"__header__": header}
        for cells in reader:
            pos = Position(offset, row + 1)
            offset = counter[0]
            if not cells:
                continue  # blank line
            row += 1
            yield pos, {"__cells__": cells}


# -- JSON Lines ------------------------------------------------------------------------------


def _jsonl_rows(
    path: str | os.PathLike[str], start: Position | None
) -> Iterator[tuple[Position, dict[str, Any] | BadRow]]:
    decode = msgspec.json.Decoder().decode
    with open(path, "rb") as f:
        offset, row = 0, 0
        if start is not None:
            offset, row = start.offset, start.row - 1
        f.seek(offset)
        if offset == 0 and f.read(3) != codecs.BOM_UTF8:
            f.seek(0)
        elif offset == 0:
            offset = 3
        for raw in f:
            line_start = offset
            offset += len(raw)
            if not raw.strip():
                continue
            row += 1
            pos = Position(line_start, row)
            try:
                obj = decode(raw)
            except msgspec.DecodeError as e:
                yield pos, BadRow(pos, f"not valid JSON: {e}", raw.decode(errors="replace"))
                continue
            if not isinstance(obj, dict):
                yield pos, BadRow(pos, "a JSON Lines row must be an object", obj)
                continue
            yield pos, obj


# -- Parquet ---------------------------------------------------------------------------------


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise SourceError(
            "Parquet needs pyarrow: pip install 'headrace[parquet]' (or pip install pyarrow)"
        ) from None
    return pq


def _parquet_rows(
    path: str | os.PathLike[str], cols: Columns, start: Position | None
) -> Iterator[tuple[Position, dict[str, Any] | BadRow]]:
    import pyarrow as pa

    pq = _pyarrow_parquet()
    pf = pq.ParquetFile(os.fspath(path))
    first = start.offset if start is not None else 0
    # skip whole row groups before the resume point
    groups: list[int] = []
    group_start = 0
    skip = 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if group_start + n <= first:
            group_start += n
            continue
        if not groups:
            skip = first - group_start
        groups.append(i)
        group_start += n
    index = first - skip
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=65536, row_groups=groups):
        names = batch.schema.names
        columns: list[list[Any]] = []
        for column in batch.columns:
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
            elif pa.types.is_date(column.type):
                column = column.cast(pa.timestamp("ms")).cast(pa.int64())
            columns.append(column.to_pylist())
        for r in range(batch.num_rows):
            if skip:
                skip -= 1
                index += 1
                continue
            pos = Position(index, index + 1)
            index += 1
            yield pos, {name: col[r] for name, col in zip(names, columns, strict=True)}


# -- layouts ---------------------------------------------------------------------------------


def _need(header: list[str], name: str, what: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise SourceError(
            f"no {what} column {name!r} in the header ({', '.join(header[:20])})"
        ) from None


def _csv_value(string_points: Collection[str]) -> Callable[[str, str], Any]:
    def value(point: str, text: str) -> Any:
        if point in string_points:
            return text if text else _MISSING
        return convert_cell(text)

    return value


def _wide(
    rows: Iterator[tuple[Position, dict[str, Any] | BadRow]], cols: Columns, fmt: Format
) -> Iterator[Record | BadRow]:
    if fmt == "csv":
        yield from _wide_csv(rows, cols)
        return
    dev_col, time_col = cols.device, cols.time
    strings = cols.string_points
    for pos, obj in rows:
        if isinstance(obj, BadRow):
            yield obj
            continue
        device = obj.get(dev_col)
        if not isinstance(device, str) or not device:
            yield BadRow(pos, f"no {dev_col!r} in the row", obj)
            continue
        try:
            ts = parse_time(obj.get(time_col))
        except ValueError as e:
            yield BadRow(pos, str(e), obj)
            continue
        mps = obj.get("measurepoints")
        if isinstance(mps, dict) and fmt == "jsonl":
            values = {k: v for k, v in mps.items() if v is not None}
        else:
            values = {
                k: (str(v) if k in strings and not isinstance(v, str) else v)
                for k, v in obj.items()
                if v is not None and k != dev_col and k != time_col
            }
        if not values:
            continue  # nothing measured at that time
        yield Record(device, ts, values, pos)


def _wide_csv(
    rows: Iterator[tuple[Position, dict[str, Any] | BadRow]], cols: Columns
) -> Iterator[Record | BadRow]:
    header: list[str] | None = None
    dev_i = time_i = 0
    points: list[tuple[int, str, bool]] = []
    conv = convert_cell
    for pos, obj in rows:
        if isinstance(obj, BadRow):
            yield obj
            continue
        if header is None:
            header = obj["__header__"]
            dev_i = _need(header, cols.device, "device")
            time_i = _need(header, cols.time, "time")
            points = [
                (i, name, name in cols.string_points)
                for i, name in enumerate(header)
                if i not in (dev_i, time_i) and name
            ]
            continue
        cells: list[str] = obj["__cells__"]
        if len(cells) != len(header):
            yield BadRow(pos, f"{len(cells)} cells, the header has {len(header)}", cells)
            continue
        device = cells[dev_i]
        if not device:
            yield BadRow(pos, f"no {cols.device!r} in the row", cells)
            continue
        text = cells[time_i]
        if text.isdigit():
            ts = int(text)
        else:
            try:
                ts = parse_time(text)
            except ValueError as e:
                yield BadRow(pos, str(e), cells)
                continue
        values: dict[str, Any] = {}
        for i, name, keep in points:
            cell = cells[i]
            if not cell:
                continue
            values[name] = cell if keep else conv(cell)
        if values:
            yield Record(device, ts, values, pos)


def _long(
    rows: Iterator[tuple[Position, dict[str, Any] | BadRow]], cols: Columns, fmt: Format
) -> Iterator[Record | BadRow]:
    current: Record | None = None
    header_index: dict[str, int] | None = None
    value_of = _csv_value(cols.string_points)
    for pos, obj in rows:
        if isinstance(obj, BadRow):
            yield obj
            continue
        if fmt == "csv":
            if "__header__" in obj:
                header = obj["__header__"]
                header_index = {name: i for i, name in enumerate(header)}
                for name, what in (
                    (cols.device, "device"),
                    (cols.time, "time"),
                    (cols.point, "point"),
                    (cols.value, "value"),
                ):
                    _need(header, name, what)
                continue
            assert header_index is not None
            cells: list[str] = obj["__cells__"]
            if len(cells) != len(header_index):
                yield BadRow(pos, f"{len(cells)} cells, the header has {len(header_index)}", cells)
                continue
            device: Any = cells[header_index[cols.device]]
            time_value: Any = cells[header_index[cols.time]]
            point: Any = cells[header_index[cols.point]]
            q_i = header_index.get(cols.quality)
            quality: Any = convert_cell(cells[q_i]) if q_i is not None else _MISSING
            value = value_of(point, cells[header_index[cols.value]])
            raw_row: Any = cells
        else:
            device = obj.get(cols.device)
            time_value = obj.get(cols.time)
            point = obj.get(cols.point)
            value = obj.get(cols.value, _MISSING)
            if value is None:
                value = _MISSING
            elif point in cols.string_points and not isinstance(value, str):
                value = str(value)
            quality = obj.get(cols.quality, _MISSING)
            if quality is None:
                quality = _MISSING
            raw_row = obj
        if not isinstance(device, str) or not device:
            yield BadRow(pos, f"no {cols.device!r} in the row", raw_row)
            continue
        if not isinstance(point, str) or not point:
            yield BadRow(pos, f"no {cols.point!r} in the row", raw_row)
            continue
        try:
            ts = parse_time(time_value)
        except ValueError as e:
            yield BadRow(pos, str(e), raw_row)
            continue
        if value is _MISSING:
            continue
        if quality is not _MISSING:
            value = {"value": value, "quality": quality}
        if current is not None and current.device == device and current.time == ts:
            current.values[point] = value
            current.rows += 1
            continue
        if current is not None:
            yield current
        current = Record(device, ts, {point: value}, pos)
    if current is not None:
        yield current


def write_csv_text(rows: list[list[Any]]) -> str:
    """CSV text of ``rows`` (a helper for tests and examples)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
