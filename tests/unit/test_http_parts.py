"""Pure pieces of the HTTP integration: ranges, Content-MD5, boundaries, local:// refs."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from headrace.api.files import parse_range
from headrace.api.integration import (
    OrgProducts,
    Upload,
    _boundary,
    _md5_matches,
    resolve_files,
)
from headrace.errors import Refused
from headrace.model.types import Device, Product
from headrace.state.files import file_id_of
from headrace.state.registry import DeviceEntry, Registry
from headrace.store.blobs import BlobInfo, BlobStore

# -- Range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("", 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=2-100", 10, (2, 9)),
        ("bytes=9-9", 10, (9, 9)),
        ("BYTES = 1-2", 10, (1, 2)),
        ("bytes=10-", 10, False),
        ("bytes=10-20", 10, False),
        ("bytes=-0", 10, False),
        ("bytes=0-", 0, False),
        ("bytes=5-2", 10, None),  # invalid: ignored, whole file
        ("bytes=0-1,3-4", 10, None),  # several ranges: whole file
        ("items=0-1", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=1", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: Any) -> None:
    assert parse_range(header, size) == expected


def test_md5_forms() -> None:
    data = b"hello world"
    digest = hashlib.md5(data).digest()
    assert _md5_matches(digest.hex(), digest.hex())
    assert _md5_matches(digest.hex().upper(), digest.hex())
    assert _md5_matches(base64.b64encode(digest).decode(), digest.hex())
    assert not _md5_matches("0" * 32, digest.hex())
    assert not _md5_matches("not base64!", digest.hex())


def test_boundary() -> None:
    assert _boundary("multipart/form-data; boundary=abc") == "abc"
    assert _boundary('multipart/form-data; charset=utf-8; BOUNDARY="a b"') == "a b"
    with pytest.raises(Refused) as e:
        _boundary("multipart/form-data")
    assert e.value.reply_code == 1220


def test_file_uri() -> None:
    assert file_id_of("enos-connect://abc123") == "abc123"
    assert file_id_of("enos-connect://") is None
    assert file_id_of("local://abc") is None
    assert file_id_of("enos-connect://../etc/passwd") is None


# -- local:// resolution -----------------------------------------------------------------


class _Writer:
    def __init__(self, info: BlobInfo):
        self.info = info


def _registry() -> Registry:
    reg = Registry(store=None)  # type: ignore[arg-type]
    for org, pk in (("o1", "p1"), ("o2", "p2")):
        reg.products[pk] = Product(
            orgId=org, productKey=pk, productSecret="s", name=pk, modelId="m"
        )
    for i, (org, pk, dk, aid) in enumerate(
        [("o1", "p1", "d1", "a1"), ("o1", "p1", "d2", "a2"), ("o2", "p2", "x1", "b1")]
    ):
        e = DeviceEntry(
            i + 1,
            Device(orgId=org, productKey=pk, deviceKey=dk, assetId=aid, deviceSecret="s"),
        )
        reg.devices[(pk, dk)] = e
        reg.by_asset[aid] = e
    return reg


def _uploads(*names: str) -> dict[str, Upload]:
    return {
        n: Upload(n, _Writer(BlobInfo("a" * 64, "b" * 32, 5)), None, "")  # type: ignore[arg-type]
        for n in names
    }


def test_resolve_files_everywhere() -> None:
    reg = _registry()
    doc = {
        "params": [
            {
                "productKey": "p1",
                "deviceKey": "d1",
                "measurepoints": {
                    "snap": "local://a.jpg",
                    "clip": {"video": "local://a.jpg", "n": 1, "deep": [{"f": "local://b.bin"}]},
                    "text": "plain",
                },
            },
            {"assetId": "a2", "attributes": {"manual": "local://a.jpg"}},
            {"assetId": "a2", "events": {"motion": {"picture": "local://b.bin"}}},
        ]
    }
    records, used = resolve_files(doc, _uploads("a.jpg", "b.bin", "unused"), reg, "o1", 123)
    assert used == {"a.jpg", "b.bin"}
    # one record per (device, file)
    assert sorted((r.deviceKey, r.originalFilename) for r in records) == [
        ("d1", "a.jpg"),
        ("d1", "b.bin"),
        ("d2", "a.jpg"),
        ("d2", "b.bin"),
    ]
    mp = doc["params"][0]["measurepoints"]
    assert mp["snap"] == mp["clip"]["video"]
    assert mp["snap"].startswith("enos-connect://")
    assert mp["clip"]["deep"][0]["f"].startswith("enos-connect://")
    assert mp["text"] == "plain" and mp["clip"]["n"] == 1
    by_uri = {r.uri: r for r in records}
    assert by_uri[mp["snap"]].assetId == "a1" and by_uri[mp["snap"]].createTime == 123
    assert doc["params"][1]["attributes"]["manual"] != mp["snap"]  # another device's record


def test_resolve_files_other_org_left_for_the_pipeline() -> None:
    reg = _registry()
    doc = {"params": [{"productKey": "p2", "deviceKey": "x1", "measurepoints": {"f": "local://a"}}]}
    records, used = resolve_files(doc, _uploads("a"), reg, "o1", 1)
    assert records == [] and used == set()
    assert doc["params"][0]["measurepoints"]["f"] == "local://a"


def test_resolve_files_missing_part() -> None:
    with pytest.raises(Refused) as e:
        resolve_files(
            {"params": [{"assetId": "a1", "measurepoints": {"f": "local://nope"}}]},
            _uploads("a"),
            _registry(),
            "o1",
            1,
        )
    assert e.value.reply_code == 1220 and "nope" in e.value.message


def test_resolve_files_odd_shapes() -> None:
    reg = _registry()
    for doc in (None, [], {"params": "x"}, {"params": [1, "a", None]}):
        assert resolve_files(doc, _uploads(), reg, "o1", 1) == ([], set())


def test_org_products_view() -> None:
    reg = _registry()
    view = OrgProducts(reg, "o1")
    assert "p1" in view and "p2" not in view and None not in view
    assert list(view) == ["p1"] and len(view) == 1


# -- blob store --------------------------------------------------------------------------


async def test_blob_writer_commit_and_dedupe(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "files")
    blobs.open()
    data = bytes(range(256)) * 9000  # > 2 slices
    w = blobs.writer(10 * 1024 * 1024)
    for i in range(0, len(data), 65536):
        await w.write(data[i : i + 65536])
    info = await w.finish()
    assert info == BlobInfo(
        hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data)
    )
    assert blobs.temp_files() and not blobs.exists(info.sha256)
    await w.commit()
    assert blobs.path(info.sha256).read_bytes() == data
    assert blobs.temp_files() == []
    w2 = blobs.writer(10 * 1024 * 1024)
    await w2.write(data)
    await w2.finish()
    await w2.commit()  # same content: the stored copy stays, the temp file goes
    assert blobs.temp_files() == [] and list(blobs.scan()) == [info.sha256]
    w2.abort()  # no-op after commit
    assert blobs.delete(info.sha256) and not blobs.delete(info.sha256)
    blobs.close()


async def test_blob_writer_limit_and_abort(tmp_path: Path) -> None:
    from headrace.store.blobs import BlobTooLarge

    blobs = BlobStore(tmp_path / "files")
    blobs.open()
    w = blobs.writer(100)
    await w.write(b"x" * 100)
    with pytest.raises(BlobTooLarge):
        await w.write(b"y")
    w.abort()
    assert blobs.temp_files() == []
    blobs.close()


def test_blob_store_open_clears_interrupted_uploads(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "files")
    blobs.open()
    (blobs.tmp / "up-123").write_bytes(b"half a file")
    assert blobs.open() == 1
    assert blobs.temp_files() == []
    blobs.close()
