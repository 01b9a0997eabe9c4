"""Storage policies (data-out.md G): which points of which models form which TSDB series,
and how long their samples are kept.

headrace stores every valid sample raw, whatever the policies say (a hub that never
configured a policy loses nothing). A policy adds to that:

- ``policyType`` ``AI_RAW``, ``AI_NORM`` (normalized: the last value of each minute),
  ``DI`` (state changes) or ``GENERIC``: the points it lists are served by that TSDB path
  (``/ai``, ``/ai-normalized``, ``/di``, ``/generic``) even where their type would not
  put them there by default (see ``Policies.serves``);
- ``retention`` (``30D``, ``6M``, ``1Y``, ``NEVER``): how long the raw samples of those
  points are kept.

Normalized and DI series are never stored separately: they are derived at read time from
the raw samples (``api/tsdb.py``), so a policy costs nothing at ingest and a point's
series always agree with its raw data. Because they are views of the raw samples, the raw
samples of a point are kept for the *longest* retention of the policies that list it
(``retention_of``); a point no policy lists is kept forever.

Store objects: ``storage_policy`` (key policyId, scope orgId).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from ..errors import Conflict, NotFound, ValidationFailed
from ..store.base import Store
from .common import check_key, check_name, now_ms, random_key
from .registry import DeviceEntry, Registry

KIND_POLICY = "storage_policy"

PolicyType = Literal["AI_RAW", "AI_NORM", "DI", "GENERIC"]
POLICY_TYPES: tuple[str, ...] = PolicyType.__args__  # type: ignore[attr-defined]

# retention: a count and a unit (days, weeks, months of 30 days, years of 365 days)
_RETENTION = re.compile(r"([1-9][0-9]{0,4})([DWMY])")
_UNIT_MS = {"D": 86_400_000, "W": 7 * 86_400_000, "M": 30 * 86_400_000, "Y": 365 * 86_400_000}
NEVER = "NEVER"


def retention_ms(text: str) -> int | None:
    """Milliseconds of a retention such as ``6M`` (None for ``NEVER``); ValueError else."""
    if text.upper() == NEVER:
        return None
    m = _RETENTION.fullmatch(text.upper())
    if m is None:
        raise ValueError(text)
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


class PolicyModel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    modelId: str
    points: list[str] = []  # empty: every measurepoint of the model


class StoragePolicy(msgspec.Struct, kw_only=True):
    """The EnOS shape (``GET /tsdb-policy/v2.0/policies/{policyId}``) plus ``orgId``."""

    orgId: str
    policyId: str
    policyName: str
    policyType: PolicyType
    retention: str = NEVER
    models: list[PolicyModel] = []
    createdAt: int = 0
    updatedAt: int = 0


class PolicyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    policyName: str
    policyType: PolicyType
    retention: str = NEVER
    models: list[PolicyModel] = []
    policyId: str | None = None


class PolicyUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    policyName: str | None = None
    retention: str | None = None
    models: list[PolicyModel] | None = None


_enc = msgspec.json.Encoder()


class Policies:
    """The organizations' storage policies, cached in memory, written through."""

    def __init__(self, store: Store, registry: Registry):
        self.store = store
        self.registry = registry
        self.policies: dict[str, StoragePolicy] = {}
        # (orgId, modelId) -> [(policy, points or None for all)]
        self._by_model: dict[tuple[str, str], list[tuple[StoragePolicy, frozenset[str] | None]]]
        self._by_model = {}

    def load(self) -> None:
        for doc in self.store.load_objects(KIND_POLICY):
            p = msgspec.json.decode(doc, type=StoragePolicy)
            self.policies[p.policyId] = p
        self._index()

    def _index(self) -> None:
        idx: dict[tuple[str, str], list[tuple[StoragePolicy, frozenset[str] | None]]] = {}
        for p in self.policies.values():
            for m in p.models:
                pts = frozenset(m.points) if m.points else None
                idx.setdefault((p.orgId, m.modelId), []).append((p, pts))
        self._by_model = idx

    # -- what the TSDB API and the store ask ------------------------------------------

    def serves(self, org_id: str, model_id: str, point: str, kind: str) -> bool:
        """True when a policy of ``kind`` (a PolicyType) lists ``point`` of the model."""
        for p, pts in self._by_model.get((org_id, model_id), ()):
            if p.policyType == kind and (pts is None or point in pts):
                return True
        return False

    def retention_of(
        self, device: DeviceEntry, default_ms: int | None = None
    ) -> list[tuple[list[str] | None, int]]:
        """How long the store keeps the device's samples: ``[(points, keep_ms)]``.

        The store's background retention task calls this per device and deletes the
        samples of those points older than ``now - keep_ms``. A point no policy with a
        finite retention lists is not in the answer: kept forever. A point listed by
        several policies is kept for the longest of their retentions (``NEVER`` wins).
        A policy listing a model with no points covers every measurepoint of the model;
        the answer always names the points (``None``: every point).

        ``default_ms`` (the product's or the store's retention) applies to the points no
        policy lists: every point (``None``) when no policy covers the device's model,
        else the model's other measurepoints by name.
        """
        product = self.registry.products.get(device.device.productKey)
        if product is None:
            return []
        entries = self._by_model.get((product.orgId, product.modelId), ())
        if not entries:
            return [] if default_ms is None else [(None, default_ms)]
        model = self.registry.models.get((product.orgId, product.modelId))
        every = list(model[1].measurepoints) if model is not None else []
        keep: dict[str, int | None] = {}  # point -> longest retention (None: forever)
        for p, pts in entries:
            ms = retention_ms(p.retention)
            for name in pts if pts is not None else every:
                if name not in keep:
                    keep[name] = ms
                else:
                    old = keep[name]
                    keep[name] = None if old is None or ms is None else max(old, ms)
        if default_ms is not None:
            for name in every:
                keep.setdefault(name, default_ms)
        groups: dict[int, list[str]] = {}
        for name, ms in keep.items():
            if ms is not None:
                groups.setdefault(ms, []).append(name)
        return [(sorted(names), ms) for ms, names in sorted(groups.items())]

    def retention_plan(self) -> dict[int, list[tuple[list[str] | None, int]]]:
        """``retention_of`` for every device that has a finite retention, by the device's
        store id (what a store-side pruning pass iterates)."""
        if not self._by_model:
            return {}
        plan = {}
        for e in list(self.registry.by_asset.values()):
            r = self.retention_of(e)
            if r:
                plan[e.id] = r
        return plan

    # -- CRUD --------------------------------------------------------------------------

    def policy(self, org_id: str, policy_id: str) -> StoragePolicy:
        self.registry.org(org_id)
        p = self.policies.get(policy_id)
        if p is None or p.orgId != org_id:
            raise NotFound(f"storage policy {policy_id!r} not found in organization {org_id!r}")
        return p

    def _check(self, org_id: str, retention: str, models: list[PolicyModel]) -> str:
        try:
            retention_ms(retention)
        except ValueError:
            raise ValidationFailed(
                "retention must be a count and a unit D, W, M or Y (such as 6M), or NEVER",
                field="retention",
            ) from None
        seen: set[str] = set()
        for i, m in enumerate(models):
            if m.modelId in seen:
                raise ValidationFailed(
                    f"model {m.modelId!r} is listed twice", field=f"models[{i}].modelId"
                )
            seen.add(m.modelId)
            entry = self.registry.models.get((org_id, m.modelId))
            if entry is None:
                raise ValidationFailed(
                    f"model {m.modelId!r} not found in organization {org_id!r}",
                    field=f"models[{i}].modelId",
                )
            compiled = entry[1]
            for j, name in enumerate(m.points):
                if name not in compiled.measurepoints:
                    raise ValidationFailed(
                        f"measurepoint {name!r} is not in model {m.modelId!r}",
                        field=f"models[{i}].points[{j}]",
                    )
        return retention.upper()

    async def create(self, org_id: str, body: PolicyCreate) -> StoragePolicy:
        self.registry.org(org_id)
        pid = check_key(body.policyId, "policyId") if body.policyId else "sp" + random_key(12)
        if pid in self.policies:
            raise Conflict(f"storage policy {pid!r} already exists", field="policyId")
        retention = self._check(org_id, body.retention, body.models)
        now = now_ms()
        p = StoragePolicy(
            orgId=org_id,
            policyId=pid,
            policyName=check_name(body.policyName),
            policyType=body.policyType,
            retention=retention,
            models=body.models,
            createdAt=now,
            updatedAt=now,
        )
        await self.store.insert_objects([(KIND_POLICY, pid, org_id, _enc.encode(p))])
        self.policies[pid] = p
        self._index()
        return p

    async def update(self, org_id: str, policy_id: str, body: PolicyUpdate) -> StoragePolicy:
        p = self.policy(org_id, policy_id)
        name = check_name(body.policyName) if body.policyName is not None else p.policyName
        retention = body.retention if body.retention is not None else p.retention
        models = body.models if body.models is not None else p.models
        retention = self._check(org_id, retention, models)
        p = msgspec.structs.replace(
            p, policyName=name, retention=retention, models=models, updatedAt=now_ms()
        )
        await self.store.update_object(KIND_POLICY, policy_id, _enc.encode(p))
        self.policies[policy_id] = p
        self._index()
        return p

    async def delete(self, org_id: str, policy_id: str) -> None:
        self.policy(org_id, policy_id)
        await self.store.delete_object(KIND_POLICY, policy_id)
        del self.policies[policy_id]
        self._index()

    async def list(self, org_id: str, after: str, limit: int) -> list[StoragePolicy]:
        self.registry.org(org_id)
        docs = await self.store.list_objects(KIND_POLICY, org_id, after, limit)
        return [msgspec.json.decode(d, type=StoragePolicy) for d in docs]
