"""Service accounts and their access tokens (docs/protocols.md B.1).

A service account (an "application" in EnOS) belongs to one organization and has an
``appKey`` and a secret. It trades a signed request for an access token:
``encryption = lowerhex(sha256(appKey + timestamp + secret))``. The secret must be
kept in clear (the server recomputes that digest); it is shown once, at creation or
rotation, and never returned by the API afterwards.

Store objects:
- ``service_account`` (key appKey, scope orgId)
- ``token`` (key appKey, scope orgId): the account's current token; one per account, so
  issuing a new one replaces the old one in a single write
- ``token_nonce`` (key: the ``encryption`` value): encryptions already used, kept while
  their timestamp is inside the allowed skew, so a captured request cannot be replayed
  even across a restart.

Everything is cached in memory; checking a token on each integration call is one dict
lookup.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import Conflict, NotFound, TokenRefused, TokenRejected
from ..proto.enos import (
    TOKEN_BAD_PARAMETER,
    TOKEN_BAD_SIGNATURE,
    TOKEN_EMPTY_PARAMETER,
    TOKEN_EXPIRED,
    TOKEN_REFRESH_FAILED,
    TOKEN_REPLAYED,
    TOKEN_UNKNOWN_APP,
    token_encryption,
)
from ..store.base import Store
from ..tasks import cancel, every
from .common import check_key, check_name, now_ms, random_key
from .registry import Registry

log = logging.getLogger("headrace.accounts")

KIND_ACCOUNT = "service_account"
KIND_TOKEN = "token"
KIND_NONCE = "token_nonce"


class ServiceAccount(msgspec.Struct, kw_only=True):
    orgId: str
    appKey: str
    name: str
    description: str = ""
    enabled: bool = True
    secret: str = ""  # never returned by the API (see AccountView)
    rateLimit: float = 0.0  # integration requests/s (0: the ingest.rate_limit setting)
    createdAt: int = 0
    secretRotatedAt: int = 0


class AccessToken(msgspec.Struct, kw_only=True):
    token: str
    appKey: str
    orgId: str
    issuedAt: int  # ms
    expiresAt: int  # ms


class AccountCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str = ""
    enabled: bool = True
    rateLimit: float = 0.0
    appKey: str | None = None


class AccountUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    description: str | None = None
    enabled: bool | None = None
    rateLimit: float | None = None


_enc = msgspec.json.Encoder()


class Accounts:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        ttl: int = 7200,
        skew: int = 300,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.registry = registry
        self.ttl = ttl
        self.skew = skew
        self.clock = clock
        self.accounts: dict[str, ServiceAccount] = {}
        self.tokens: dict[str, AccessToken] = {}  # token -> token
        self.current: dict[str, AccessToken] = {}  # appKey -> its token
        self.nonces: dict[str, int] = {}  # encryption -> forget after (ms)
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None

    def _ms(self) -> int:
        return int(self.clock() * 1000)

    def load(self) -> None:
        for doc in self.store.load_objects(KIND_ACCOUNT):
            acc = msgspec.json.decode(doc, type=ServiceAccount)
            self.accounts[acc.appKey] = acc
        for doc in self.store.load_objects(KIND_TOKEN):
            tok = msgspec.json.decode(doc, type=AccessToken)
            self.current[tok.appKey] = tok
            self.tokens[tok.token] = tok
        for doc in self.store.load_objects(KIND_NONCE):
            n = msgspec.json.decode(doc)
            self.nonces[n["encryption"]] = int(n["until"])

    # -- background pruning ----------------------------------------------------------

    async def start(self) -> None:
        self._task = every(60, self.prune, "pruning tokens", log)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def prune(self) -> int:
        """Forget used encryptions past the skew window and expired tokens."""
        now = self._ms()
        old = [e for e, until in self.nonces.items() if until < now]
        for e in old:
            await self.store.delete_object(KIND_NONCE, e)
            self.nonces.pop(e, None)
        expired = [t for t in self.current.values() if t.expiresAt < now]
        for t in expired:
            if self.current.get(t.appKey) is t:
                await self.store.delete_object(KIND_TOKEN, t.appKey)
                self._drop_token(t.appKey)
        return len(old) + len(expired)

    # -- accounts --------------------------------------------------------------------

    def account(self, org_id: str, app_key: str) -> ServiceAccount:
        self.registry.org(org_id)
        acc = self.accounts.get(app_key)
        if acc is None or acc.orgId != org_id:
            raise NotFound(f"service account {app_key!r} not found in organization {org_id!r}")
        return acc

    async def create(self, org_id: str, body: AccountCreate) -> tuple[ServiceAccount, str]:
        """Create an account; returns it with its secret (shown this once)."""
        self.registry.org(org_id)
        app_key = check_key(body.appKey, "appKey") if body.appKey else random_key(24)
        if app_key in self.accounts:
            raise Conflict(f"service account {app_key!r} already exists", field="appKey")
        secret = secrets.token_hex(24)
        now = now_ms()
        acc = ServiceAccount(
            orgId=org_id,
            appKey=app_key,
            name=check_name(body.name),
            description=body.description,
            enabled=body.enabled,
            secret=secret,
            rateLimit=max(0.0, body.rateLimit),
            createdAt=now,
            secretRotatedAt=now,
        )
        await self.store.insert_objects([(KIND_ACCOUNT, app_key, org_id, _enc.encode(acc))])
        self.accounts[app_key] = acc
        return acc, secret

    async def list(self, org_id: str, after: str, limit: int) -> list[ServiceAccount]:
        self.registry.org(org_id)
        docs = await self.store.list_objects(KIND_ACCOUNT, org_id, after, limit)
        return [msgspec.json.decode(d, type=ServiceAccount) for d in docs]

    async def _replace(self, acc: ServiceAccount) -> ServiceAccount:
        await self.store.update_object(KIND_ACCOUNT, acc.appKey, _enc.encode(acc))
        self.accounts[acc.appKey] = acc
        return acc

    async def update(self, org_id: str, app_key: str, body: AccountUpdate) -> ServiceAccount:
        acc = self.account(org_id, app_key)
        changes: dict[str, Any] = {
            f: v for f in body.__struct_fields__ if (v := getattr(body, f)) is not None
        }
        if "name" in changes:
            changes["name"] = check_name(changes["name"])
        if "rateLimit" in changes:
            changes["rateLimit"] = max(0.0, changes["rateLimit"])
        acc = await self._replace(msgspec.structs.replace(acc, **changes))
        if not acc.enabled:
            await self.revoke(app_key)
        return acc

    async def rotate_secret(self, org_id: str, app_key: str) -> tuple[ServiceAccount, str]:
        """A new secret; the old one and every token issued under it stop working."""
        acc = self.account(org_id, app_key)
        secret = secrets.token_hex(24)
        acc = await self._replace(
            msgspec.structs.replace(acc, secret=secret, secretRotatedAt=now_ms())
        )
        await self.revoke(app_key)
        return acc, secret

    async def delete(self, org_id: str, app_key: str) -> None:
        self.account(org_id, app_key)
        await self.revoke(app_key)
        await self.store.delete_object(KIND_ACCOUNT, app_key)
        self.accounts.pop(app_key, None)

    async def revoke(self, app_key: str) -> None:
        if app_key in self.current:
            await self.store.delete_object(KIND_TOKEN, app_key)
            self._drop_token(app_key)

    def _drop_token(self, app_key: str) -> None:
        tok = self.current.pop(app_key, None)
        if tok is not None:
            self.tokens.pop(tok.token, None)

    # -- tokens (B.1) ----------------------------------------------------------------

    def _check_request(self, body: Any) -> tuple[ServiceAccount, str]:
        """Check a token request's signature and skew; returns the account and encryption."""
        if not isinstance(body, dict):
            raise TokenRefused(TOKEN_BAD_PARAMETER, "the body must be a JSON object")
        app_key = body.get("appKey")
        encryption = body.get("encryption")
        ts = body.get("timestamp")
        for name, value in (("appKey", app_key), ("encryption", encryption), ("timestamp", ts)):
            if value is None or value == "":
                raise TokenRefused(TOKEN_EMPTY_PARAMETER, f"{name} is empty")
        if not isinstance(app_key, str) or not isinstance(encryption, str):
            raise TokenRefused(TOKEN_BAD_PARAMETER, "appKey and encryption must be strings")
        if isinstance(ts, bool) or not isinstance(ts, (int, str)):
            raise TokenRefused(TOKEN_BAD_PARAMETER, "timestamp must be milliseconds (integer)")
        ts_text = str(ts)
        try:
            ts_ms = int(ts_text)
        except ValueError:
            raise TokenRefused(
                TOKEN_BAD_PARAMETER, "timestamp must be milliseconds (integer)"
            ) from None
        acc = self.accounts.get(app_key)
        if acc is None or acc.orgId not in self.registry.orgs:
            raise TokenRefused(TOKEN_UNKNOWN_APP, f"appKey {app_key!r} does not exist")
        if not acc.enabled:
            raise TokenRefused(TOKEN_UNKNOWN_APP, f"service account {app_key!r} is disabled")
        if abs(self._ms() - ts_ms) > self.skew * 1000:
            raise TokenRefused(
                TOKEN_BAD_SIGNATURE,
                f"timestamp is more than {self.skew} s away from the server's clock",
            )
        expected = token_encryption(app_key, ts_text, acc.secret)
        if not hmac.compare_digest(expected.encode(), encryption.lower().encode()):
            raise TokenRefused(TOKEN_BAD_SIGNATURE, "encryption does not match")
        return acc, encryption.lower()

    async def _use_nonce(self, encryption: str) -> None:
        now = self._ms()
        seen_until = self.nonces.get(encryption)
        if seen_until is not None and seen_until >= now:
            raise TokenRefused(TOKEN_REPLAYED, "this encryption was used before (replay)")
        # remember it for as long as its timestamp could still pass the skew check
        until = now + 2 * self.skew * 1000
        self.nonces[encryption] = until
        doc = _enc.encode({"encryption": encryption, "until": until})
        try:
            if seen_until is not None:  # an expired memory not pruned yet
                await self.store.delete_object(KIND_NONCE, encryption)
            await self.store.insert_objects([(KIND_NONCE, encryption, "", doc)])
        except Conflict:
            raise TokenRefused(TOKEN_REPLAYED, "this encryption was used before (replay)") from None

    def _lock(self, app_key: str) -> asyncio.Lock:
        lock = self._locks.get(app_key)
        if lock is None:
            lock = self._locks[app_key] = asyncio.Lock()
        return lock

    async def _issue(self, acc: ServiceAccount) -> AccessToken:
        now = self._ms()
        tok = AccessToken(
            token=secrets.token_hex(24),
            appKey=acc.appKey,
            orgId=acc.orgId,
            issuedAt=now,
            expiresAt=now + self.ttl * 1000,
        )
        doc = _enc.encode(tok)
        if acc.appKey in self.current:
            await self.store.update_object(KIND_TOKEN, acc.appKey, doc)
        else:
            await self.store.insert_objects([(KIND_TOKEN, acc.appKey, acc.orgId, doc)])
        self._drop_token(acc.appKey)
        self.current[acc.appKey] = tok
        self.tokens[tok.token] = tok
        return tok

    def _remaining(self, tok: AccessToken) -> int:
        return max(0, (tok.expiresAt - self._ms()) // 1000)

    async def get_token(self, body: Any) -> tuple[str, int]:
        """``token/get``: the account's valid token (same one while valid) and seconds left."""
        acc, encryption = self._check_request(body)
        async with self._lock(acc.appKey):
            await self._use_nonce(encryption)
            tok = self.current.get(acc.appKey)
            if tok is None or tok.expiresAt - self._ms() < 1000:
                tok = await self._issue(acc)
                return tok.token, self.ttl
            return tok.token, self._remaining(tok)

    async def refresh_token(self, body: Any) -> tuple[str, int]:
        """``token/refresh``: replace the account's current token with a new one."""
        acc, encryption = self._check_request(body)
        given = body.get("accessToken")
        if given is None or given == "":
            raise TokenRefused(TOKEN_EMPTY_PARAMETER, "accessToken is empty")
        if not isinstance(given, str):
            raise TokenRefused(TOKEN_BAD_PARAMETER, "accessToken must be a string")
        async with self._lock(acc.appKey):
            await self._use_nonce(encryption)
            tok = self.current.get(acc.appKey)
            if tok is None or not hmac.compare_digest(tok.token.encode(), given.encode()):
                raise TokenRefused(
                    TOKEN_REFRESH_FAILED, "accessToken is not this service account's token"
                )
            if tok.expiresAt <= self._ms():
                raise TokenRefused(TOKEN_EXPIRED, "accessToken has expired; get a new one")
            tok = await self._issue(acc)
            return tok.token, self.ttl

    def authenticate(self, token: str | None) -> ServiceAccount:
        """The account an ``apim-accesstoken`` stands for (``TokenRejected`` otherwise)."""
        if not token:
            raise TokenRejected("missing access token: send the apim-accesstoken header")
        tok = self.tokens.get(token)
        if tok is None:
            raise TokenRejected("invalid access token")
        if tok.expiresAt <= self._ms():
            raise TokenRejected("access token expired", expired=True)
        acc = self.accounts.get(tok.appKey)
        if acc is None or not acc.enabled or acc.orgId not in self.registry.orgs:
            raise TokenRejected("invalid access token")
        return acc
