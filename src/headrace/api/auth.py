"""Who may call the admin API, decided in one place: the guard of every admin route and
the audit of every change.

``admin_guard`` resolves the principal of a request (``Authorization: Bearer <admin
token>``, or the ``headrace_session`` cookie of a user's login session) and checks it
against the route, from the route's ``org_id`` path parameter and the method alone:

- the admin token and a ``platform-admin`` may do everything;
- a route with an ``org_id``: a user with no role in that org gets 404 (the org does not
  exist for them), an ``org-viewer`` gets 403 on a state-changing method (POST, PUT,
  PATCH, DELETE), an ``org-admin`` may do everything in it;
- a route without one is platform-admin only unless its handler says ``opt={"access":
  "user"}`` (any signed-in principal; the route filters what it shows, such as the org
  list), ``"session"`` (a user's session only: ``/session``) or ``"public"`` (the login);
- a state-changing request authenticated by the session cookie must carry
  ``X-CSRF-Token`` equal to the session's token, else 403 (the admin token needs none: a
  browser never sends it by itself).

``audit_middleware`` then writes an audit record for every state-changing request that
the guard let through and that succeeded (a 2xx status), before the response starts.
"""

from __future__ import annotations

import hmac
from typing import Any, cast

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Forbidden, NotFound, Unauthorized
from ..state.users import ORG_ADMIN, Principal
from .services import services

COOKIE = "headrace_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_KEY = "headrace.principal"  # where the guard leaves the principal in the ASGI scope


async def resolve(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The admin token or a live session; Unauthorized otherwise."""
    svc = services(connection)
    header = connection.headers.get("authorization", "")
    if header:
        scheme, _sep, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("missing admin token: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), svc.admin_token.encode()):
            raise Unauthorized("invalid admin token")
        return Principal()
    token = connection.cookies.get(COOKIE)
    if not token:
        raise Unauthorized(
            "not signed in: log in (POST /api/v1/session) or send 'Authorization: Bearer <token>'"
        )
    found = await svc.users.session(token)
    if found is None:
        raise Unauthorized("the session has ended or does not exist: log in again")
    session, user = found
    return Principal(user=user, session=session)


def principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the guard resolved for this request."""
    return cast(Principal, cast(dict[str, Any], connection.scope)[_KEY])


async def admin_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    access = handler.opt.get("access")
    if access == "public":  # the login
        return
    p = await resolve(connection)
    cast(dict[str, Any], connection.scope)[_KEY] = p
    method = connection.scope.get("method", "GET")
    writes = method not in SAFE_METHODS
    if p.session is not None and writes:
        given = connection.headers.get(CSRF_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), p.session.csrfToken.encode()):
            raise Forbidden("missing or wrong X-CSRF-Token header (the session's csrfToken)")
    if access == "session":
        if p.session is None:
            raise Unauthorized("this route needs a user's session, not the admin token")
        return
    if p.platform_admin:
        return
    org_id = connection.path_params.get("org_id")
    if org_id is not None:
        role = p.role_in(org_id)
        if role is None:
            raise NotFound(f"organization {org_id!r} not found")
        if writes and role != ORG_ADMIN:
            raise Forbidden(f"role {role} may read organization {org_id!r} but not change it")
        return
    if access == "user":
        return
    raise Forbidden("only a platform-admin may do this")


def audit_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if cast(dict[str, Any], scope).get("method", "GET") in SAFE_METHODS:
            await app(scope, receive, send)
            return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                p = cast(dict[str, Any], scope).get(_KEY)
                if p is not None and 200 <= status < 300:
                    await _audit(scope, p, status)
            await send(message)

        await app(scope, receive, audited_send)

    return middleware


async def _audit(asgi_scope: Scope, p: Principal, status: int) -> None:
    scope = cast(dict[str, Any], asgi_scope)
    handler = scope.get("route_handler")
    if handler is not None and handler.opt.get("audit") is False:
        return
    params = scope.get("path_params") or {}
    org_id = params.get("org_id")
    path = scope["path"]
    target = path.removeprefix("/api/v1")
    if org_id is not None:
        target = target.removeprefix(f"/orgs/{org_id}")
    template = scope.get("path_template") or path
    await services_of(scope).users.audit(
        p,
        org_id,
        {
            "action": f"{scope['method']} {template.removeprefix('/api/v1')}",
            "method": scope["method"],
            "path": path,
            "target": target.strip("/"),
            "status": status,
        },
    )


def services_of(scope: dict[str, Any]) -> Any:
    return scope["app"].state.services
