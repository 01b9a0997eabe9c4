"""EnOS real-time message integration over HTTP (docs/protocols.md B.2).

``POST /connect-service/v2.1/integration?action=postMeasurepoint|postAttribute|postEvent&orgId=``
with the ``apim-accesstoken`` header. The body is either plain JSON (the request) or
``multipart/form-data`` with one ``enos-message`` part (the request) and one ``enos-file``
part per file.

The body is read from the ASGI receive channel directly, never buffered whole: the
multipart parser is push-based (sans-io), file parts stream into the blob store as they
arrive, and every limit is checked while streaming. ``local://{name}`` values in the
request (at any depth) become ``enos-connect://{id}`` of the stored file before the
request goes to the ingest pipeline, the same pipeline MQTT uses.

Order of durable steps: file blobs fsynced and renamed -> file records committed ->
the pipeline commits the data -> reply. A refused request removes the file records it
created (and blobs nobody else refers to).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar, Response, Router, asgi
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser

from ..errors import Refused, TokenRejected
from ..ingest.pipeline import Origin, Result
from ..proto.enos import (
    HTTP_ACTIONS,
    HTTP_OK,
    REPLY_BAD_JSON,
    REPLY_DECODE_FAILED,
    REPLY_HTTP_STATUS,
    REPLY_NO_PERMISSION,
    REPLY_OK,
    REPLY_TOO_LARGE,
    REPLY_UNKNOWN_METHOD,
    Kind,
)
from ..state.accounts import ServiceAccount
from ..state.files import FileRecord, new_file_id
from ..state.registry import DeviceEntry, Registry
from ..store.blobs import BlobTooLarge, BlobWriter
from .services import Services

log = logging.getLogger("headrace.api.integration")

PATH = "/connect-service/v2.1/integration"
ACTIONS = HTTP_ACTIONS
LOCAL = "local://"
REPLY_INTERNAL = 1005
_enc = msgspec.json.Encoder()


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


def reply_body(code: int, msg: str, request_id: str, data: Any = None) -> bytes:
    body = {"code": code, "msg": msg, "requestId": request_id, "data": {} if data is None else data}
    return _enc.encode(body)


def reply(
    code: int, msg: str, request_id: str, data: Any = None, status: int = 200
) -> Response[bytes]:
    return Response(
        reply_body(code, msg, request_id, data), status_code=status, media_type="application/json"
    )


def refusal_body(code: int, message: str, errors: list[dict[str, Any]], request_id: str) -> bytes:
    return reply_body(code, message, request_id, {"errors": errors} if errors else {})


def fail_reply(e: Refused, request_id: str) -> Response[bytes]:
    return Response(
        refusal_body(e.reply_code, e.message, e.errors, request_id),
        status_code=e.status,
        media_type="application/json",
    )


class _RequestIds:
    """Random (version 4) UUIDs from a block of ``os.urandom`` (one system call for 256
    ids instead of one each: measured at half the cost of ``uuid.uuid4`` per request)."""

    def __init__(self) -> None:
        self._block = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._block):
            self._block, at = os.urandom(16 * 256), 0
        self._at = at + 16
        h = self._block[at : at + 16].hex()
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


new_request_id = _RequestIds()


def authenticate(svc: Services, token: str | None, org_id: str) -> ServiceAccount:
    """The token's account; the ``orgId`` asked for must be the account's."""
    try:
        acc = svc.accounts.authenticate(token)
    except TokenRejected as e:
        raise Refused(REPLY_NO_PERMISSION, e.message, status=401) from None
    if not org_id:
        raise Refused(REPLY_BAD_JSON, "query parameter orgId is missing")
    if org_id != acc.orgId:
        raise Refused(REPLY_NO_PERMISSION, f"no permission for organization {org_id!r}", status=403)
    return acc


class OrgProducts(Collection[str]):
    """The product keys of one organization, as a live view over the registry."""

    def __init__(self, registry: Registry, org_id: str):
        self.registry = registry
        self.org_id = org_id

    def __contains__(self, pk: object) -> bool:
        p = self.registry.products.get(pk) if isinstance(pk, str) else None
        return p is not None and p.orgId == self.org_id

    def __iter__(self) -> Iterator[str]:
        return (k for k, p in list(self.registry.products.items()) if p.orgId == self.org_id)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Incoming:
    """What the endpoint needs of an ASGI request, read straight from the scope (cheaper
    than a framework request object on this hot path)."""

    __slots__ = ("headers", "query", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive):
        self.scope = scope
        self.receive = receive
        # ASGI header names are lower case already
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.query = dict(
            parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        )

    @property
    def client_ip(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else ""


# -- reading the body ---------------------------------------------------------------------


async def read_body(request: Incoming, limit: int) -> bytes:
    """The whole (small) body, refusing it as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(REPLY_TOO_LARGE, f"message of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise ClientGone
        body: bytes = event.get("body", b"")  # type: ignore[assignment]
        if body:
            size += len(body)
            if size > limit:
                raise Refused(REPLY_TOO_LARGE, f"message exceeds the limit of {limit} bytes")
            chunks.append(body)
        if not event.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(slots=True)
class Upload:
    """One ``enos-file`` part."""

    name: str
    writer: BlobWriter
    content_md5: str | None
    content_type: str


def _md5_matches(header: str, md5_hex: str) -> bool:
    h = header.strip()
    if len(h) == 32:
        return h.lower() == md5_hex
    try:  # RFC 1864 form: base64 of the 16 digest bytes
        return base64.b64decode(h, validate=True).hex() == md5_hex
    except ValueError:
        return False


async def read_multipart(
    svc: Services, request: Incoming, boundary: str, uploads: dict[str, Upload]
) -> bytes | None:
    """Stream a multipart body: file parts to the blob store, the message to memory
    (within its limit). Returns the ``enos-message`` part (None when there is none)."""
    s = svc.settings
    max_message = s["ingest.max_message_size"]
    max_file = s["http.max_file_size"]
    max_files = s["http.max_files"]
    declared = request.headers.get("content-length")
    cap = max_message + max_files * (max_file + 16 * 1024) + 64 * 1024
    if declared and declared.isdigit() and int(declared) > cap:
        raise Refused(REPLY_TOO_LARGE, f"request of {declared} bytes exceeds the limits")
    try:
        parser = PushMultipartParser(
            boundary, max_header_size=8192, max_header_count=16, max_segment_count=max_files + 8
        )
    except MultipartError as e:
        raise Refused(REPLY_BAD_JSON, f"bad multipart boundary: {e}") from None
    message: bytearray | None = None
    sink: bytearray | Upload | None = None
    receive = request.receive
    try:
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise ClientGone
            chunk = event.get("body", b"")
            if chunk:
                for ev in parser.parse(chunk):
                    if isinstance(ev, MultipartSegment):
                        if ev.name == "enos-message":
                            if message is not None:
                                raise Refused(REPLY_BAD_JSON, "more than one enos-message part")
                            sink = message = bytearray()
                        elif ev.name == "enos-file":
                            name = ev.filename or ""
                            if not name:
                                raise Refused(REPLY_BAD_JSON, "an enos-file part has no filename")
                            if name in uploads:
                                raise Refused(REPLY_BAD_JSON, f"two enos-file parts named {name!r}")
                            if len(uploads) >= max_files:
                                raise Refused(REPLY_TOO_LARGE, f"more than {max_files} files")
                            sink = uploads[name] = Upload(
                                name,
                                svc.blobs.writer(max_file),
                                ev.header("Content-MD5"),
                                ev.content_type or "",
                            )
                        else:
                            sink = None  # parts we do not know are skipped
                    elif ev is None:
                        if isinstance(sink, Upload):
                            await _finish(sink)
                        sink = None
                    elif isinstance(sink, Upload):
                        await sink.writer.write(ev)
                    elif sink is not None:
                        if len(sink) + len(ev) > max_message:
                            raise Refused(
                                REPLY_TOO_LARGE,
                                f"enos-message exceeds the limit of {max_message} bytes",
                            )
                        sink += ev
            if not event.get("more_body", False):
                break
        parser.close()
    except BlobTooLarge:
        raise Refused(REPLY_TOO_LARGE, f"a file exceeds the limit of {max_file} bytes") from None
    except ParserLimitReached as e:
        raise Refused(REPLY_TOO_LARGE, f"multipart body over a limit: {e}") from None
    except MultipartError as e:
        raise Refused(REPLY_BAD_JSON, f"malformed multipart body: {e}") from None
    return bytes(message) if message is not None else None


async def _finish(up: Upload) -> None:
    info = await up.writer.finish()
    if up.content_md5 is not None and not _md5_matches(up.content_md5, info.md5):
        raise Refused(
            REPLY_DECODE_FAILED,
            f"Content-MD5 of file {up.name!r} does not match its content (md5 {info.md5})",
        )


# -- local:// references ------------------------------------------------------------------


def resolve_files(
    doc: Any, uploads: dict[str, Upload], registry: Registry, org_id: str, now: int
) -> tuple[list[FileRecord], set[str]]:
    """Replace ``local://name`` values in the request's items by ``enos-connect://id``,
    making one file record per (device, file). Returns the records and the files used."""
    records: dict[tuple[int, str], FileRecord] = {}
    used: set[str] = set()
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, list):
        return [], used
    for item in params:
        if not isinstance(item, dict):
            continue
        entry = registry.find_device(
            org_id,
            product_key=_str_or_none(item.get("productKey")),
            device_key=_str_or_none(item.get("deviceKey")),
            asset_id=_str_or_none(item.get("assetId")),
        )

        def sub(value: Any, entry: DeviceEntry | None = entry) -> Any:
            if isinstance(value, str):
                if not value.startswith(LOCAL):
                    return value
                name = value[len(LOCAL) :]
                up = uploads.get(name)
                if up is None:
                    raise Refused(REPLY_BAD_JSON, f"{value} refers to no enos-file part")
                if entry is None:  # the pipeline refuses this item
                    return value
                rec = records.get((entry.id, name))
                if rec is None:
                    info = up.writer.info
                    assert info is not None
                    d = entry.device
                    rec = records[(entry.id, name)] = FileRecord(
                        id=new_file_id(),
                        orgId=org_id,
                        productKey=d.productKey,
                        deviceKey=d.deviceKey,
                        assetId=d.assetId,
                        originalFilename=name,
                        size=info.size,
                        md5=info.md5,
                        sha256=info.sha256,
                        createTime=now,
                        contentType=up.content_type,
                    )
                used.add(name)
                return rec.uri
            if isinstance(value, list):
                return [sub(v) for v in value]
            if isinstance(value, dict):
                return {k: sub(v) for k, v in value.items()}
            return value

        for key in ("measurepoints", "attributes", "events"):
            if key in item:
                item[key] = sub(item[key])
    return list(records.values()), used


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- the endpoint -------------------------------------------------------------------------


