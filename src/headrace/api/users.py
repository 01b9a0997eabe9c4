"""Operator accounts over HTTP: login sessions (``/api/v1/session``), users
(``/api/v1/users``, platform-admin only) and the audit log (``/api/v1/audit``).

Login: ``POST /api/v1/session {"username", "password"}`` answers the user and the
session's ``csrfToken`` and sets the ``headrace_session`` cookie (HttpOnly,
SameSite=Strict, Path=/, Max-Age the session's absolute lifetime, Secure when the
request came over TLS or ``session.cookie_secure`` is set). Failed logins are counted per
source address and per username (``session.login_failures``,
``session.login_user_failures`` within ``session.login_window``); past either, logins are
answered 429 with ``Retry-After`` without the password being checked.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..errors import (
    ClientError,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from ..model.validate import INT64_MAX, INT64_MIN
from ..state.users import (
    ORG_ADMIN,
    PasswordChange,
    PasswordReset,
    Principal,
    Role,
    Session,
    User,
    UserCreate,
    UserUpdate,
)
from .auth import COOKIE, admin_guard, principal
from .common import error_response, field_from_message, page_limit
from .services import Services, services

Req = Request[Any, Any, Any]
Limit = Parameter(default=100, ge=1, le=1000)


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: str
    password: str


class SessionUser(msgspec.Struct, kw_only=True):
    username: str
    roles: list[Role]


class SessionView(msgspec.Struct, kw_only=True):
    user: SessionUser
    csrfToken: str


class UserView(msgspec.Struct, kw_only=True, omit_defaults=True):
    username: str
    roles: list[Role]
    createdAt: int
    updatedAt: int
    passwordChangedAt: int
    password: str | None = None  # only when generated (created or reset without one)


def user_view(u: User, password: str | None = None) -> UserView:
    return UserView(
        username=u.username,
        roles=u.roles,
        createdAt=u.createdAt,
        updatedAt=u.updatedAt,
        passwordChangedAt=u.passwordChangedAt,
        password=password,
    )


def session_view(u: User, s: Session) -> SessionView:
    return SessionView(user=SessionUser(username=u.username, roles=u.roles), csrfToken=s.csrfToken)


def _cookie(request: Req, svc: Services, value: str, max_age: int) -> str:
    secure = request.url.scheme == "https" or svc.settings["session.cookie_secure"]
    return f"{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}" + (
        "; Secure" if secure else ""
    )


# -- sessions -----------------------------------------------------------------------------


@post("/session", status_code=200, request_max_body_size=16 * 1024, opt={"access": "public"})
async def login(request: Req) -> Response[Any]:
    """Log in: the user, its roles and the session's CSRF token; sets the session cookie.
    The body must be ``application/json`` (a cross-site form cannot send that)."""
    svc = services(request)
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        raise UnsupportedMediaType("send the credentials as application/json")
    try:
        body = msgspec.json.decode(await request.body(), type=Credentials)
    except msgspec.ValidationError as e:
        raise ValidationFailed(str(e), field=field_from_message(str(e))) from None
    except msgspec.DecodeError as e:
        raise ClientError(f"request body is not valid JSON: {e}") from None
    ip = request.client.host if request.client else ""
    by_address, by_username = svc.login_limits
    wait = max(by_address.retry_after(ip), by_username.retry_after(body.username))
    if wait > 0:
        by_address.refusals.add()
        exc = RateLimited("too many failed logins: try again later")
        response = error_response(exc.status, exc.code, exc.message)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    user = await svc.users.check_login(body.username, body.password)
    if user is None:
        by_address.failed(ip)
        if len(body.username) <= 128:  # the longest a username can be: bounded memory
            by_username.failed(body.username)
        raise Unauthorized("wrong username or password")
    session, token = await svc.users.open_session(user)
    p = Principal(user=user, session=session)
    await svc.users.audit(
        p,
        None,
        {
            "action": "login",
            "method": "POST",
            "path": request.url.path,
            "target": "session",
            "status": 200,
        },
    )
    max_age = int(svc.settings["session.max_age"])
    return Response(
        session_view(user, session),
        status_code=200,
        headers={"Set-Cookie": _cookie(request, svc, token, max_age), "Cache-Control": "no-store"},
    )


@get("/session", opt={"access": "session"})
async def get_session(request: Req) -> Response[Any]:
    """The signed-in user and the session's CSRF token (401 without a live session)."""
    p = principal(request)
    assert p.user is not None and p.session is not None
    return Response(session_view(p.user, p.session), headers={"Cache-Control": "no-store"})


