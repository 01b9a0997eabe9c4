"""Hostile file names on the file API (B.3): a download names the stored file by its
base name only, never the path, control characters or direction overrides a client
put in its multipart filename."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HubProcess
from tests.e2e.http_support import FILES, INTEGRATION, MP, Enos, Tenant, make_tenant, message, ok

# the filename as the client sends it -> the name a download may give (None: the file id)
HOSTILE: list[tuple[str, str | None]] = [
    ("../../etc/passwd", "passwd"),
    ("/etc/cron.d/evil", "evil"),
    ("C:/Windows/System32/drivers/etc/hosts", "hosts"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("a\x01b\x7f.txt", "ab.txt"),
    ("\x1b[31mred.txt", "[31mred.txt"),
    ("tab\there.txt", "tab here.txt"),
    ("caf\u00e9 \u202egnp.exe", "caf\u00e9 gnp.exe"),  # U+202E: right-to-left override
    ("\u62a5\u544a.pdf", "\u62a5\u544a.pdf"),
    ('quote".txt', 'quote".txt'),
    ("50%; filename=x.sh", "50%; filename=x.sh"),
    ("dir/..", None),
    ("../", None),
]


def _raw_upload(c: Enos, device: str, name: str, data: bytes) -> httpx.Response:
    """A multipart body written by hand: the filename goes on the wire as it is (httpx
    would escape control characters), but for the quote, HTML5-escaped as browsers do."""
    boundary = uuid.uuid4().hex
    msg = message(
        MP,
        [
            {
                "productKey": c.t.product,
                "deviceKey": device,
                "measurepoints": {"snapshot": f"local://{name}"},
            }
        ],
    )
    quoted = name.replace('"', "%22")
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="enos-message"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(msg)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="enos-file"; filename="{quoted}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return c.http.post(
        INTEGRATION,
        params={"action": "postMeasurepoint", "orgId": c.t.org},
        content=body,
        headers={**c.headers(), "content-type": f"multipart/form-data; boundary={boundary}"},
    )


def _stored(c: Enos, device: str) -> dict[str, str]:
    """originalFilename -> fileUri of the device's files."""
    files = c.http.get(
        f"/api/v1/orgs/{c.t.org}/products/{c.t.product}/devices/{device}/files",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["items"]
    return {f["originalFilename"]: f["fileUri"] for f in files}


def _disposition_name(header: str) -> str:
    """The name a download offers: exactly one RFC 6266 ``filename*=UTF-8''...``."""
    assert header.isascii() and header.isprintable(), repr(header)
    kind, _, params = header.partition(";")
    assert kind == "attachment"
    (param,) = [p.strip() for p in params.split(";")]
    key, _, value = param.partition("=")
    assert key == "filename*" and value.startswith("UTF-8''"), header
    encoded = value.removeprefix("UTF-8''")
    # attr-chars only: nothing a client could read as a separator, quote or path
    assert all(ch.isalnum() or ch in "%-._~" for ch in encoded), encoded
    return unquote(encoded, errors="strict")


@pytest.fixture(scope="module")
def enos(shared_hub: HubProcess, shared_api: httpx.Client) -> Iterator[Enos]:
    tenant: Tenant = make_tenant(shared_api, shared_hub.url, devices=len(HOSTILE))
    c = Enos(shared_hub, tenant)
    yield c
    c.close()


@pytest.mark.parametrize(("index", "sent", "expected"), [(i, *h) for i, h in enumerate(HOSTILE)])
def test_download_names_the_base_name_only(
    enos: Enos, index: int, sent: str, expected: str | None
) -> None:
    device = enos.t.devices[index]
    ok(_raw_upload(enos, device, sent, b"payload"))
    stored = _stored(enos, device)
    assert list(stored) == [sent]  # the record keeps what the client sent (getFileInfo)
    uri = stored[sent]
    r = enos.files("download", uri, device)
    assert r.status_code == 200 and r.content == b"payload"
    name = _disposition_name(r.headers["content-disposition"])
    assert name == (expected if expected is not None else uri.removeprefix("enos-connect://"))
    assert "/" not in name and "\\" not in name and name.strip(". ")
    assert name.isprintable()
    # a signed download URL and the admin content route answer the same header
    signed = ok(enos.files("getDownloadUrl", uri, device))["data"]
    r = httpx.get(signed if isinstance(signed, str) else signed["url"])
    assert r.status_code == 200, r.text
    assert _disposition_name(r.headers["content-disposition"]) == name
    file_id = uri.removeprefix("enos-connect://")
    r = enos.http.get(
        f"/api/v1/orgs/{enos.t.org}/products/{enos.t.product}/devices/{device}/files/{file_id}/content",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 200 and _disposition_name(r.headers["content-disposition"]) == name


def test_files_path_is_not_reachable_by_name(enos: Enos) -> None:
    # the file API addresses files by id only: a name in fileUri is a malformed uri
    r = enos.http.get(
        FILES,
        params={
            "action": "download",
            "orgId": enos.t.org,
            "fileUri": "enos-connect://../../etc/passwd",
            "productKey": enos.t.product,
            "deviceKey": enos.t.devices[0],
        },
        headers=enos.headers(),
    )
    assert r.status_code == 400 and r.json()["code"] == 1220
