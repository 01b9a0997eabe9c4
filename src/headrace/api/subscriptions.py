"""Admin API for data subscription jobs (``/api/v1/orgs/{orgId}/subscriptions``,
docs/subscription.md): create, list, get (with its consumer groups' offsets), update,
start/stop, delete."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..state.subscriptions import JobCreate, JobUpdate, SubscriptionJob
from .common import admin_guard, page, page_limit
from .files import Cursor, Limit
from .services import services

Req = Request[Any, Any, Any]

_BASE = "/orgs/{org_id:str}/subscriptions"
_ONE = _BASE + "/{sub_id:str}"


def view(request: Req, job: SubscriptionJob, *, groups: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(job)
    out.pop("startSeq", None)
    if groups:
        out["groups"] = services(request).subscriptions.groups_of(job.subId)
    return out


@post(_BASE)
async def create_subscription(request: Req, org_id: str, data: JobCreate) -> dict[str, Any]:
    """Create a job; it keeps what it selects from now on (``retentionDays``) until its
    consumer groups commit it."""
    return view(request, await services(request).subscription_jobs.create(org_id, data))


@get(_BASE)
async def list_subscriptions(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    jobs = await services(request).subscription_jobs.page(org_id, cursor, page_limit(limit))
    body = page(jobs, limit, "subId")
    body["items"] = [view(request, j) for j in jobs]
    return body


@get(_ONE)
async def get_subscription(request: Req, org_id: str, sub_id: str) -> dict[str, Any]:
    """The job and its consumer groups: members, each partition's committed and delivered
    offsets (stream positions), messages waiting, lag in seconds."""
    return view(request, services(request).subscription_jobs.get(org_id, sub_id), groups=True)


@patch(_ONE)
async def update_subscription(
    request: Req, org_id: str, sub_id: str, data: JobUpdate
) -> dict[str, Any]:
    """Change name, description, filter, service accounts, retention or ``enabled``; the
    job's connections are closed (the SDKs reconnect under the new terms)."""
    return view(request, await services(request).subscription_jobs.update(org_id, sub_id, data))


@post(_ONE + "/start", status_code=200)
async def start_subscription(request: Req, org_id: str, sub_id: str) -> dict[str, Any]:
    jobs = services(request).subscription_jobs
    return view(request, await jobs.update(org_id, sub_id, JobUpdate(enabled=True)))


@post(_ONE + "/stop", status_code=200)
async def stop_subscription(request: Req, org_id: str, sub_id: str) -> dict[str, Any]:
    """Refuse its clients (the job keeps collecting within its retention)."""
    jobs = services(request).subscription_jobs
    return view(request, await jobs.update(org_id, sub_id, JobUpdate(enabled=False)))


@delete(_ONE, status_code=HTTP_204_NO_CONTENT)
async def delete_subscription(request: Req, org_id: str, sub_id: str) -> None:
    """Delete the job, its consumer groups and their offsets."""
    await services(request).subscription_jobs.delete(org_id, sub_id)


subscriptions_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["data subscriptions"],
    route_handlers=[
        create_subscription,
        list_subscriptions,
        get_subscription,
        update_subscription,
        start_subscription,
        stop_subscription,
        delete_subscription,
    ],
)
