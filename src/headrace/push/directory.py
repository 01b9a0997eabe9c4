"""The enterprise directory: which enterprises there are, what each wants, who may log in.

It keeps the ``enterprise`` store objects (the admin API's CRUD) and, in memory, each
enterprise's parsed allow list and event types and the index of enterprises by product,
which answer ``wants`` and ``recipients`` for the fan-out, noti logins (``authenticate``,
``allows``) and the registry's delete checks (``referring``). It knows nothing of events
or queues: the fan-out (``push.fanout``) owns the queues and follows the changes told to
``listeners``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..errors import Conflict, LoginRefused, NotFound, ValidationFailed
from ..state.common import check_name, hash_password, now_ms, verify_password
from ..state.registry import Registry
from ..store.base import Store
from .enterprises import (
    AllowList,
    Enterprise,
    EnterpriseCreate,
    EnterpriseUpdate,
    check_allow_list,
    check_credential,
    check_event_types,
    check_limits,
    new_enterprise_id,
    new_secret,
)

log = logging.getLogger("headrace.push")

KIND = "enterprise"
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Enterprise)
# verified against when the enterprise id is unknown, so both failures take as long
_DUMMY_HASH = hash_password(new_secret())

EnterpriseListener = Callable[[Enterprise, str], Awaitable[None] | None]
"""(enterprise, what) with what in "created", "updated", "secret", "deleted", told while
the change is made: "created" once the enterprise is stored and before it can receive
events or logins, the others with the directory already showing the change ("deleted":
while the enterprise can still be seen, in the same step as it goes). Whatever a listener
returns is awaited before the change is answered (the fan-out clears queue rows so)."""


class EnterpriseDirectory:
    def __init__(self, *, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.enterprises: dict[str, Enterprise] = {}
        self._allow: dict[str, AllowList] = {}
        self._types: dict[str, frozenset[str]] = {}
        self._by_product: dict[str, list[Enterprise]] = {}
        self._wants: dict[tuple[str, bool], frozenset[str]] = {}
        self._recipients: dict[tuple[str, str, bool], tuple[str, ...]] = {}
        self.listeners: list[EnterpriseListener] = []

    def load(self) -> None:
        for doc in self.store.load_objects(KIND):
            self._cache(_dec.decode(doc))

    # -- cache ---------------------------------------------------------------------------------

    def _cache(self, ent: Enterprise) -> None:
        eid = ent.enterpriseId
        self.enterprises[eid] = ent
        self._allow[eid] = AllowList(ent.ipAllowList)
        self._types[eid] = frozenset(ent.eventTypes)
        self._reindex()

    def _reindex(self) -> None:
        by_product: dict[str, list[Enterprise]] = {}
        for ent in self.enterprises.values():
            for pk in ent.products:
                by_product.setdefault(pk, []).append(ent)
        self._by_product = by_product
        self._wants = {}
        self._recipients = {}

    def has_products(self) -> bool:
        """Whether any enterprise subscribes to any product."""
        return bool(self._by_product)

    def wants(self, product_key: str, realtime: bool) -> frozenset[str]:
        """The event types some enterprise wants for this product (from real-time data or
        from history)."""
        key = (product_key, realtime)
        w = self._wants.get(key)
        if w is None:
            types: set[str] = set()
            for ent in self._by_product.get(product_key, ()):
                if realtime or ent.historyEvents:
                    types |= self._types[ent.enterpriseId]
            w = self._wants[key] = frozenset(types)
        return w

    def recipients(self, product_key: str, event_type: str, realtime: bool) -> tuple[str, ...]:
        """The enterprises (ids) an event of this product and type goes to."""
        key = (product_key, event_type, realtime)
        r = self._recipients.get(key)
        if r is None:
            r = self._recipients[key] = tuple(
                ent.enterpriseId
                for ent in self._by_product.get(product_key, ())
                if event_type in self._types[ent.enterpriseId] and (realtime or ent.historyEvents)
            )
        return r

    def referring(self, kind: str, key: str) -> list[str]:
        """Enterprises that refer to an organization or product the registry would delete."""
        if kind == "organization":
            return [
                f"enterprise {e.enterpriseId}" for e in self.enterprises.values() if e.orgId == key
            ]
        if kind == "product":
            return [
                f"enterprise {e.enterpriseId}"
                for e in self.enterprises.values()
                if key in e.products
            ]
        return []

    # -- logins --------------------------------------------------------------------------------

    def authenticate(self, enterprise_id: str, secret: str, address: str) -> Enterprise:
        """The enterprise a noti login is for; raises ``LoginRefused`` with the message."""
        ent = self.enterprises.get(enterprise_id)
        if ent is None or ent.orgId not in self.registry.orgs:
            verify_password(secret, _DUMMY_HASH)
            raise LoginRefused("enterprise_id or enterprise_secret is wrong")
        if not verify_password(secret, ent.secretHash):
            raise LoginRefused("enterprise_id or enterprise_secret is wrong")
        if not self._allow[enterprise_id].allows(address):
            raise LoginRefused(f"ip {address} is not allowed for this enterprise")
        return ent

    def allows(self, enterprise_id: str, address: str) -> bool:
        allow = self._allow.get(enterprise_id)
        return allow is not None and allow.allows(address)

    # -- admin ---------------------------------------------------------------------------------

    def get(self, org_id: str, enterprise_id: str) -> Enterprise:
        self.registry.org(org_id)
        ent = self.enterprises.get(enterprise_id)
        if ent is None or ent.orgId != org_id:
            raise NotFound(f"enterprise {enterprise_id!r} not found in organization {org_id!r}")
        return ent

    def _check_products(self, org_id: str, products: list[str]) -> list[str]:
        if not products:
            raise ValidationFailed("an enterprise needs at least one product", field="products")
        for i, pk in enumerate(products):
            p = self.registry.products.get(pk)
            if p is None or p.orgId != org_id:
                raise ValidationFailed(
                    f"product {pk!r} not found in organization {org_id!r}", field=f"products[{i}]"
                )
        return sorted(set(products))

    async def create(self, org_id: str, body: EnterpriseCreate) -> tuple[Enterprise, str]:
        """Create an enterprise; returns it with its secret (shown this once)."""
        self.registry.org(org_id)
        name = check_name(body.name)
        products = self._check_products(org_id, body.products)
        types = check_event_types(body.eventTypes)
        allow = check_allow_list(body.ipAllowList)
        check_limits(body.retentionSeconds, body.maxQueue)
        if body.enterpriseId:
            eid = check_credential(body.enterpriseId, "enterpriseId")
        else:
            eid = new_enterprise_id()
        if eid in self.enterprises:
            raise Conflict(f"enterprise {eid!r} already exists", field="enterpriseId")
        if body.enterpriseSecret:
            secret = check_credential(body.enterpriseSecret, "enterpriseSecret")
        else:
            secret = new_secret()
        ent = Enterprise(
            orgId=org_id,
            enterpriseId=eid,
            name=name,
            products=products,
            eventTypes=types,
            ipAllowList=allow,
            historyEvents=body.historyEvents,
            retentionSeconds=body.retentionSeconds,
            maxQueue=body.maxQueue,
            secretHash=hash_password(secret),
            createdAt=now_ms(),
        )
        await self.store.insert_objects([(KIND, eid, org_id, _enc.encode(ent))])
        for pending in self._notify(ent, "created"):
            await pending
        self._cache(ent)
        log.info("enterprise created", extra={"enterprise": eid, "org": org_id})
        return ent, secret

    async def update(self, org_id: str, enterprise_id: str, body: EnterpriseUpdate) -> Enterprise:
        ent = self.get(org_id, enterprise_id)
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = check_name(body.name)
        if body.products is not None:
            changes["products"] = self._check_products(org_id, body.products)
        if body.eventTypes is not None:
            changes["eventTypes"] = check_event_types(body.eventTypes)
        if body.ipAllowList is not None:
            changes["ipAllowList"] = check_allow_list(body.ipAllowList)
        if body.historyEvents is not None:
            changes["historyEvents"] = body.historyEvents
        if body.retentionSeconds is not None:
            changes["retentionSeconds"] = body.retentionSeconds
        if body.maxQueue is not None:
            changes["maxQueue"] = body.maxQueue
        ent = msgspec.structs.replace(ent, **changes)
        check_limits(ent.retentionSeconds, ent.maxQueue)
        await self._replace(ent, "updated")
        return ent

    async def reset_secret(
        self, org_id: str, enterprise_id: str, secret: str | None
    ) -> tuple[Enterprise, str]:
        ent = self.get(org_id, enterprise_id)
        secret = check_credential(secret, "enterpriseSecret") if secret else new_secret()
        ent = msgspec.structs.replace(ent, secretHash=hash_password(secret))
        await self._replace(ent, "secret")
        return ent, secret

    async def _replace(self, ent: Enterprise, what: str) -> None:
        await self.store.update_object(KIND, ent.enterpriseId, _enc.encode(ent))
        self._cache(ent)
        for pending in self._notify(ent, what):
            await pending

    async def delete(self, org_id: str, enterprise_id: str) -> None:
        ent = self.get(org_id, enterprise_id)
        waiting = self._notify(ent, "deleted")
        del self.enterprises[enterprise_id]
        self._allow.pop(enterprise_id, None)
        self._types.pop(enterprise_id, None)
        self._reindex()
        for pending in waiting:
            await pending
        await self.store.delete_object(KIND, enterprise_id)
        log.info("enterprise deleted", extra={"enterprise": enterprise_id, "org": org_id})

    def _notify(self, ent: Enterprise, what: str) -> list[Awaitable[None]]:
        """Tell every listener (at once, nothing runs in between); returns what they left
        to await."""
        waiting: list[Awaitable[None]] = []
        for fn in list(self.listeners):
            try:
                r = fn(ent, what)
            except Exception:
                log.exception("enterprise listener failed")
                continue
            if r is not None:
                waiting.append(r)
        return waiting

    async def list(self, org_id: str, after: str, limit: int) -> list[Enterprise]:
        self.registry.org(org_id)
        docs = await self.store.list_objects(KIND, org_id, after, limit)
        return [_dec.decode(d) for d in docs]