@asgi(PATH, copy_scope=False)
async def integrate(scope: Scope, receive: Receive, send: Send) -> None:
    """Upload measurepoints, attributes or events (with files) of an organization's devices.

    A raw ASGI handler: the body is streamed from ``receive``, never buffered by the
    framework, and the per-request cost stays small. Requests for exactly this path are
    served by ``integration_first`` before the framework (this route answers the others:
    a path Litestar normalizes to it, and it documents the endpoint in the OpenAPI).
    """
    await serve_integration(scope["litestar_app"].state.services, scope, receive, send)


def integration_first(app: Litestar) -> ASGIApp:
    """``app`` with the integration endpoint served ahead of it (with the services of
    ``app``'s state).

    The endpoint needs nothing of the framework (it reads its token, query and body
    itself, answers every error itself, and has no admin principal to audit), and the
    framework's stack (exception middleware, the audit middleware, routing, the route's
    scope copy) was about a fifth of the event loop's time of a single-record post.
    """

    svc: Services = app.state.services

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"] == PATH:
            await serve_integration(svc, scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


async def serve_integration(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """One request of the endpoint (``integrate``), answered in full."""
    request_id = new_request_id()
    if scope.get("method") != "POST":
        body = reply_body(REPLY_UNKNOWN_METHOD, "use POST", request_id)
        return await _send(send, 405, body)
    uploads: dict[str, Upload] = {}
    try:
        status, body = await _integrate(svc, Incoming(scope, receive), request_id, uploads)
    except Refused as e:
        status, body = e.status, refusal_body(e.reply_code, e.message, e.errors, request_id)
    except ClientGone:
        log.info("client went away during an upload", extra={"requestId": request_id})
        status, body = 400, reply_body(REPLY_BAD_JSON, "incomplete request", request_id)
    except Exception:
        log.exception("integration request failed", extra={"requestId": request_id})
        status, body = 500, reply_body(REPLY_INTERNAL, "internal error", request_id)
    finally:
        for up in uploads.values():
            up.writer.abort()  # no-op for committed files
    await _send(send, status, body)


async def _send(send: Send, status: int, body: bytes) -> None:
    start: Any = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _integrate(
    svc: Services, request: Incoming, request_id: str, uploads: dict[str, Upload]
) -> tuple[int, bytes]:
    q = request.query
    org_id = q.get("orgId", "")
    acc = authenticate(svc, request.headers.get("apim-accesstoken"), org_id)
    try:
        return await _integrate_as(svc, request, acc, org_id, request_id, uploads)
    except Refused as e:  # refused before the pipeline: log it for the account too
        record = {
            "topic": f"{PATH}?action={q.get('action', '')}",
            "requestId": "",
            "code": e.reply_code,
            "message": e.message,
            "errors": [],
        }
        now = int(time.time() * 1000)
        await svc.store.append_log([("http:" + acc.appKey, now, "error", _enc.encode(record))])
        raise


async def _integrate_as(
    svc: Services,
    request: Incoming,
    acc: ServiceAccount,
    org_id: str,
    request_id: str,
    uploads: dict[str, Upload],
) -> tuple[int, bytes]:
    """(HTTP status, body) of what the pipeline answered; raises ``Refused`` for what is
    refused before it."""
    action = request.query.get("action", "")
    kind = ACTIONS.get(action)
    if kind is None:
        raise Refused(
            REPLY_UNKNOWN_METHOD,
            f"unknown action {action!r}: use postMeasurepoint, postAttribute or postEvent",
        )
    topic = f"{PATH}?action={action}"
    ip = request.client_ip
    origin = Origin(
        org_id=org_id,
        channel_id="http:" + acc.appKey,
        products=OrgProducts(svc.registry, org_id),
        client_id=acc.appKey,
        address=ip,
        ip=ip,
        realtime=True,
        rate=acc.rateLimit,
    )
    # the rate first, before a body (perhaps with files) is read
    result = await svc.pipeline.admit(origin, topic)
    if result is None:
        ctype = request.headers.get("content-type", "")
        if ctype[:10].lower() == "multipart/":
            boundary = _boundary(ctype)
            message = await read_multipart(svc, request, boundary, uploads)
            if message is None:
                raise Refused(REPLY_BAD_JSON, "the multipart body has no enos-message part")
        else:
            message = await read_body(request, svc.settings["ingest.max_message_size"])
        result = await _handle(svc, message, uploads, origin, kind, topic)
    if result.code != REPLY_OK:
        body = refusal_body(result.code, result.message, result.errors, request_id)
        return REPLY_HTTP_STATUS.get(result.code, 400), body
    return 200, reply_body(HTTP_OK, "OK", request_id)


async def _handle(
    svc: Services,
    message: bytes,
    uploads: dict[str, Upload],
    origin: Origin,
    kind: Kind,
    topic: str,
) -> Result:
    """Files first (blobs and records), then the request; a request not stored leaves no
    file records behind."""
    records: list[FileRecord] = []
    held: list[str] = []
    try:
        if uploads or LOCAL.encode() in message:
            message, records = await _store_files(svc, message, uploads, origin.org_id, held)
        try:
            result = await svc.pipeline.handle(
                message, kind=kind, product_key="", origin=origin, topic=topic, admitted=True
            )
        except Exception:
            if records:  # the data was not stored: neither are its files
                await svc.files.delete_many(records)
            raise
        if result.code != REPLY_OK and records:
            await svc.files.delete_many(records)
        return result
    finally:
        for sha in held:
            svc.files.release(sha)


def _boundary(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                return value
    raise Refused(REPLY_BAD_JSON, "multipart content type without a boundary")


async def _store_files(
    svc: Services, message: bytes, uploads: dict[str, Upload], org_id: str, held: list[str]
) -> tuple[bytes, list[FileRecord]]:
    """Resolve references, move the referenced files into the blob store and commit
    their records; returns the rewritten request."""
    try:
        doc = msgspec.json.decode(message)
    except (msgspec.DecodeError, RecursionError):
        return message, []  # the pipeline answers 1220
    now = int(time.time() * 1000)
    records, used = resolve_files(doc, uploads, svc.registry, org_id, now)
    for name, up in uploads.items():
        if name in used:
            assert up.writer.info is not None
            sha = up.writer.info.sha256
            svc.files.hold(sha)
            held.append(sha)
            await up.writer.commit()
        else:
            up.writer.abort()  # a file nothing refers to has no device to belong to
    await svc.files.add(records)
    return _enc.encode(doc), records


integration_router = Router(path="/", tags=["EnOS integration"], route_handlers=[integrate])
