"""Admin API for storage policies (``/api/v1/orgs/{orgId}/storage-policies``, data-out.md G).

The EnOS-shaped read for applications, ``GET /tsdb-policy/v2.0/policies/{policyId}``, is
in ``api/tsdb.py`` (service-account token, EnOS reply envelope).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, delete, get, patch, post
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..state.policies import PolicyCreate, PolicyUpdate, StoragePolicy
from .common import admin_guard, page, page_limit
from .files import Cursor, Limit
from .services import services

Req = Request[Any, Any, Any]
_BASE = "/orgs/{org_id:str}/storage-policies"
_ONE = _BASE + "/{policy_id:str}"


@post(_BASE)
async def create_policy(request: Req, org_id: str, data: PolicyCreate) -> StoragePolicy:
    """A policy: ``policyType`` AI_RAW, AI_NORM, DI or GENERIC; ``retention`` such as 6M
    or NEVER; ``models: [{modelId, points}]`` (no points: every measurepoint)."""
    return await services(request).policies.create(org_id, data)


@get(_BASE)
async def list_policies(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    items = await services(request).policies.list(org_id, cursor, page_limit(limit))
    return page(items, limit, "policyId")


@get(_ONE)
async def get_policy(request: Req, org_id: str, policy_id: str) -> StoragePolicy:
    return services(request).policies.policy(org_id, policy_id)


@patch(_ONE)
async def update_policy(
    request: Req, org_id: str, policy_id: str, data: PolicyUpdate
) -> StoragePolicy:
    return await services(request).policies.update(org_id, policy_id, data)


@delete(_ONE, status_code=HTTP_204_NO_CONTENT)
async def delete_policy(request: Req, org_id: str, policy_id: str) -> None:
    await services(request).policies.delete(org_id, policy_id)


@get("/orgs/{org_id:str}/devices/{asset_id:str}/retention")
async def device_retention(request: Req, org_id: str, asset_id: str) -> dict[str, Any]:
    """What the store's retention task is told for one device (``retention_of``)."""
    svc = services(request)
    entry = svc.registry.device_by_asset(org_id, asset_id)
    return {
        "assetId": asset_id,
        "retention": [
            {"points": pts, "keepMs": ms} for pts, ms in svc.policies.retention_of(entry)
        ],
    }


policies_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["storage policies"],
    route_handlers=[
        create_policy,
        list_policies,
        get_policy,
        update_policy,
        delete_policy,
        device_retention,
    ],
)
