"""The EnOS file API (B.3) and the admin file API against a real hub."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import HubProcess, from_template
from tests.e2e.http_support import FILES, MP, Enos, Tenant, make_tenant, message, ok, refused


def upload(c: Enos, dk: str, name: str, data: bytes) -> str:
    t = c.t
    ok(
        c.post_multipart(
            "postMeasurepoint",
            message(
                MP,
                [
                    {
                        "productKey": t.product,
                        "deviceKey": dk,
                        "measurepoints": {"snapshot": f"local://{name}"},
                    }
                ],
            ),
            [(name, data)],
        )
    )
    files = c.http.get(
        f"/api/v1/orgs/{t.org}/products/{t.product}/devices/{dk}/files",
        headers={"Authorization": "Bearer test-admin-token"},
    ).json()["items"]
    return str(next(f["fileUri"] for f in files if f["originalFilename"] == name))


@pytest.fixture
def tenant(shared_hub: HubProcess, shared_api: httpx.Client) -> Tenant:
    return make_tenant(shared_api, shared_hub.url)


@pytest.fixture
def enos(shared_hub: HubProcess, tenant: Tenant) -> Iterator[Enos]:
    c = Enos(shared_hub, tenant)
    yield c
    c.close()


DATA = os.urandom(300_000)


def test_download_and_ranges(enos: Enos) -> None:
    uri = upload(enos, "d0", "cam 1.jpg", DATA)
    r = enos.files("download", uri, "d0")
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(DATA))
    assert "cam%201.jpg" in r.headers["content-disposition"]
    # by assetId too
    r = enos.http.get(
        FILES,
        params={
            "action": "download",
            "orgId": enos.t.org,
            "fileUri": uri,
            "assetId": enos.t.assets["d0"],
        },
        headers=enos.headers(),
    )
    assert r.content == DATA
    size = len(DATA)
    for header, first, last in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-500", size - 500, size - 1),
        ("bytes=299000-999999", 299000, size - 1),
        ("bytes=5-5", 5, 5),
    ]:
        r = enos.files("download", uri, "d0", _headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == DATA[first : last + 1]
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
    r = enos.files("download", uri, "d0", _headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = enos.files("download", uri, "d0", _headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == DATA


def test_file_info(enos: Enos) -> None:
    before = int(time.time() * 1000)
    uri = upload(enos, "d0", "a.bin", DATA)
    body = ok(enos.files("getFileInfo", uri, "d0"))
    info = body["data"]
    assert info == {
        "orgId": enos.t.org,
        "fileUri": uri,
        "originalFilename": "a.bin",
        "fileSize": len(DATA),
        "md5": hashlib.md5(DATA).hexdigest(),
        "createTime": info["createTime"],
    }
    assert before <= info["createTime"] <= int(time.time() * 1000)


def test_signed_download_url(enos: Enos) -> None:
    uri = upload(enos, "d0", "a.bin", DATA)
    url = ok(enos.files("getDownloadUrl", uri, "d0"))["data"]
    assert isinstance(url, str) and url.startswith(enos.hub.url)
    r = httpx.get(url)  # no token
    assert r.status_code == 200 and r.content == DATA
    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == DATA[10:20]
    q = parse_qs(urlsplit(url).query)
    base = url.split("?")[0]
    tampered = {k: v[0] for k, v in q.items()}
    tampered["expires"] = str(int(tampered["expires"]) + 1000)
    refused(httpx.get(base, params=tampered), 403, 1009)
    tampered = {k: v[0] for k, v in q.items()}
    sig = tampered["signature"]
    tampered["signature"] = ("y" if sig[0] == "x" else "x") + sig[1:]  # always a change
    refused(httpx.get(base, params=tampered), 403, 1009)


def test_delete_then_404_while_data_still_refers(enos: Enos, shared_api: httpx.Client) -> None:
    t = enos.t
    uri = upload(enos, "d0", "a.bin", b"to be deleted " + t.org.encode())
    url = ok(enos.files("getDownloadUrl", uri, "d0"))["data"]
    ok(enos.files("delete", uri, "d0", method="POST"))
    refused(enos.files("download", uri, "d0"), 404, 1257)
    refused(enos.files("getFileInfo", uri, "d0"), 404, 1257)
    refused(enos.files("delete", uri, "d0", method="POST"), 404, 1257)
    assert httpx.get(url).status_code == 404
    latest = shared_api.get(
        f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d0/measurepoints"
    ).json()
    assert [s["value"] for s in latest["items"]] == [uri]  # the stored value stays


def test_shared_content_is_kept_until_its_last_file_goes(
    enos: Enos, shared_hub: HubProcess
) -> None:
    content = b"same bytes for two devices " + enos.t.org.encode()
    u0 = upload(enos, "d0", "x.bin", content)
    u1 = upload(enos, "d1", "x.bin", content)
    assert u0 != u1
    sha = hashlib.sha256(content).hexdigest()
    blob = shared_hub.data_dir / "files" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == content
    ok(enos.files("delete", u0, "d0", method="POST"))
    assert blob.exists()
    assert enos.files("download", u1, "d1").content == content
    ok(enos.files("delete", u1, "d1", method="POST"))
    assert not blob.exists()


def test_file_api_errors(enos: Enos) -> None:
    uri = upload(enos, "d0", "a.bin", DATA)
    refused(enos.files("download", uri, "d1"), 404, 1257)  # another device's file
    refused(enos.files("download", uri, "nope"), 404, 1257)
    refused(enos.files("download", "enos-connect://0123", "d0"), 404, 1257)
    refused(enos.files("download", "local://a.bin", "d0"), 400, 1220)
    refused(enos.files("download", "", "d0"), 400, 1220)
    refused(enos.files("rename", uri, "d0"), 400, 1250)
    refused(enos.files("download", uri, "d0", method="POST"), 400, 1250)
    r = enos.http.get(
        FILES,
        params={"action": "download", "orgId": enos.t.org, "fileUri": uri},
        headers=enos.headers(),
    )
    refused(r, 400, 1220)
    r = enos.http.get(
        FILES, params={"action": "download", "orgId": enos.t.org, "fileUri": uri, "deviceKey": "d0"}
    )
    refused(r, 401, 1009)


def test_cross_org_files_refused(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    a = make_tenant(shared_api, shared_hub.url)
    b = make_tenant(shared_api, shared_hub.url)
    ca, cb = Enos(shared_hub, a), Enos(shared_hub, b)
    uri_b = upload(cb, "d0", "secret.bin", b"org B secret")
    # A's token with B's orgId
    for action in ("download", "getFileInfo", "getDownloadUrl"):
        r = ca.http.get(
            FILES,
            params={
                "action": action,
                "orgId": b.org,
                "fileUri": uri_b,
                "productKey": b.product,
                "deviceKey": "d0",
            },
            headers=ca.headers(),
        )
        refused(r, 403, 1009)
    r = ca.http.post(
        FILES,
        params={
            "action": "delete",
            "orgId": b.org,
            "fileUri": uri_b,
            "productKey": b.product,
            "deviceKey": "d0",
        },
        headers=ca.headers(),
    )
    refused(r, 403, 1009)
    # A's orgId, B's device or file
    r = ca.http.get(
        FILES,
        params={
            "action": "download",
            "orgId": a.org,
            "fileUri": uri_b,
            "productKey": b.product,
            "deviceKey": "d0",
        },
        headers=ca.headers(),
    )
    refused(r, 404, 1257)
    r = ca.http.get(
        FILES,
        params={"action": "download", "orgId": a.org, "fileUri": uri_b, "assetId": b.assets["d0"]},
        headers=ca.headers(),
    )
    refused(r, 404, 1257)
    refused(ca.files("download", uri_b, "d0"), 404, 1257)  # A's own device, B's file
    assert cb.files("download", uri_b, "d0").content == b"org B secret"
    # B's signed URL does not open A's file
    uri_a = upload(ca, "d0", "mine.bin", b"org A data")
    url = ok(cb.files("getDownloadUrl", uri_b, "d0"))["data"]
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    q["fileUri"] = uri_a
    refused(httpx.get(url.split("?")[0], params=q), 403, 1009)
    q["orgId"] = a.org
    refused(httpx.get(url.split("?")[0], params=q), 403, 1009)
    ca.close()
    cb.close()


def test_admin_file_api(enos: Enos, shared_api: httpx.Client) -> None:
    t = enos.t
    uris = [upload(enos, "d2", f"f{i}.bin", DATA[: 1000 + i]) for i in range(3)]
    base = f"/api/v1/orgs/{t.org}/devices/{t.assets['d2']}/files"
    items = shared_api.get(base).json()["items"]
    assert sorted(i["fileUri"] for i in items) == sorted(uris)
    page1 = shared_api.get(base, params={"limit": 2}).json()
    page2 = shared_api.get(base, params={"limit": 2, "cursor": page1["nextCursor"]}).json()
    assert len(page1["items"]) == 2 and len(page2["items"]) == 1 and page2["nextCursor"] is None
    fid = items[0]["id"]
    info = shared_api.get(f"{base}/{fid}").json()
    assert info["fileUri"] == f"enos-connect://{fid}"
    r = shared_api.get(f"{base}/{fid}/content", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and len(r.content) == 10
    by_key = f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d2/files/{fid}/content"
    assert shared_api.get(by_key).content == DATA[: info["fileSize"]]
    assert (
        shared_api.get(f"/api/v1/orgs/{t.org}/devices/{t.assets['d0']}/files/{fid}").status_code
        == 404
    )
    assert shared_api.delete(f"{base}/{fid}").status_code == 204
    assert shared_api.get(f"{base}/{fid}").status_code == 404
    refused(enos.files("download", info["fileUri"], "d2"), 404, 1257)
    assert httpx.get(enos.hub.url + base).status_code == 401


@pytest.fixture
def short_url_hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    h = HubProcess(from_template(hub_template, tmp_path / "data"), ["--set", "files.url_ttl=4"])
    h.start()
    yield h
    h.stop()


def test_download_url_expires(short_url_hub: HubProcess) -> None:
    with short_url_hub.client() as api:
        t = make_tenant(api, short_url_hub.url)
    c = Enos(short_url_hub, t)
    uri = upload(c, "d0", "a.bin", b"abc")
    issued = time.monotonic()
    url = ok(c.files("getDownloadUrl", uri, "d0"))["data"]
    assert httpx.get(url).content == b"abc"
    time.sleep(max(0.0, issued + 5.1 - time.monotonic()))
    body = refused(httpx.get(url), 403, 1009)
    assert "expired" in body["msg"]
    c.close()


def test_files_survive_restart(hub: HubProcess, api: httpx.Client) -> None:
    t = make_tenant(api, hub.url)
    c = Enos(hub, t)
    uri = upload(c, "d0", "a.bin", DATA)
    url = ok(c.files("getDownloadUrl", uri, "d0"))["data"]
    hub.restart()
    assert c.files("download", uri, "d0").content == DATA
    assert httpx.get(url).content == DATA  # the signing key is kept in the store
    c.close()
