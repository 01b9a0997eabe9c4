"""Admin API for rules (docs/rules.md).

- ``POST /api/v1/orgs/{orgId}/rules``: create (a webhook's secret is shown this once);
- ``GET .../rules``, ``GET/PATCH/DELETE .../rules/{ruleId}``;
- ``POST .../rules/{ruleId}/pause`` and ``/resume``;
- ``POST .../rules/{ruleId}/replay`` ``{"position": n}`` or ``{"time": ms}``;
- ``GET .../rules/{ruleId}/stats``: matched, delivered, failed attempts, dead-lettered,
  lag in records and seconds, last error with its time;
- ``GET .../rules/{ruleId}/dead-letters``: what the sink refused or the transform failed
  on, oldest first (paged by ``cursor``).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, delete, get, patch, post
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..rules.model import Replay, RuleCreate, RuleUpdate, public
from .admin import Cursor, Limit
from .common import admin_guard, page_limit
from .services import services

Req = Request[Any, Any, Any]

_BASE = "/orgs/{org_id:str}/rules"
_ONE = _BASE + "/{rule_id:str}"


@post(_BASE)
async def create_rule(request: Req, org_id: str, data: RuleCreate) -> dict[str, Any]:
    rule = await services(request).rules.create(org_id, data)
    return public(rule, with_secret=True)


@get(_BASE)
async def list_rules(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    n = page_limit(limit)
    items = await services(request).rules.list_rules(org_id, cursor, n)
    nxt = items[-1].ruleId if len(items) == n and items else None
    return {"items": [public(r) for r in items], "nextCursor": nxt}


@get(_ONE)
async def get_rule(request: Req, org_id: str, rule_id: str) -> dict[str, Any]:
    return public(services(request).rules.get(org_id, rule_id))


@patch(_ONE)
async def update_rule(request: Req, org_id: str, rule_id: str, data: RuleUpdate) -> dict[str, Any]:
    return public(await services(request).rules.update(org_id, rule_id, data))


@delete(_ONE, status_code=HTTP_204_NO_CONTENT)
async def delete_rule(request: Req, org_id: str, rule_id: str) -> None:
    await services(request).rules.delete(org_id, rule_id)


@post(_ONE + "/pause", status_code=200)
async def pause_rule(request: Req, org_id: str, rule_id: str) -> dict[str, Any]:
    return public(await services(request).rules.set_enabled(org_id, rule_id, False))


@post(_ONE + "/resume", status_code=200)
async def resume_rule(request: Req, org_id: str, rule_id: str) -> dict[str, Any]:
    return public(await services(request).rules.set_enabled(org_id, rule_id, True))


@post(_ONE + "/replay", status_code=200)
async def replay_rule(request: Req, org_id: str, rule_id: str, data: Replay) -> dict[str, Any]:
    return await services(request).rules.replay(org_id, rule_id, data)


@get(_ONE + "/stats")
async def rule_stats(request: Req, org_id: str, rule_id: str) -> dict[str, Any]:
    return services(request).rules.stats(org_id, rule_id)


@get(_ONE + "/dead-letters")
async def rule_dead_letters(
    request: Req, org_id: str, rule_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    n = page_limit(limit)
    items = await services(request).rules.dead_letters(org_id, rule_id, cursor, n)
    nxt = items[-1].id if len(items) == n and items else None
    return {"items": items, "nextCursor": nxt}


rule_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["rules"],
    route_handlers=[
        create_rule,
        list_rules,
        get_rule,
        update_rule,
        delete_rule,
        pause_rule,
        resume_rule,
        replay_rule,
        rule_stats,
        rule_dead_letters,
    ],
)
