"""Admin API for per-product parsing scripts: save, get, delete, rollback, debug."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
from litestar import Request, Router, delete, get, post, put
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..errors import NotFound, ValidationFailed
from ..proto.enos import REPLY_DEVICE_NOT_FOUND, REPLY_NO_PERMISSION, REPLY_OK
from ..scripts.manager import ProductScripts
from .common import admin_guard
from .services import services

Req = Request[Any, Any, Any]
_BASE = "/orgs/{org_id:str}/products/{product_key:str}/script"


class Rollback(msgspec.Struct, forbid_unknown_fields=True):
    version: int


class DebugInput(msgspec.Struct, forbid_unknown_fields=True):
    hex: str | None = None
    base64: str | None = None
    source: str | None = None  # try a script before saving it


def _view(ps: ProductScripts) -> dict[str, Any]:
    current = next((v for v in ps.versions if v.version == ps.current), None)
    return {
        "productKey": ps.productKey,
        "version": ps.current,
        "source": current.source if current else None,
        "versions": [{"version": v.version, "createdAt": v.createdAt} for v in ps.versions],
    }


@put(_BASE, status_code=200)
async def put_script(request: Req, org_id: str, product_key: str) -> dict[str, Any]:
    """Save the request body (JavaScript source) as the product's new current script."""
    body = await request.body()
    try:
        source = body.decode()
    except UnicodeDecodeError:
        raise ValidationFailed("the script must be UTF-8 text", field="body") from None
    return _view(await services(request).scripts.put(org_id, product_key, source))


@get(_BASE)
async def get_script(request: Req, org_id: str, product_key: str) -> dict[str, Any]:
    return _view(services(request).scripts.get(org_id, product_key))


@get(_BASE + "/versions/{version:int}")
async def get_script_version(
    request: Req, org_id: str, product_key: str, version: int
) -> dict[str, Any]:
    """One saved version's source (the console's diff between versions)."""
    ps = services(request).scripts.get(org_id, product_key)
    v = next((v for v in ps.versions if v.version == version), None)
    if v is None:
        raise NotFound(f"product {product_key!r} has no script version {version}")
    return {
        "productKey": ps.productKey,
        "version": v.version,
        "createdAt": v.createdAt,
        "source": v.source,
        "current": v.version == ps.current,
    }


@delete(_BASE, status_code=HTTP_204_NO_CONTENT)
async def delete_script(request: Req, org_id: str, product_key: str) -> None:
    await services(request).scripts.delete(org_id, product_key)


@post(_BASE + "/rollback", status_code=200)
async def rollback_script(
    request: Req, org_id: str, product_key: str, data: Rollback
) -> dict[str, Any]:
    return _view(await services(request).scripts.rollback(org_id, product_key, data.version))


@post(_BASE + "/debug", status_code=200)
async def debug_script(
    request: Req, org_id: str, product_key: str, data: DebugInput
) -> dict[str, Any]:
    """Run the script on sample bytes (hex or base64): its output or its error, and the time."""
    if (data.hex is None) == (data.base64 is None):
        raise ValidationFailed("give exactly one of hex or base64", field="hex")
    try:
        raw = (
            bytes.fromhex(data.hex)
            if data.hex is not None
            else base64.b64decode(data.base64 or "", validate=True)
        )
    except (ValueError, binascii.Error):
        raise ValidationFailed(
            "sample is not valid hex/base64", field="hex" if data.hex else "base64"
        ) from None
    svc = services(request)
    out = await svc.scripts.debug(org_id, product_key, raw, data.source)
    if out.get("ok") and isinstance(out.get("output"), dict):
        # what the pipeline would answer the output (model, devices, ranges), not stored
        checked = svc.pipeline.check(out["output"], org_id=org_id, product_key=product_key)
        out["reply"] = checked.reply()
        # unknown devices are the sample's business, not the script's: "ok" stays
        codes = {checked.code} | {e["code"] for e in checked.errors}
        wrong = codes - {REPLY_OK, REPLY_DEVICE_NOT_FOUND, REPLY_NO_PERMISSION}
        if wrong:
            first = next(
                (e for e in checked.errors if e["code"] in wrong),
                {"code": checked.code, "message": checked.message},
            )
            out["ok"] = False
            out["error"] = f"the hub would refuse this output: {first['code']} {first['message']}"
    return out


script_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["scripts"],
    route_handlers=[
        put_script,
        get_script,
        get_script_version,
        delete_script,
        rollback_script,
        debug_script,
    ],
)
