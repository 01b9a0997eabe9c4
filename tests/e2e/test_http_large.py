"""Large uploads: a 100 MiB file streams to disk with flat memory; a crash or a client
that goes away mid-upload leaves no file behind."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.http_support import INTEGRATION, MP, Enos, Tenant, make_tenant, message, ok

MiB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "big.bin"
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "wb") as f:
        block = bytes(range(256)) * 4096  # 1 MiB
        for i in range(100):
            chunk = block[i:] + block[:i]
            f.write(chunk)
            sha.update(chunk)
            md5.update(chunk)
    return path, sha.hexdigest(), md5.hexdigest()


def test_100mib_upload_with_flat_memory(
    hub: HubProcess, api: httpx.Client, big_file: tuple[Path, str, str]
) -> None:
    path, sha, md5 = big_file
    t = make_tenant(api, hub.url)
    c = Enos(hub, t)
    assert hub.proc is not None
    pid = hub.proc.pid
    # warm up the code paths, then take the baseline
    ok(
        c.post_multipart(
            "postMeasurepoint",
            message(
                MP,
                [
                    {
                        "productKey": t.product,
                        "deviceKey": "d0",
                        "measurepoints": {"snapshot": "local://w"},
                    }
                ],
            ),
            [("w", b"warm" * 100000)],
        )
    )
    rss_before = status_kib(pid, "VmRSS")
    peak_before = status_kib(pid, "VmHWM")
    msg = message(
        MP,
        [
            {
                "productKey": t.product,
                "deviceKey": "d0",
                "measurepoints": {"snapshot": "local://big.bin"},
            }
        ],
    )
    started = time.perf_counter()
    with open(path, "rb") as f:
        r = c.post_multipart("postMeasurepoint", msg, [("big.bin", f)], md5={"big.bin": md5})
    elapsed = time.perf_counter() - started
    ok(r)
    rss_after = status_kib(pid, "VmRSS")
    peak_after = status_kib(pid, "VmHWM")
    # the file never sat in memory: the peak grew by far less than its 100 MiB
    assert peak_after - peak_before < 24 * 1024, (peak_before, peak_after)
    assert rss_after - rss_before < 24 * 1024, (rss_before, rss_after)
    (info,) = [
        f
        for f in api.get(f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d0/files").json()[
            "items"
        ]
        if f["originalFilename"] == "big.bin"
    ]
    assert info["fileSize"] == 100 * MiB and info["md5"] == md5 and info["sha256"] == sha
    blob = hub.data_dir / "files" / sha[:2] / sha[2:4] / sha
    assert blob.stat().st_size == 100 * MiB
    # download it back, streamed, and check the bytes
    got = hashlib.sha256()
    with c.http.stream(
        "GET",
        "/connect-service/v2.1/files",
        params={
            "action": "download",
            "orgId": t.org,
            "fileUri": info["fileUri"],
            "productKey": t.product,
            "deviceKey": "d0",
        },
        headers=c.headers(),
    ) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            got.update(chunk)
    assert got.hexdigest() == sha
    assert status_kib(pid, "VmHWM") - peak_before < 24 * 1024
    print(
        f"100 MiB upload: {100 / elapsed:.0f} MB/s, peak RSS +{(peak_after - peak_before) / 1024:.1f} MiB"
    )
    c.close()


def _start_upload(hub: HubProcess, t: Tenant, total_file: int) -> tuple[socket.socket, bytes]:
    """Open a raw connection and send the request head and the start of a big file part."""
    boundary = "crashboundary"
    msg = json.dumps(
        message(
            MP,
            [
                {
                    "productKey": t.product,
                    "deviceKey": "d0",
                    "measurepoints": {"snapshot": "local://c.bin"},
                }
            ],
        )
    )
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="enos-message"\r\n\r\n{msg}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="enos-file"; filename="c.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + total_file + len(tail)
    s = socket.create_connection(("127.0.0.1", hub.http_port))
    s.sendall(
        (
            f"POST {INTEGRATION}?action=postMeasurepoint&orgId={t.org} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\napim-accesstoken: {t.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        + head
    )
    return s, tail


def _wait_partial(tmp: Path, at_least: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in tmp.iterdir()] if tmp.exists() else []
        if sizes and max(sizes) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("the upload did not reach the disk")


def test_crash_during_upload_leaves_no_file(hub: HubProcess, api: httpx.Client) -> None:
    t = make_tenant(api, hub.url)
    s, _tail = _start_upload(hub, t, 50 * MiB)
    chunk = b"z" * MiB
    for _ in range(20):
        s.sendall(chunk)
    tmp = hub.data_dir / "files" / "tmp"
    _wait_partial(tmp, 8 * MiB)  # a partial file is on disk now
    hub.kill()
    s.close()
    hub.start()
    assert list(tmp.iterdir()) == []
    blobs = [p for p in (hub.data_dir / "files").rglob("*") if p.is_file()]
    assert blobs == []
    base = f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d0"
    assert api.get(base + "/files").json()["items"] == []
    assert api.get(base + "/measurepoints").json()["items"] == []


def test_client_gone_mid_upload_leaves_no_file(hub: HubProcess, api: httpx.Client) -> None:
    t = make_tenant(api, hub.url)
    s, _tail = _start_upload(hub, t, 50 * MiB)
    for _ in range(10):
        s.sendall(b"q" * MiB)
    tmp = hub.data_dir / "files" / "tmp"
    _wait_partial(tmp, 4 * MiB)
    s.close()
    deadline = time.monotonic() + 10
    while list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp.iterdir()) == []
    assert (
        api.get(f"/api/v1/orgs/{t.org}/products/{t.product}/devices/d0/files").json()["items"] == []
    )
    # the hub still serves
    c = Enos(hub, t)
    ok(
        c.post_json(
            "postMeasurepoint",
            message(
                MP, [{"productKey": t.product, "deviceKey": "d0", "measurepoints": {"temp": 1}}]
            ),
        )
    )
    c.close()
