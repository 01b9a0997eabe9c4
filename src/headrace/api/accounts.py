"""Admin API for service accounts (``/api/v1/orgs/{orgId}/service-accounts``).

The ``appSecret`` is returned only when an account is created or its secret rotated.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..state.accounts import AccountCreate, AccountUpdate, ServiceAccount
from .admin import End, LogCursor, Start
from .common import admin_guard, page, page_limit, read_log
from .files import Cursor, Limit
from .services import services

Req = Request[Any, Any, Any]
LOG_KINDS = ("payload", "error")


class AccountView(msgspec.Struct, kw_only=True, omit_defaults=True):
    orgId: str
    appKey: str
    name: str
    description: str
    enabled: bool
    rateLimit: float
    createdAt: int
    secretRotatedAt: int
    tokenExpiresAt: int | None = None  # the current access token's expiry (ms), if any
    appSecret: str | None = None  # only when created or rotated


def view(request: Req, acc: ServiceAccount, secret: str | None = None) -> AccountView:
    tok = services(request).accounts.current.get(acc.appKey)
    return AccountView(
        orgId=acc.orgId,
        appKey=acc.appKey,
        name=acc.name,
        description=acc.description,
        enabled=acc.enabled,
        rateLimit=acc.rateLimit,
        createdAt=acc.createdAt,
        secretRotatedAt=acc.secretRotatedAt,
        tokenExpiresAt=tok.expiresAt if tok is not None else None,
        appSecret=secret,
    )


_BASE = "/orgs/{org_id:str}/service-accounts"
_ONE = _BASE + "/{app_key:str}"


@post(_BASE)
async def create_account(request: Req, org_id: str, data: AccountCreate) -> AccountView:
    """Create a service account; the answer holds ``appKey`` and ``appSecret`` (shown once)."""
    acc, secret = await services(request).accounts.create(org_id, data)
    return view(request, acc, secret)


@get(_BASE)
async def list_accounts(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    items = await services(request).accounts.list(org_id, cursor, page_limit(limit))
    return page([view(request, a) for a in items], limit, "appKey")


@get(_ONE)
async def get_account(request: Req, org_id: str, app_key: str) -> AccountView:
    return view(request, services(request).accounts.account(org_id, app_key))


@patch(_ONE)
async def update_account(
    request: Req, org_id: str, app_key: str, data: AccountUpdate
) -> AccountView:
    """Rename, describe, enable/disable (disabling revokes its token), set the rate limit."""
    return view(request, await services(request).accounts.update(org_id, app_key, data))


@post(_ONE + "/disable", status_code=200)
async def disable_account(request: Req, org_id: str, app_key: str) -> AccountView:
    acc = await services(request).accounts.update(org_id, app_key, AccountUpdate(enabled=False))
    return view(request, acc)


@post(_ONE + "/enable", status_code=200)
async def enable_account(request: Req, org_id: str, app_key: str) -> AccountView:
    acc = await services(request).accounts.update(org_id, app_key, AccountUpdate(enabled=True))
    return view(request, acc)


@post(_ONE + "/rotate-secret", status_code=200)
async def rotate_secret(request: Req, org_id: str, app_key: str) -> AccountView:
    """A new ``appSecret`` (shown once); the old secret and the current token stop working."""
    acc, secret = await services(request).accounts.rotate_secret(org_id, app_key)
    return view(request, acc, secret)


@delete(_ONE, status_code=HTTP_204_NO_CONTENT)
async def delete_account(request: Req, org_id: str, app_key: str) -> None:
    await services(request).accounts.delete(org_id, app_key)


@get(_ONE + "/logs")
async def account_logs(
    request: Req,
    org_id: str,
    app_key: str,
    kind: str = "",
    start: int = Start,
    end: int | None = End,
    limit: int = Parameter(default=100, ge=1, le=1000),
    cursor: int | None = LogCursor,
    device: str | None = None,
    code: int | None = None,
) -> dict[str, Any]:
    """Message-log records of the account's integration requests, newest first."""
    svc = services(request)
    svc.accounts.account(org_id, app_key)
    return await read_log(
        svc, "http:" + app_key, kind, LOG_KINDS, start, end, limit, cursor, device=device, code=code
    )


accounts_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["service accounts"],
    route_handlers=[
        create_account,
        list_accounts,
        get_account,
        update_account,
        disable_account,
        enable_account,
        rotate_secret,
        delete_account,
        account_logs,
    ],
)
