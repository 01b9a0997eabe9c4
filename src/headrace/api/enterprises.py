"""Admin API for enterprises (noti push service applications).

- ``POST /api/v1/orgs/{orgId}/enterprises``: create; answers ``enterpriseId`` and
  ``enterpriseSecret`` (the secret is shown this once; given ones are kept).
- ``GET .../enterprises``, ``GET/PATCH/DELETE .../enterprises/{enterpriseId}``.
- ``POST .../enterprises/{enterpriseId}/reset-secret``: a new secret (generated, or the
  one given); connections logged in with the old one are closed.
- ``GET .../enterprises/{enterpriseId}/stats``: queue depth, unacked, connected clients,
  and the enqueued/delivered/acked/redelivered/expired counters since the hub started.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..push.enterprises import Enterprise, EnterpriseCreate, EnterpriseUpdate, SecretReset
from .admin import Cursor, Limit
from .common import admin_guard, page, page_limit
from .services import services

Req = Request[Any, Any, Any]


class EnterpriseView(msgspec.Struct, kw_only=True, omit_defaults=True):
    orgId: str
    enterpriseId: str
    name: str
    products: list[str]
    eventTypes: list[str]
    ipAllowList: list[str]
    historyEvents: bool
    retentionSeconds: int  # 0: the push.retention_seconds setting
    maxQueue: int  # 0: the push.max_queue setting
    createdAt: int
    endpoint: str
    enterpriseSecret: str | None = None  # only when created or reset


class EnterpriseStats(msgspec.Struct, kw_only=True):
    enterpriseId: str
    depth: int  # events waiting to be pushed
    unacked: int  # pushed, not acked yet
    stored: int  # in the queue: depth + unacked + acks being deleted
    connections: int
    enqueued: int
    delivered: int
    acked: int
    redelivered: int
    expired: int
    retentionSeconds: int  # in effect
    maxQueue: int  # in effect


def view(request: Req, ent: Enterprise, secret: str | None = None) -> EnterpriseView:
    api = services(request)
    host, port = api.settings["noti.host"], api.ports.get("noti")
    return EnterpriseView(
        orgId=ent.orgId,
        enterpriseId=ent.enterpriseId,
        name=ent.name,
        products=ent.products,
        eventTypes=ent.eventTypes,
        ipAllowList=ent.ipAllowList,
        historyEvents=ent.historyEvents,
        retentionSeconds=ent.retentionSeconds,
        maxQueue=ent.maxQueue,
        createdAt=ent.createdAt,
        endpoint=f"ssl://{host}:{port}" if port else "",
        enterpriseSecret=secret,
    )


_BASE = "/orgs/{org_id:str}/enterprises"
_ONE = _BASE + "/{enterprise_id:str}"


@post(_BASE)
async def create_enterprise(request: Req, org_id: str, data: EnterpriseCreate) -> EnterpriseView:
    ent, secret = await services(request).enterprises.create(org_id, data)
    return view(request, ent, secret)


@get(_BASE)
async def list_enterprises(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    items = await services(request).enterprises.list(org_id, cursor, page_limit(limit))
    return page([view(request, e) for e in items], limit, "enterpriseId")


@get(_ONE)
async def get_enterprise(request: Req, org_id: str, enterprise_id: str) -> EnterpriseView:
    return view(request, services(request).enterprises.get(org_id, enterprise_id))


@patch(_ONE)
async def update_enterprise(
    request: Req, org_id: str, enterprise_id: str, data: EnterpriseUpdate
) -> EnterpriseView:
    return view(request, await services(request).enterprises.update(org_id, enterprise_id, data))


@post(_ONE + "/reset-secret", status_code=200)
async def reset_secret(
    request: Req, org_id: str, enterprise_id: str, data: SecretReset | None = None
) -> EnterpriseView:
    given = data.enterpriseSecret if data is not None else None
    ent, secret = await services(request).enterprises.reset_secret(org_id, enterprise_id, given)
    return view(request, ent, secret)


@delete(_ONE, status_code=HTTP_204_NO_CONTENT)
async def delete_enterprise(request: Req, org_id: str, enterprise_id: str) -> None:
    await services(request).enterprises.delete(org_id, enterprise_id)


@get(_ONE + "/stats")
async def enterprise_stats(request: Req, org_id: str, enterprise_id: str) -> EnterpriseStats:
    api = services(request)
    api.enterprises.get(org_id, enterprise_id)
    q = api.queues[enterprise_id]
    return EnterpriseStats(
        enterpriseId=enterprise_id,
        retentionSeconds=q.retention_ms // 1000,
        maxQueue=q.max_queue,
        **q.stats(),
    )


enterprise_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["enterprises (noti push)"],
    route_handlers=[
        create_enterprise,
        list_enterprises,
        get_enterprise,
        update_enterprise,
        reset_secret,
        delete_enterprise,
        enterprise_stats,
    ],
)
