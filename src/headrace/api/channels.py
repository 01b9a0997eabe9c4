"""Admin API for integration channels and their message log."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..model.types import Channel
from ..state.registry import ChannelCreate, ChannelUpdate
from .admin import Cursor, End, Limit, LogCursor, Start
from .common import admin_guard, page, page_limit, read_log
from .services import services

Req = Request[Any, Any, Any]
LOG_KINDS = ("connection", "payload", "error")


class ChannelView(msgspec.Struct, kw_only=True, omit_defaults=True):
    orgId: str
    channelId: str
    name: str
    products: list[str]
    enabled: bool
    username: str
    clientId: str
    rateLimit: float
    createdAt: int
    brokers: list[str]
    password: str | None = None  # only when created or reset


def view(request: Req, ch: Channel, password: str | None = None) -> ChannelView:
    api = services(request)
    s, ports = api.settings, api.ports
    host = s["mqtt.public_host"] or s["mqtt.host"]
    brokers = []
    if "mqtt" in ports:
        brokers.append(f"tcp://{host}:{ports['mqtt']}")
    if "mqtt_tls" in ports:
        brokers.append(f"ssl://{host}:{ports['mqtt_tls']}")
    return ChannelView(
        orgId=ch.orgId,
        channelId=ch.channelId,
        name=ch.name,
        products=ch.products,
        enabled=ch.enabled,
        username=ch.username,
        clientId=ch.clientId,
        rateLimit=ch.rateLimit,
        createdAt=ch.createdAt,
        brokers=brokers,
        password=password,
    )


_BASE = "/orgs/{org_id:str}/channels"


@post(_BASE)
async def create_channel(request: Req, org_id: str, data: ChannelCreate) -> ChannelView:
    ch, password = await services(request).registry.create_channel(org_id, data)
    return view(request, ch, password)


@get(_BASE)
async def list_channels(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    items = await services(request).registry.list_channels(org_id, cursor, page_limit(limit))
    return page([view(request, c) for c in items], limit, "channelId")


@get(_BASE + "/{channel_id:str}")
async def get_channel(request: Req, org_id: str, channel_id: str) -> ChannelView:
    return view(request, services(request).registry.channel(org_id, channel_id))


@patch(_BASE + "/{channel_id:str}")
async def update_channel(
    request: Req, org_id: str, channel_id: str, data: ChannelUpdate
) -> ChannelView:
    return view(request, await services(request).registry.update_channel(org_id, channel_id, data))


@post(_BASE + "/{channel_id:str}/reset-password", status_code=200)
async def reset_password(request: Req, org_id: str, channel_id: str) -> ChannelView:
    ch, password = await services(request).registry.reset_channel_password(org_id, channel_id)
    return view(request, ch, password)


@delete(_BASE + "/{channel_id:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_channel(request: Req, org_id: str, channel_id: str) -> None:
    await services(request).registry.delete_channel(org_id, channel_id)


@get(_BASE + "/{channel_id:str}/logs")
async def channel_logs(
    request: Req,
    org_id: str,
    channel_id: str,
    kind: str = "",
    start: int = Start,
    end: int | None = End,
    limit: int = Parameter(default=100, ge=1, le=1000),
    cursor: int | None = LogCursor,
    device: str | None = None,
    code: int | None = None,
) -> dict[str, Any]:
    """Message-log records, newest first: connection, payload and error records."""
    svc = services(request)
    svc.registry.channel(org_id, channel_id)
    return await read_log(
        svc, channel_id, kind, LOG_KINDS, start, end, limit, cursor, device=device, code=code
    )


channel_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["channels"],
    route_handlers=[
        create_channel,
        list_channels,
        get_channel,
        update_channel,
        reset_password,
        delete_channel,
        channel_logs,
    ],
)
