"""Admin API for devices' online state and its history.

- ``GET /api/v1/orgs/{orgId}/online?state=online|offline``: states of the organization's
  devices (those that ever sent real-time data), by assetId.
- ``GET .../devices/{assetId}/online`` (or ``.../products/{pk}/devices/{dk}/online``): one
  device's state.
- ``GET .../online/changes?start=&end=&limit=&cursor=``: its changes, oldest first.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Request, Router, get
from litestar.params import Parameter, QueryParameter

from ..errors import ValidationFailed
from ..state.online import OnlineChange, OnlineState
from .admin import End, Start
from .common import admin_guard, page_limit
from .files import BY_ASSET, BY_KEY, Cursor, Limit, admin_device
from .services import services

Req = Request[Any, Any, Any]


@get("/orgs/{org_id:str}/online")
async def org_online(
    request: Req,
    org_id: str,
    online_state: Annotated[str, QueryParameter(name="state")] = "",
    limit: int = Limit,
    cursor: str = Cursor,
) -> dict[str, Any]:
    svc = services(request)
    svc.registry.org(org_id)
    if online_state not in ("", "online", "offline"):
        raise ValidationFailed("state must be online or offline", field="state")
    flag = None if not online_state else online_state == "online"
    items = await svc.online.states(org_id, cursor, page_limit(limit), flag)
    return {
        "items": items,
        "nextCursor": items[-1].assetId if len(items) == limit else None,
    }


@get([BY_ASSET + "/online", BY_KEY + "/online"])
async def device_online(request: Req) -> OnlineState:
    entry = admin_device(request)
    st = services(request).online.state(entry)
    if st is None:
        d = entry.device
        return OnlineState(
            orgId=d.orgId,
            productKey=d.productKey,
            deviceKey=d.deviceKey,
            assetId=d.assetId,
            online=False,
            since=0,
            lastSeen=0,
        )
    return st


@get([BY_ASSET + "/online/changes", BY_KEY + "/online/changes"])
async def device_online_changes(
    request: Req,
    start: int = Start,
    end: int | None = End,
    limit: int = Parameter(default=100, ge=1, le=1000),
    cursor: str = Cursor,
) -> dict[str, Any]:
    entry = admin_device(request)
    end = end if end is not None else int(time.time() * 1000) + 1
    items: list[OnlineChange] = await services(request).online.changes(
        entry, start, end, limit, cursor
    )
    return {"items": items, "nextCursor": items[-1].id if len(items) == limit else None}


online_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["online state"],
    route_handlers=[org_online, device_online, device_online_changes],
)