@delete("/session", status_code=HTTP_204_NO_CONTENT, opt={"access": "session"})
async def logout(request: Req) -> Response[None]:
    """Log out: the session ends (needs the CSRF token); the cookie is cleared."""
    p = principal(request)
    assert p.session is not None
    svc = services(request)
    await svc.users.close_session(p.session.key)
    return Response(
        None, status_code=HTTP_204_NO_CONTENT, headers={"Set-Cookie": _cookie(request, svc, "", 0)}
    )


@post("/session/password", status_code=HTTP_204_NO_CONTENT, opt={"access": "session"})
async def change_password(request: Req, data: PasswordChange) -> None:
    """Change one's own password (``currentPassword``, ``newPassword``); the user's other
    sessions end, this one goes on."""
    p = principal(request)
    assert p.session is not None
    await services(request).users.change_password(p.session, data)


# -- users (platform-admin) -----------------------------------------------------------------


@post("/users")
async def create_user(request: Req, data: UserCreate) -> UserView:
    """Create a user with roles; without ``password`` one is generated and returned once."""
    u, password = await services(request).users.create(data)
    return user_view(u, password)


@get("/users")
async def list_users(request: Req, limit: int = Limit, cursor: str = "") -> dict[str, Any]:
    items = services(request).users.list_users(cursor, page_limit(limit))
    return {
        "items": [user_view(u) for u in items],
        "nextCursor": items[-1].username if len(items) == limit else None,
    }


@get("/users/{username:str}")
async def get_user(request: Req, username: str) -> UserView:
    return user_view(services(request).users.user(username))


@patch("/users/{username:str}")
async def update_user(request: Req, username: str, data: UserUpdate) -> UserView:
    """Replace the user's roles (its sessions see them on their next request)."""
    return user_view(await services(request).users.update(username, data))


@post("/users/{username:str}/password", status_code=200)
async def reset_password(request: Req, username: str, data: PasswordReset) -> UserView:
    """Set a user's password (without one: generated, returned once); its sessions end."""
    users = services(request).users
    generated = await users.set_password(username, data.password)
    return user_view(users.user(username), generated)


@delete("/users/{username:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_user(request: Req, username: str) -> None:
    """Delete a user; its sessions end."""
    await services(request).users.delete(username)


# -- the audit log ----------------------------------------------------------------------------


@get("/audit", opt={"access": "user"})
async def audit_log(
    request: Req,
    orgId: str | None = None,
    user: str | None = None,
    start: int = Parameter(default=0, ge=INT64_MIN, le=INT64_MAX),
    end: int | None = Parameter(default=None, ge=INT64_MIN, le=INT64_MAX),
    limit: int = Limit,
    cursor: int | None = Parameter(default=None, ge=INT64_MIN, le=INT64_MAX),
) -> dict[str, Any]:
    """Changes made through the admin API, newest first: all of them for a platform admin,
    those of its organizations for an org admin."""
    p = principal(request)
    visible = p.orgs(ORG_ADMIN)
    if visible is None:
        orgs = [orgId] if orgId is not None else None
    elif orgId is not None:
        if orgId not in visible:
            if p.role_in(orgId) is None:
                raise NotFound(f"organization {orgId!r} not found")
            raise Forbidden("the audit log of an organization is for its org-admins")
        orgs = [orgId]
    elif visible:
        orgs = sorted(visible)
    else:
        raise Forbidden("the audit log is for platform admins and org admins")
    end = end if end is not None else int(time.time() * 1000) + 1
    rows = await services(request).store.audit_query(
        orgs, user, start, end, page_limit(limit), cursor
    )
    items = [{"id": r[0], **msgspec.json.decode(r[4])} for r in rows]
    return {"items": items, "nextCursor": rows[-1][0] if len(rows) == limit else None}


users_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["users"],
    route_handlers=[
        login,
        get_session,
        logout,
        change_password,
        create_user,
        list_users,
        get_user,
        update_user,
        reset_password,
        delete_user,
        audit_log,
    ],
)
