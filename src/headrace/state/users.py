"""Operator accounts: users, their roles per organization, login sessions, the audit log.

A user has a password (hashed with scrypt, memory-hard: see ``hash_secret``) and roles:
``platform-admin`` (every organization, users, new organizations), ``org-admin`` (read
and write in its organization) and ``org-viewer`` (read only in its organization); a
user may hold roles in several organizations.

A login opens a session: an opaque random token (the cookie; only its SHA-256 is stored,
so a copy of the database opens no session) and a CSRF token. Sessions are durable (the
store's ``session`` objects), end after ``idle_timeout`` seconds without a request or
``max_age`` seconds after the login, and are dropped when the user's password changes
(except the session that changed it) or the user is deleted. A session's last-seen time
is written at most once a minute, so a restart may end one up to a minute early.

Store objects: ``user`` (key username), ``session`` (key SHA-256 of the token, scope the
username). Everything is cached in memory: checking a session is a dict lookup.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..errors import Conflict, NotFound, Unauthorized, ValidationFailed
from ..store.base import Store
from ..tasks import cancel, every
from .common import check_key
from .registry import Registry

log = logging.getLogger("headrace.users")

KIND_USER = "user"
KIND_SESSION = "session"
PLATFORM_ADMIN = "platform-admin"
ORG_ADMIN = "org-admin"
ORG_VIEWER = "org-viewer"
ROLES = (PLATFORM_ADMIN, ORG_ADMIN, ORG_VIEWER)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_TOUCH_EVERY_MS = 60_000  # a session's last-seen time is written at most this often

# scrypt (RFC 7914) with OWASP's parameters for it: N=2^15, r=8 (32 MiB per hash), p=3
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 3
_SCRYPT_MAXMEM = 64 * 1024 * 1024

_enc = msgspec.json.Encoder()


def hash_secret(
    password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P
) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): the parameters travel with the hash, so they
    can be raised later without invalidating stored passwords."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the username is unknown, so that its answer takes as long."""
    return hash_secret(secrets.token_urlsafe(16))


