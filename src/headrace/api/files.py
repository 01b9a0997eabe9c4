"""Files (docs/protocols.md B.3): the EnOS file API and the admin API over a device's files.

EnOS: ``/connect-service/v2.1/files?action=download|delete|getDownloadUrl|getFileInfo``
with ``orgId``, ``fileUri=enos-connect://...`` and ``productKey`` + ``deviceKey`` (or
``assetId``). ``download`` honours a single ``Range: bytes=a-b`` (206). A URL from
``getDownloadUrl`` carries ``expires`` and ``signature`` and needs no token.

Admin: ``/api/v1/orgs/{orgId}/devices/{assetId}/files`` (and under
``/products/{productKey}/devices/{deviceKey}``): list, info, content, delete.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from litestar import Request, Response, Router, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..errors import NotFound, Refused
from ..proto.enos import (
    REPLY_BAD_JSON,
    REPLY_DEVICE_NOT_FOUND,
    REPLY_NO_PERMISSION,
    REPLY_UNKNOWN_METHOD,
)
from ..state.files import FileRecord, file_id_of
from ..state.registry import DeviceEntry
from .common import admin_guard, page_limit
from .integration import authenticate, fail_reply, new_request_id, reply
from .services import Services, services

log = logging.getLogger("headrace.api.files")

Req = Request[Any, Any, Any]
PATH = "/connect-service/v2.1/files"
READ_CHUNK = 1024 * 1024
Limit = Parameter(default=100, ge=1, le=1000)
Cursor = Parameter(default="")


# -- ranges and streaming -----------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """The one byte range asked for as (first, last) inclusive; None to send everything
    (no header, several ranges or a malformed one, which RFC 9110 lets us ignore);
    False when the range cannot be satisfied (416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    first_s, last_s = first_s.strip(), last_s.strip()
    if not first_s:  # suffix: the last n bytes
        if not _offset(last_s):
            return None
        n = int(last_s)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    if not _offset(first_s) or (last_s and not _offset(last_s)):
        return None
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None
    if first >= size:
        return False
    return first, min(last, size - 1)


def _offset(text: str) -> bool:
    """A byte offset as Range writes it: ASCII digits, at most 19 (int64); anything else
    makes the header ignored (the whole file is sent), as RFC 9110 allows."""
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


async def _chunks(f: BinaryIO, length: int) -> AsyncIterator[bytes]:
    try:
        remaining = length
        while remaining > 0:
            data = await asyncio.to_thread(f.read, min(READ_CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        f.close()


def content_response(
    hub_blobs_path: os.PathLike[str] | str, rec: FileRecord, range_header: str | None
) -> Response[Any]:
    """The file's bytes (or the asked range of them) as a streamed response.

    The download is named by the base name of the client's file name only (no path, no
    control or format characters such as direction overrides; the file id when nothing
    is left), as RFC 6266 ``filename*`` in percent-encoded UTF-8."""
    base = rec.originalFilename.replace("\\", "/").rpartition("/")[2]
    name = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in base).strip()
    if not name.strip("."):
        name = rec.id
    try:
        f = open(hub_blobs_path, "rb")  # noqa: SIM115 - closed by the stream
    except FileNotFoundError:
        raise NotFound(f"file {rec.uri} not found") from None
    size = os.fstat(f.fileno()).st_size
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{rec.sha256}"',
    }
    rng = parse_range(range_header, size)
    if rng is False:
        f.close()
        headers["Content-Range"] = f"bytes */{size}"
        return Response(b"", status_code=416, headers=headers)
    status = 200
    first, length = 0, size
    if isinstance(rng, tuple):
        first, last = rng
        length = last - first + 1
        f.seek(first)
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(length)
    return Stream(
        _chunks(f, length),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


# -- EnOS file API ------------------------------------------------------------------------


def _device(svc: Services, org_id: str, q: Any) -> DeviceEntry:
    aid, dk = q.get("assetId"), q.get("deviceKey")
    if not aid and not dk:
        raise Refused(REPLY_BAD_JSON, "give productKey and deviceKey, or assetId")
    entry = svc.registry.find_device(
        org_id, product_key=q.get("productKey", ""), device_key=dk, asset_id=aid
    )
    if entry is None:
        raise Refused(REPLY_DEVICE_NOT_FOUND, "device not found in this organization")
    return entry


def _file(svc: Services, org_id: str, q: Any, entry: DeviceEntry | None) -> FileRecord:
    uri = q.get("fileUri", "")
    if not uri:
        raise Refused(REPLY_BAD_JSON, "query parameter fileUri is missing")
    fid = file_id_of(uri)
    if fid is None:
        raise Refused(REPLY_BAD_JSON, f"fileUri must be enos-connect://<id>, got {uri!r}")
    rec = svc.files.records.get(fid)
    if (
        rec is None
        or rec.orgId != org_id
        or (entry is not None and rec.assetId != entry.device.assetId)
    ):
        raise Refused(REPLY_DEVICE_NOT_FOUND, f"file {uri} not found", status=404)
    return rec


def _public_base(request: Req) -> str:
    s = services(request).settings
    if s["http.public_url"]:
        return str(s["http.public_url"]).rstrip("/")
    return str(request.base_url).rstrip("/")


async def _signed_download(request: Req, request_id: str) -> Response[Any]:
    svc = services(request)
    q = request.query_params
    org_id = q.get("orgId", "")
    fid = file_id_of(q.get("fileUri", "")) or ""
    try:
        expires = int(q.get("expires", ""))
    except ValueError:
        raise Refused(REPLY_NO_PERMISSION, "invalid download URL", status=403) from None
    if not await svc.files.verify(org_id, fid, expires, q.get("signature", "")):
        raise Refused(REPLY_NO_PERMISSION, "invalid download URL signature", status=403)
    if expires < time.time():
        raise Refused(REPLY_NO_PERMISSION, "the download URL has expired", status=403)
    rec = _file(svc, org_id, q, None)
    return content_response(svc.blobs.path(rec.sha256), rec, request.headers.get("range"))


@get(PATH, status_code=200)
async def files_get(request: Req) -> Response[Any]:
    """``download``, ``getDownloadUrl`` or ``getFileInfo`` of a device's file."""
    request_id = new_request_id()
    svc = services(request)
    q = request.query_params
    action = q.get("action", "")
    try:
        if action == "download" and "signature" in q:
            return await _signed_download(request, request_id)
        org_id = q.get("orgId", "")
        authenticate(svc, request.headers.get("apim-accesstoken"), org_id)
        if action not in ("download", "getDownloadUrl", "getFileInfo"):
            raise Refused(REPLY_UNKNOWN_METHOD, f"unknown action {action!r} for GET")
        entry = _device(svc, org_id, q)
        rec = _file(svc, org_id, q, entry)
        if action == "download":
            try:
                return content_response(
                    svc.blobs.path(rec.sha256), rec, request.headers.get("range")
                )
            except NotFound:
                raise Refused(
                    REPLY_DEVICE_NOT_FOUND, f"file {rec.uri} not found", status=404
                ) from None
        if action == "getFileInfo":
            return reply(0, "OK", request_id, rec.info())
        ttl = svc.settings["files.url_ttl"]
        expires, sig = await svc.files.sign(org_id, rec.id, ttl)
        query = urlencode(
            {
                "action": "download",
                "orgId": org_id,
                "fileUri": rec.uri,
                "expires": expires,
                "signature": sig,
            }
        )
        return reply(0, "OK", request_id, f"{_public_base(request)}{PATH}?{query}")
    except Refused as e:
        return fail_reply(e, request_id)


@post(PATH, status_code=200, request_max_body_size=64 * 1024)
async def files_post(request: Req) -> Response[Any]:
    """``delete`` a device's file. Data that referred to it stays; downloads answer 404."""
    request_id = new_request_id()
    svc = services(request)
    q = request.query_params
    try:
        org_id = q.get("orgId", "")
        authenticate(svc, request.headers.get("apim-accesstoken"), org_id)
        action = q.get("action", "")
        if action != "delete":
            raise Refused(REPLY_UNKNOWN_METHOD, f"unknown action {action!r} for POST")
        entry = _device(svc, org_id, q)
        rec = _file(svc, org_id, q, entry)
        await svc.files.delete(rec)
        return reply(0, "OK", request_id)
    except Refused as e:
        return fail_reply(e, request_id)


files_router = Router(path="/", tags=["EnOS files"], route_handlers=[files_get, files_post])


# -- admin API: a device's files ----------------------------------------------------------

BY_ASSET = "/orgs/{org_id:str}/devices/{asset_id:str}"
BY_KEY = "/orgs/{org_id:str}/products/{product_key:str}/devices/{device_key:str}"


def _paths(suffix: str) -> list[str]:
    return [BY_ASSET + suffix, BY_KEY + suffix]


def admin_device(request: Req) -> DeviceEntry:
    reg = services(request).registry
    p = request.path_params
    if "asset_id" in p:
        return reg.device_by_asset(p["org_id"], p["asset_id"])
    return reg.device(p["org_id"], p["product_key"], p["device_key"])


def _admin_file(request: Req, file_id: str) -> FileRecord:
    entry = admin_device(request)
    rec = services(request).files.records.get(file_id)
    if rec is None or rec.assetId != entry.device.assetId or rec.orgId != entry.device.orgId:
        raise NotFound(f"file {file_id!r} not found for this device")
    return rec


def _view(rec: FileRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        **rec.info(),
        "productKey": rec.productKey,
        "deviceKey": rec.deviceKey,
        "assetId": rec.assetId,
        "sha256": rec.sha256,
        "contentType": rec.contentType,
    }


@get(_paths("/files"))
async def list_files(
    request: Req,
    limit: int = Limit,
    cursor: str = Cursor,
) -> dict[str, Any]:
    """The device's files, by id; page on with ``nextCursor``."""
    entry = admin_device(request)
    d = entry.device
    recs = await services(request).files.list_device(d.orgId, d.assetId, cursor, page_limit(limit))
    return {
        "items": [_view(r) for r in recs],
        "nextCursor": recs[-1].id if len(recs) == limit else None,
    }


@get(_paths("/files/{file_id:str}"))
async def file_info(request: Req, file_id: str) -> dict[str, Any]:
    return _view(_admin_file(request, file_id))


_CONTENT = {
    200: ResponseSpec(bytes, False, "the file's bytes", "application/octet-stream"),
    206: ResponseSpec(bytes, False, "the asked `Range` of them", "application/octet-stream"),
    416: ResponseSpec(None, description="the `Range` is outside the file", media_type="text/plain"),
}


@get(_paths("/files/{file_id:str}/content"), responses=_CONTENT)
async def file_content(request: Req, file_id: str) -> Response[Any]:
    rec = _admin_file(request, file_id)
    return content_response(
        services(request).blobs.path(rec.sha256), rec, request.headers.get("range")
    )


@delete(_paths("/files/{file_id:str}"), status_code=HTTP_204_NO_CONTENT)
async def delete_file(request: Req, file_id: str) -> None:
    await services(request).files.delete(_admin_file(request, file_id))


files_admin_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["files"],
    route_handlers=[list_files, file_info, file_content, delete_file],
)
