"""Data subscription jobs (data-out.md E, docs/subscription.md): what an EnOS
application subscribes to, who may read it, how it is partitioned.

A job belongs to one organization and has a globally unique ``subId`` (the SDK's
``auth_req`` names only the subId): its ``type`` (``time-series``, ``event``,
``alert``), ``channel`` (``realtime`` or ``offline``; time series only), a ``filter``
(model ids, measurepoint ids, asset ids; empty lists select everything), the service
accounts allowed to read it (of the same organization), its number of ``partitions``
(messages of one device always go to one partition, and a consumer group shares the
partitions among its connections) and the ``retentionDays`` its messages are kept.

Store objects: ``subscription`` (key subId, scope orgId). The consumer groups' offsets
are ``push.subscriptions``'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import msgspec

from ..errors import Conflict, NotFound, ValidationFailed
from ..proto.subscription.wire import (
    SUB_ADVANCED_ALERT,
    SUB_ALERT,
    SUB_EVENT,
    SUB_OFFLINE,
    SUB_REALTIME,
)
from ..store.base import Store
from .accounts import Accounts
from .common import check_name, now_ms
from .registry import Registry

KIND_JOB = "subscription"
MAX_FILTER_ITEMS = 10_000
MAX_PARTITIONS = 64

JobType = Literal["time-series", "event", "alert"]
Channel = Literal["realtime", "offline"]

_SUB_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")  # EnOS: letters, digits, '_' and '-'


class JobFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    models: list[str] = []  # model ids
    measurepoints: list[str] = []  # measurepoint ids (time series; others: ignored)
    devices: list[str] = []  # assetIds


class SubscriptionJob(msgspec.Struct, kw_only=True):
    orgId: str
    subId: str
    name: str
    description: str = ""
    type: JobType = "time-series"
    channel: Channel = "realtime"
    filter: JobFilter = msgspec.field(default_factory=JobFilter)
    serviceAccounts: list[str] = []  # appKeys allowed to read the job
    partitions: int = 0
    retentionDays: float = 0.0
    enabled: bool = True
    createdAt: int = 0
    updatedAt: int = 0
    startSeq: int = 0  # the stream's head when the job was created: where it begins

    def categories(self) -> tuple[int, ...]:
        """The SDK subType/category values that read this job."""
        if self.type == "time-series":
            return (SUB_REALTIME,) if self.channel == "realtime" else (SUB_OFFLINE,)
        if self.type == "event":
            return (SUB_EVENT,)
        return (SUB_ALERT, SUB_ADVANCED_ALERT)


class JobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    subId: str | None = None
    description: str = ""
    type: JobType = "time-series"
    channel: Channel = "realtime"
    filter: JobFilter = msgspec.field(default_factory=JobFilter)
    serviceAccounts: list[str]
    partitions: int | None = None
    retentionDays: float | None = None
    enabled: bool = True


class JobUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    description: str | None = None
    filter: JobFilter | None = None
    serviceAccounts: list[str] | None = None
    retentionDays: float | None = None
    enabled: bool | None = None


_enc = msgspec.json.Encoder()


class SubscriptionJobs:
    """The jobs, cached in memory, written through to the store.

    ``listeners`` are called with ``(job, what)`` after a change is committed, ``what``
    one of ``created``, ``updated``, ``deleted``; ``head()`` is the outbound stream's
    head (where a new job starts).
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        accounts: Accounts,
        head: Callable[[], int],
        default_partitions: int = 8,
        default_retention_days: float = 3.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.accounts = accounts
        self.head = head  # the outbound stream's head (a new job starts after it)
        self.default_partitions = default_partitions
        self.default_retention_days = default_retention_days
        self.jobs: dict[str, SubscriptionJob] = {}
        self.listeners: list[Callable[[SubscriptionJob, str], None]] = []

    def load(self) -> None:
        for doc in self.store.load_objects(KIND_JOB):
            job = msgspec.json.decode(doc, type=SubscriptionJob)
            self.jobs[job.subId] = job

    def get(self, org_id: str, sub_id: str) -> SubscriptionJob:
        self.registry.org(org_id)
        job = self.jobs.get(sub_id)
        if job is None or job.orgId != org_id:
            raise NotFound(f"subscription {sub_id!r} not found in organization {org_id!r}")
        return job

    async def page(self, org_id: str, after: str, limit: int) -> list[SubscriptionJob]:
        self.registry.org(org_id)
        docs = await self.store.list_objects(KIND_JOB, org_id, after, limit)
        return [msgspec.json.decode(d, type=SubscriptionJob) for d in docs]

    async def create(self, org_id: str, body: JobCreate) -> SubscriptionJob:
        self.registry.org(org_id)
        sub_id = body.subId if body.subId is not None else f"sub-{now_ms()}"
        if not _SUB_ID.match(sub_id):
            raise ValidationFailed("subId must be 1-64 letters, digits, '_' or '-'", field="subId")
        if sub_id in self.jobs:
            raise Conflict(f"subscription {sub_id!r} already exists", field="subId")
        partitions = body.partitions if body.partitions is not None else self.default_partitions
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise ValidationFailed(f"partitions must be 1..{MAX_PARTITIONS}", field="partitions")
        if body.type != "time-series" and body.channel != "realtime":
            raise ValidationFailed("only time-series jobs have an offline channel", field="channel")
        now = now_ms()
        job = SubscriptionJob(
            orgId=org_id,
            subId=sub_id,
            name=check_name(body.name),
            description=body.description,
            type=body.type,
            channel=body.channel,
            filter=self._check_filter(body.filter),
            serviceAccounts=self._check_accounts(org_id, body.serviceAccounts),
            partitions=partitions,
            retentionDays=self._check_retention(body.retentionDays),
            enabled=body.enabled,
            createdAt=now,
            updatedAt=now,
            startSeq=self.head(),
        )
        await self.store.insert_objects([(KIND_JOB, sub_id, org_id, _enc.encode(job))])
        self.jobs[sub_id] = job
        self._changed(job, "created")
        return job

    async def update(self, org_id: str, sub_id: str, body: JobUpdate) -> SubscriptionJob:
        job = self.get(org_id, sub_id)
        changes: dict[str, object] = {"updatedAt": now_ms()}
        if body.name is not None:
            changes["name"] = check_name(body.name)
        if body.description is not None:
            changes["description"] = body.description
        if body.filter is not None:
            changes["filter"] = self._check_filter(body.filter)
        if body.serviceAccounts is not None:
            changes["serviceAccounts"] = self._check_accounts(org_id, body.serviceAccounts)
        if body.retentionDays is not None:
            changes["retentionDays"] = self._check_retention(body.retentionDays)
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        job = msgspec.structs.replace(job, **changes)
        await self.store.update_object(KIND_JOB, sub_id, _enc.encode(job))
        self.jobs[sub_id] = job
        self._changed(job, "updated")
        return job

    async def delete(self, org_id: str, sub_id: str) -> None:
        job = self.get(org_id, sub_id)
        await self.store.delete_object(KIND_JOB, sub_id)
        self.jobs.pop(sub_id, None)
        self._changed(job, "deleted")

    def _changed(self, job: SubscriptionJob, what: str) -> None:
        for listener in self.listeners:
            listener(job, what)

    # -- checks -------------------------------------------------------------------------------

    def _check_accounts(self, org_id: str, keys: list[str]) -> list[str]:
        if not keys:
            raise ValidationFailed(
                "serviceAccounts must name at least one service account", field="serviceAccounts"
            )
        out: list[str] = []
        for i, key in enumerate(keys):
            acc = self.accounts.accounts.get(key)
            if acc is None or acc.orgId != org_id:
                raise ValidationFailed(
                    f"service account {key!r} does not exist in organization {org_id!r}",
                    field=f"serviceAccounts[{i}]",
                )
            if key not in out:
                out.append(key)
        return out

    def _check_filter(self, f: JobFilter) -> JobFilter:
        for name in ("models", "measurepoints", "devices"):
            items: list[str] = getattr(f, name)
            if len(items) > MAX_FILTER_ITEMS:
                raise ValidationFailed(
                    f"filter.{name} has more than {MAX_FILTER_ITEMS} items", field=f"filter.{name}"
                )
            for i, v in enumerate(items):
                if not v or len(v) > 128:
                    raise ValidationFailed(
                        f"filter.{name} items must be 1-128 characters",
                        field=f"filter.{name}[{i}]",
                    )
        return JobFilter(
            models=sorted(set(f.models)),
            measurepoints=sorted(set(f.measurepoints)),
            devices=sorted(set(f.devices)),
        )

    def _check_retention(self, days: float | None) -> float:
        if days is None:
            return self.default_retention_days
        if not 0 < days <= 365:
            raise ValidationFailed("retentionDays must be in (0, 365]", field="retentionDays")
        return float(days)