class Role(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: str
    orgId: str | None = None


class User(msgspec.Struct, kw_only=True):
    username: str
    passwordHash: str
    roles: list[Role]
    createdAt: int
    updatedAt: int
    passwordChangedAt: int


class Session(msgspec.Struct, kw_only=True):
    key: str  # sha256 hex of the cookie's token
    username: str
    csrfToken: str
    createdAt: int
    lastSeenAt: int


class UserCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: str
    password: str | None = None  # None: a random one, returned once
    roles: list[Role] = []


class UserUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    roles: list[Role]


class PasswordReset(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    password: str | None = None  # None: a random one, returned once


class PasswordChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    currentPassword: str
    newPassword: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: the admin token (``user`` None) or a user's session."""

    user: User | None = None
    session: Session | None = None

    @property
    def username(self) -> str | None:
        return self.user.username if self.user is not None else None

    @property
    def platform_admin(self) -> bool:
        return self.user is None or any(r.role == PLATFORM_ADMIN for r in self.user.roles)

    def role_in(self, org_id: str) -> str | None:
        """The strongest role in the org: platform-admin, org-admin, org-viewer or None."""
        if self.platform_admin:
            return PLATFORM_ADMIN
        assert self.user is not None
        roles = {r.role for r in self.user.roles if r.orgId == org_id}
        for role in (ORG_ADMIN, ORG_VIEWER):
            if role in roles:
                return role
        return None

    def orgs(self, *roles: str) -> set[str] | None:
        """The orgs in which the user holds one of ``roles`` (any role if none given);
        None: every org (a platform admin)."""
        if self.platform_admin:
            return None
        assert self.user is not None
        return {
            r.orgId
            for r in self.user.roles
            if r.orgId is not None and (not roles or r.role in roles)
        }


def check_password(password: str, field: str = "password") -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(
            f"a password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters", field=field
        )
    return password


def new_password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        idle_timeout: float = 3600.0,
        max_age: float = 43200.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.registry = registry
        self.idle_ms = int(idle_timeout * 1000)
        self.max_age_ms = int(max_age * 1000)
        self.clock = clock
        self.users: dict[str, User] = {}
        self.sessions: dict[str, Session] = {}  # key -> session
        self._stored_seen: dict[str, int] = {}  # key -> lastSeenAt as stored
        self._lock = asyncio.Lock()
        # hashes at once: a flood of logins queues here instead of taking every core
        self._hashing = asyncio.Semaphore(max(1, (os.cpu_count() or 2) // 2))
        self._task: asyncio.Task[None] | None = None

    def _ms(self) -> int:
        return int(self.clock() * 1000)

    def load(self) -> None:
        for doc in self.store.load_objects(KIND_USER):
            u = msgspec.json.decode(doc, type=User)
            self.users[u.username] = u
        for doc in self.store.load_objects(KIND_SESSION):
            s = msgspec.json.decode(doc, type=Session)
            self.sessions[s.key] = s
            self._stored_seen[s.key] = s.lastSeenAt

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(hash_secret, password)

    async def _verify(self, password: str, stored: str | None) -> bool:
        """None: check against a dummy hash (as long as a real check), answer False."""
        async with self._hashing:
            if stored is None:
                await asyncio.to_thread(verify_secret, password, _dummy_hash())
                return False
            return await asyncio.to_thread(verify_secret, password, stored)

    async def start(self) -> None:
        self._task = every(60, self.prune, "pruning sessions", log)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def prune(self) -> int:
        """Forget expired sessions."""
        now = self._ms()
        old = [k for k, s in self.sessions.items() if self._expired(s, now)]
        await self._drop_sessions(old)
        return len(old)

    # -- the first admin ---------------------------------------------------------------

    async def ensure_admin(self, password_file: Path) -> str | None:
        """With no user at all, create ``admin`` (platform-admin) with a random password,
        written to ``password_file`` (mode 0600) like the admin token; returns it."""
        if self.users:
            return None
        password = new_password()
        await self.create(
            UserCreate(username="admin", password=password, roles=[Role(role=PLATFORM_ADMIN)])
        )
        with open(password_file, "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
            f.write(password + "\n")
        return password

    # -- users -------------------------------------------------------------------------

    def user(self, username: str) -> User:
        u = self.users.get(username)
        if u is None:
            raise NotFound(f"user {username!r} not found")
        return u

    def list_users(self, after: str, limit: int) -> list[User]:
        names = sorted(n for n in self.users if n > after)[:limit]
        return [self.users[n] for n in names]

    def _check_roles(self, roles: Iterable[Role]) -> list[Role]:
        out: list[Role] = []
        for i, r in enumerate(roles):
            if r.role not in ROLES:
                raise ValidationFailed(
                    f"role must be one of {', '.join(ROLES)}", field=f"roles[{i}].role"
                )
            if r.role == PLATFORM_ADMIN:
                if r.orgId is not None:
                    raise ValidationFailed(
                        "platform-admin is not scoped: orgId must be null",
                        field=f"roles[{i}].orgId",
                    )
            else:
                if r.orgId is None:
                    raise ValidationFailed(f"{r.role} needs an orgId", field=f"roles[{i}].orgId")
                try:
                    self.registry.org(r.orgId)
                except NotFound:
                    raise ValidationFailed(
                        f"organization {r.orgId!r} not found", field=f"roles[{i}].orgId"
                    ) from None
            if r not in out:
                out.append(r)
        return out

    async def create(self, body: UserCreate) -> tuple[User, str | None]:
        """Create a user; returns it and its password when one was generated."""
        username = check_key(body.username, "username")
        roles = self._check_roles(body.roles)
        generated = None
        if body.password is None:
            generated = password = new_password()
        else:
            password = check_password(body.password)
        digest = await self._hash(password)
        async with self._lock:
            if username in self.users:
                raise Conflict(f"user {username!r} already exists", field="username")
            now = self._ms()
            u = User(
                username=username,
                passwordHash=digest,
                roles=roles,
                createdAt=now,
                updatedAt=now,
                passwordChangedAt=now,
            )
            await self.store.insert_objects([(KIND_USER, username, "", _enc.encode(u))])
            self.users[username] = u
        return u, generated

    async def _replace(self, u: User) -> User:
        await self.store.update_object(KIND_USER, u.username, _enc.encode(u))
        self.users[u.username] = u
        return u

    async def update(self, username: str, body: UserUpdate) -> User:
        roles = self._check_roles(body.roles)
        async with self._lock:
            u = self.user(username)
            return await self._replace(
                msgspec.structs.replace(u, roles=roles, updatedAt=self._ms())
            )

    async def set_password(
        self, username: str, password: str | None, keep_session: str | None = None
    ) -> str | None:
        """Set (None: generate) a user's password; every session of the user but
        ``keep_session`` ends. Returns the generated password."""
        self.user(username)
        generated = None
        if password is None:
            generated = password = new_password()
        else:
            check_password(password)
        digest = await self._hash(password)
        async with self._lock:
            u = self.user(username)
            now = self._ms()
            await self._replace(
                msgspec.structs.replace(
                    u, passwordHash=digest, updatedAt=now, passwordChangedAt=now
                )
            )
            await self._drop_sessions(
                [
                    k
                    for k, s in self.sessions.items()
                    if s.username == username and k != keep_session
                ]
            )
        return generated

    async def change_password(self, session: Session, body: PasswordChange) -> None:
        """A user's own change: the current password must match; other sessions end."""
        u = self.user(session.username)
        check_password(body.newPassword, "newPassword")
        if not await self._verify(body.currentPassword, u.passwordHash):
            raise Unauthorized("the current password is wrong")
        await self.set_password(u.username, body.newPassword, keep_session=session.key)

    async def delete(self, username: str) -> None:
        async with self._lock:
            self.user(username)
            await self._drop_sessions(
                [k for k, s in self.sessions.items() if s.username == username]
            )
            await self.store.delete_object(KIND_USER, username)
            self.users.pop(username, None)

    # -- sessions ----------------------------------------------------------------------

    async def check_login(self, username: str, password: str) -> User | None:
        """The user if the password is right (as long for an unknown user)."""
        u = self.users.get(username)
        ok = await self._verify(password, u.passwordHash if u is not None else None)
        return u if ok and u is not None and self.users.get(username) is u else None

    async def open_session(self, user: User) -> tuple[Session, str]:
        """A new session of ``user``: returns it and its token (the cookie's value)."""
        token = secrets.token_urlsafe(32)
        now = self._ms()
        s = Session(
            key=token_key(token),
            username=user.username,
            csrfToken=secrets.token_urlsafe(32),
            createdAt=now,
            lastSeenAt=now,
        )
        await self.store.insert_objects([(KIND_SESSION, s.key, s.username, _enc.encode(s))])
        self.sessions[s.key] = s
        self._stored_seen[s.key] = now
        return s, token

    def _expired(self, s: Session, now: int) -> bool:
        return now - s.lastSeenAt >= self.idle_ms or now - s.createdAt >= self.max_age_ms

    async def session(self, token: str) -> tuple[Session, User] | None:
        """The live session of a cookie's token (its last-seen time now), or None."""
        key = token_key(token)
        s = self.sessions.get(key)
        if s is None:
            return None
        now = self._ms()
        u = self.users.get(s.username)
        if u is None or self._expired(s, now):
            await self._drop_sessions([key])
            return None
        s.lastSeenAt = now
        if now - self._stored_seen.get(key, 0) >= min(_TOUCH_EVERY_MS, self.idle_ms // 10):
            self._stored_seen[key] = now
            try:
                await self.store.update_object(KIND_SESSION, key, _enc.encode(s))
            except NotFound:  # ended meanwhile
                return None
        return s, u

    def expires_at(self, s: Session) -> int:
        """When the session ends if no request comes (ms)."""
        return min(s.lastSeenAt + self.idle_ms, s.createdAt + self.max_age_ms)

    async def close_session(self, key: str) -> None:
        await self._drop_sessions([key])

    async def _drop_sessions(self, keys: list[str]) -> None:
        for k in keys:
            if self.sessions.pop(k, None) is not None:
                self._stored_seen.pop(k, None)
                await self.store.delete_object(KIND_SESSION, k)

    # -- the audit log -------------------------------------------------------------------

    async def audit(self, principal: Principal, org_id: str | None, record: dict[str, Any]) -> None:
        """Append one record: who (``user``, ``via``), when, and what the caller says."""
        now = self._ms()
        doc = {
            "time": now,
            "user": principal.username,
            "via": "token" if principal.user is None else "session",
            "orgId": org_id,
            **record,
        }
        await self.store.audit_append([(now, principal.username, org_id, _enc.encode(doc))])
