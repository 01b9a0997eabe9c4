"""Reading a message log: the received bytes a payload record keeps (text, hex, the cap),
and ``GET .../logs`` filtered by device and error code in the hub, paged over a real
SQLite store (every match once, in order, however sparse; a bounded scan per page)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from headrace.api import common
from headrace.api.common import log_matcher, read_log
from headrace.ingest.logpayload import LOG_PAYLOAD_MAX, payload_fields
from headrace.store.sqlite.store import SQLiteStore


def test_text_payload_kept_as_text() -> None:
    body = b'{"id":"1","params":[{"deviceKey":"d\xc3\xa9v","measurepoints":{}}]}\n'
    assert payload_fields(body) == {"payload": body.decode()}


@pytest.mark.parametrize(
    "body",
    [bytes([1, 0, 200, 0xFE]), b"ok\x00", "é".encode("latin-1") + b"abc", b"\x1b[0m"],
)
def test_binary_payload_kept_as_hex(body: bytes) -> None:
    assert payload_fields(body) == {"payloadHex": body.hex()}


def test_cap() -> None:
    big = b"a" * (LOG_PAYLOAD_MAX + 10)
    assert payload_fields(big) == {"payload": "a" * LOG_PAYLOAD_MAX, "payloadTruncated": True}
    raw = bytes(range(256)) * 40
    got = payload_fields(raw)
    assert got == {"payloadHex": raw[:LOG_PAYLOAD_MAX].hex(), "payloadTruncated": True}
    # a character cut by the cap is dropped, the text stays text
    cut = b"a" * (LOG_PAYLOAD_MAX - 1) + "é".encode()
    assert payload_fields(cut) == {"payload": "a" * (LOG_PAYLOAD_MAX - 1), "payloadTruncated": True}
    # an invalid byte before the cap is not a cut character: hex
    bad = b"\xff" + b"a" * LOG_PAYLOAD_MAX
    assert "payloadHex" in payload_fields(bad)
    assert payload_fields(b"") == {"payload": ""}


def test_matcher() -> None:
    err = json.dumps({"code": 1204, "errors": [{"deviceKey": "d2", "code": 1257}]}).encode()
    match = log_matcher(set(), "d2", 1257)
    assert match("error", err)
    assert log_matcher(set(), None, 1204)("error", err)
    assert not log_matcher(set(), "d1", None)("error", err)
    assert not log_matcher(set(), None, 200)("error", err)
    assert not log_matcher({"payload"}, None, None)("error", err)
    assert log_matcher(set(), "d9", None)("connection", b'{"devices":["d9"]}')


@dataclass
class Svc:
    """What ``read_log`` reads of the hub's services: the store."""

    store: SQLiteStore


async def read_all(svc: Svc, limit: int, **filters: Any) -> tuple[list[int], int]:
    ids: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await read_log(
            svc,  # type: ignore[arg-type]
            "ch",
            "",
            ("connection", "payload", "error"),
            0,
            None,
            limit,
            cursor,
            **filters,
        )
        pages += 1
        assert len(page["items"]) <= limit
        ids += [r["id"] for r in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return ids, pages


async def test_filtered_pages(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = []
    for i in range(300):
        doc: dict[str, Any] = {"code": 200, "n": i}
        if i % 37 == 5:
            doc = {"code": 1204, "errors": [{"deviceKey": f"d{i % 2}", "code": 1257}]}
        recs.append(("ch", 1000 + i, "error" if "errors" in doc else "payload", json.dumps(doc)))
    await store.append_log([(c, t, k, d.encode()) for c, t, k, d in recs])
    await store.append_log([("other", 5000, "error", recs[5][3].encode())])  # another log
    every = await read_all(Svc(store), 1000)
    assert len(every[0]) == 300 and every[1] == 1
    newest_first = every[0]
    want = [newest_first[299 - i] for i in range(299, -1, -1) if i % 37 == 5]
    assert len(want) == 8
    # every match once, newest first, over pages of 2, whatever the filter
    assert (await read_all(Svc(store), 2, code=1257))[0] == want
    assert (await read_all(Svc(store), 2, code=1204))[0] == want
    d1 = [newest_first[299 - i] for i in range(299, -1, -1) if i % 37 == 5 and i % 2]
    assert (await read_all(Svc(store), 3, device="d1"))[0] == d1
    assert (await read_all(Svc(store), 3, device="d1", code=1204))[0] == d1
    assert (await read_all(Svc(store), 3, device="d1", code=200))[0] == []
    assert len((await read_all(Svc(store), 100, code=200))[0]) == 292
    # a page reads at most LOG_SCAN rows: sparse matches take more pages, none is lost
    monkeypatch.setattr(common, "LOG_SCAN", 25)
    ids, pages = await read_all(Svc(store), 5, code=1257)
    assert ids == want and pages >= 300 // 25
