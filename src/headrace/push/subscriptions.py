"""Data subscriptions as consumers of the outbound stream (data-out.md E,
docs/subscription.md).

Every job (``state.subscriptions``) reads the stream through the job's ``Filter``; its
messages are the matching records, each shaped as EnOS shapes it (``message_value``),
keyed by assetId and put in partition ``crc32(assetId) % partitions``, so one device's
messages stay in order in one partition. A message's **offset is its stream position**
(``seq``): offsets grow within a partition but are not consecutive, so no filler
messages (``_*NMM!_``) are needed for what a filter leaves out.

A consumer group (the SDK's ``consumerGroup``) shares the job's partitions among its
connections (``Member``): partition ``p`` belongs to member ``p % members``, in join
order. Each partition has a committed offset: a durable stream cursor named
``sub/{subId}/{group}/{p}``, so the stream keeps what a group has not committed (within
the job's retention, after which the stream drops it, counted). A ``commit_req`` moves a
partition's offset up to what was delivered to its owner; when a member joins or leaves,
the partitions that change owner are delivered again from their committed offset (an
uncommitted message comes again; at-least-once), the others go on where they were.
A partition with nothing delivered and uncommitted has its offset moved up to where the
group's reader got, so idle partitions never hold the stream.

A new group starts at the job's own cursor ``sub/{subId}``: the oldest position any of
its groups still needs, or where the job started (its creation) while it has none; so a
group that connects for the first time gets what the job kept.

Each group with members has one reader task: it reads the stream after its position,
filters, shapes and encodes the messages into per-partition queues (at most
``subscription.buffer`` waiting), and wakes the members whose partitions got some; a
member's pull takes from its partitions' queues.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any

import msgspec

from ..config import Settings
from ..errors import SubscriptionRefused
from ..proto.subscription.wire import (
    ACK_BAD_REQUEST,
    ACK_BAD_SIGN,
    ACK_CONFLICT,
    ACK_FORBIDDEN,
    ACK_NOT_FOUND,
    ACK_THROTTLED,
    Commit,
    encode_message,
    subscription_sign,
)
from ..state.accounts import Accounts
from ..state.subscriptions import SubscriptionJob, SubscriptionJobs
from ..stream import Consumer, Filter, Record, Retention, Stream

log = logging.getLogger("headrace.subscription")

READ_LIMIT = 1000  # records scanned per stream read
MAX_GROUP_NAME = 128
_json = msgspec.json.Encoder()


# -- jobs: filters and message shapes ----------------------------------------------------------

KINDS_BY_TYPE: dict[str, list[str]] = {
    "time-series": ["measurepoint"],
    "event": ["event", "online", "offline"],
    "alert": ["fault", "alert"],
}


def job_filter(job: SubscriptionJob) -> Filter:
    """The stream ``Filter`` of a job's records."""
    f = job.filter
    return Filter(
        orgs=[job.orgId],
        models=list(f.models),
        devices=list(f.devices),
        sources=[job.channel] if job.type == "time-series" else [],
        kinds=KINDS_BY_TYPE[job.type],  # type: ignore[arg-type]
        points=list(f.measurepoints) if job.type == "time-series" else [],
    )


def partition_of(asset_id: str, partitions: int) -> int:
    return zlib.crc32(asset_id.encode()) % partitions


def message_value(job: SubscriptionJob, r: Record) -> str | None:
    """A record as the job's message value (data-out.md E), or None when nothing of it is
    left for the job (a measurepoint record without any of the job's points).

    time series: ``{"orgId","modelId","payload":[{"assetId","time","points":"<JSON>"}]}``
    with ``points`` a JSON string of the (filtered) measurepoints; events: the payload
    item carries ``eventType`` (``event``, ``online``, ``offline``) and ``data``, a JSON
    string (``{eventId: outputs}`` for an event); alerts: ``alertType`` (``fault`` or
    ``alert``) and ``data``.
    """
    content = r.content
    item: dict[str, Any] = {"assetId": r.assetId, "time": r.time}
    if r.kind == "measurepoint":
        points: dict[str, Any] = content.get("measurepoints", {})
        wanted = job.filter.measurepoints
        if wanted:
            points = {k: v for k, v in points.items() if k in wanted}
            if not points:
                return None
        item["points"] = _json.encode(points).decode()
    elif r.kind in ("event", "online", "offline"):
        item["eventType"] = r.kind
        item["data"] = _json.encode(content.get("events", content)).decode()
    else:
        item["alertType"] = r.kind
        item["data"] = _json.encode(content).decode()
    return _json.encode({"orgId": r.org, "modelId": r.model, "payload": [item]}).decode()


# -- consumer groups -------------------------------------------------------------------------------


class Member:
    """One subscribed connection of a group: its partitions, and ``wake`` to call when
    they have messages."""

    def __init__(
        self, group: Group, client_id: str, address: str, wake: Callable[[], None]
    ) -> None:
        self.group = group
        self.client_id = client_id
        self.address = address
        self.wake = wake
        self.partitions: list[int] = []
        self.delivered = 0
        self.name = f"{group.name}#{id(self):x}"
        self._next = 0  # the partition a take starts with (round robin)

    def take(self, limit: int) -> list[bytes]:
        return self.group.take(self, limit)

    def commit(self, commits: Iterable[Commit]) -> None:
        self.group.commit(self, commits)

    def leave(self) -> None:
        self.group.leave(self)

    def info(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "address": self.address,
            "partitions": list(self.partitions),
            "delivered": self.delivered,
        }


class Group:
    def __init__(
        self,
        owner: Subscriptions,
        job: SubscriptionJob,
        name: str,
        consumers: list[Consumer],
    ) -> None:
        self.owner = owner
        self.job = job
        self.name = name
        self.topic = job.subId.encode()
        self.consumers = consumers  # the partitions' durable cursors: .position = committed
        n = job.partitions
        self.delivered = [c.position for c in consumers]
        self.pending: list[deque[tuple[int, bytes]]] = [deque() for _ in range(n)]
        self.pending_count = 0
        self.owners: list[Member | None] = [None] * n
        self.members: list[Member] = []
        self.read_pos = min(self.delivered)
        self.epoch = 0
        self.committed_total = 0
        self.ignored_commits = 0
        self._room = asyncio.Event()
        self._room.set()
        self._kick = asyncio.Event()
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self._stopped = False

    # -- membership ---------------------------------------------------------------------------

    def join(self, member: Member) -> None:
        self.members.append(member)
        self._rebalance()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def leave(self, member: Member) -> None:
        if member not in self.members:
            return
        self.members.remove(member)
        self._rebalance()
        self._save_soon()
        if not self.members and self._task is not None:
            self._task.cancel()
            self._task = None

    def _rebalance(self) -> None:
        members = self.members
        k = len(members)
        for m in members:
            m.partitions = []
        for p in range(self.job.partitions):
            new = members[p % k] if k else None
            if new is not self.owners[p]:
                # a new owner gets what the old one had not committed again
                self.delivered[p] = self.consumers[p].position
            self.owners[p] = new
            if new is not None:
                new.partitions.append(p)
        # what was read ahead is read again: from the oldest position still to deliver
        self.pending = [deque() for _ in range(self.job.partitions)]
        self.pending_count = 0
        self.read_pos = min(self.delivered)
        self.epoch += 1
        self._room.set()
        self._kick.set()
        for m in members:
            m.wake()

    # -- reading the stream ----------------------------------------------------------------------

    async def _run(self) -> None:
        owner = self.owner
        stream = owner.stream
        flt = owner.filter_of(self.job)
        cap = owner.buffer
        try:
            while not self._stopped and self.members:
                if self.pending_count >= cap:
                    # read on once the members took some (a member that does not pull
                    # holds its group here: docs/subscription.md, Delivery)
                    self._room.clear()
                    await self._room.wait()
                    continue
                epoch, after = self.epoch, self.read_pos
                if self.job is not owner.jobs.jobs.get(self.job.subId):
                    return  # changed or deleted: its connections are being closed
                records, upto = await stream.read(after, READ_LIMIT, flt)
                if epoch != self.epoch or self._stopped:
                    continue  # rebalanced meanwhile: read again from the new position
                if records:
                    self._add(records)
                self.read_pos = max(upto, after)
                if upto <= after:
                    await self._idle(stream, after)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription group reader failed", extra={"sub_id": self.job.subId})

    async def _idle(self, stream: Stream, after: int) -> None:
        """At the head: until a commit appends after it, or a rebalance moves the reader
        back (``_kick``)."""
        self._kick.clear()
        waits = [
            asyncio.ensure_future(stream.wait(after, 5.0)),
            asyncio.ensure_future(self._kick.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _add(self, records: list[Record]) -> None:
        job = self.job
        n = job.partitions
        topic = self.topic
        delivered = self.delivered
        pending = self.pending
        woken: set[int] = set()
        added = 0
        for r in records:
            p = partition_of(r.assetId, n)
            if r.seq <= delivered[p]:
                continue  # delivered (or committed) before a rebalance: not again
            value = message_value(job, r)
            if value is None:
                continue
            pending[p].append((r.seq, encode_message(topic, p, r.seq, r.at, r.assetId, value)))
            added += 1
            woken.add(p)
        self.pending_count += added
        for m in {self.owners[p] for p in woken}:
            if m is not None:
                m.wake()

    def take(self, member: Member, limit: int) -> list[bytes]:
        parts = member.partitions
        if not parts or not self.pending_count:
            return []
        out: list[bytes] = []
        k = len(parts)
        start = member._next % k
        pending = self.pending
        for i in range(k):
            p = parts[(start + i) % k]
            q = pending[p]
            while q and len(out) < limit:
                seq, msg = q.popleft()
                self.delivered[p] = seq
                out.append(msg)
            if len(out) >= limit:
                member._next = start + i + 1
                break
        self.pending_count -= len(out)
        member.delivered += len(out)
        if self.pending_count < self.owner.buffer // 2:
            self._room.set()
        return out

    # -- commits ---------------------------------------------------------------------------------

    def commit(self, member: Member, commits: Iterable[Commit]) -> None:
        """Offsets of messages the member has processed: each moves its partition's
        committed offset up to it (never past what was delivered, never down); commits
        of another job's topic or of a partition the member does not own are ignored."""
        topic = self.job.subId
        moved = False
        for c in commits:
            p = c.partition
            if c.topic != topic or not 0 <= p < self.job.partitions or self.owners[p] is not member:
                self.ignored_commits += 1
                continue
            offset = min(c.offset, self.delivered[p])
            consumer = self.consumers[p]
            if offset > consumer.position:
                consumer.position = offset
                moved = True
        if moved:
            self.committed_total += 1
            self._save_soon()

    def _advance_idle(self) -> None:
        """Partitions with nothing delivered and uncommitted, and nothing waiting, are
        done up to where the reader got."""
        for p, consumer in enumerate(self.consumers):
            if (
                not self.pending[p]
                and self.delivered[p] <= consumer.position
                and self.read_pos > consumer.position
            ):
                consumer.position = self.read_pos
                self.delivered[p] = self.read_pos

    def _save_soon(self) -> None:
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_loop())

    async def _save_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.save()
            except Exception:
                log.exception(
                    "saving subscription offsets failed", extra={"sub_id": self.job.subId}
                )
                await asyncio.sleep(1.0)
                self._dirty = True

    async def save(self) -> None:
        """Write the committed offsets (durable when this returns)."""
        if self.owner.groups.get((self.job.subId, self.name)) is not self:
            return  # the job was deleted: its cursors are being dropped, not written
        self._advance_idle()
        # one write of the positions as they are now (Consumer.commit would set each
        # position again when it runs, undoing a commit that arrived meanwhile)
        await self.owner.save_cursors(self.consumers)
        await self.owner.save_job_cursor(self.job.subId)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._room.set()
        await self.save()
        self._stopped = True

    def info(self) -> dict[str, Any]:
        head = self.owner.stream.head
        oldest = min(c.position for c in self.consumers)
        return {
            "group": self.name,
            "members": [m.info() for m in self.members],
            "partitions": [
                {
                    "partition": p,
                    "committed": c.position,
                    "delivered": self.delivered[p],
                    "waiting": len(self.pending[p]),
                }
                for p, c in enumerate(self.consumers)
            ],
            "streamHead": head,
            "lagSeconds": round(self.owner.stream.age_after(oldest), 3),
            "commits": self.committed_total,
            "ignoredCommits": self.ignored_commits,
        }


# -- the service --------------------------------------------------------------------------------


def _cursor(sub_id: str, group: str | None = None, partition: int | None = None) -> str:
    if group is None:
        return f"sub/{sub_id}"
    return f"sub/{sub_id}/{group}/{partition}"


class Subscriptions:
    """The jobs' stream consumers and consumer groups; what the subscription edge asks
    (``authenticate``, ``join``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        jobs: SubscriptionJobs,
        accounts: Accounts,
        stream: Stream,
    ) -> None:
        self.jobs = jobs
        self.accounts = accounts
        self.stream = stream
        self.buffer: int = settings["subscription.buffer"]
        self.groups: dict[tuple[str, str], Group] = {}
        self.job_cursors: dict[str, Consumer] = {}
        self._filters: dict[str, tuple[SubscriptionJob, Filter]] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def load(self) -> None:
        """Open every job's cursors (after the jobs and the stream loaded), so that the
        stream keeps what they still need from the first prune on."""
        stored = self.stream.stored_cursors()
        for job in self.jobs.jobs.values():
            self._open_job(job)
            prefix = _cursor(job.subId) + "/"
            names = {
                name[len(prefix) :].rsplit("/", 1)[0] for name in stored if name.startswith(prefix)
            }
            for group in sorted(names):
                self._group(job, group)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for g in list(self.groups.values()):
            try:
                await g.stop()
            except Exception:
                log.exception("saving subscription offsets failed")

    def _open_job(self, job: SubscriptionJob) -> Consumer:
        c = self.stream.open(
            _cursor(job.subId),
            self.filter_of(job),
            self.retention_of(job),
            position=job.startSeq,
        )
        self.job_cursors[job.subId] = c
        return c

    def filter_of(self, job: SubscriptionJob) -> Filter:
        cached = self._filters.get(job.subId)
        if cached is None or cached[0] is not job:
            cached = self._filters[job.subId] = (job, job_filter(job))
        return cached[1]

    def retention_of(self, job: SubscriptionJob) -> Retention:
        return Retention(seconds=job.retentionDays * 86400)

    def _group(self, job: SubscriptionJob, name: str) -> Group:
        key = (job.subId, name)
        g = self.groups.get(key)
        if g is None:
            start = self.job_cursors[job.subId].position
            consumers = [
                self.stream.open(
                    _cursor(job.subId, name, p),
                    self.filter_of(job),
                    self.retention_of(job),
                    position=start,
                )
                for p in range(job.partitions)
            ]
            g = self.groups[key] = Group(self, job, name, consumers)
        return g

    async def save_job_cursor(self, sub_id: str) -> None:
        """The job's own cursor follows its slowest group."""
        c = self.job_cursors.get(sub_id)
        positions = [
            cc.position for (s, _), g in self.groups.items() if s == sub_id for cc in g.consumers
        ]
        if c is not None and positions and min(positions) > c.position:
            c.position = min(positions)
            await self.save_cursors([c])

    async def save_cursors(self, consumers: list[Consumer]) -> None:
        """Write the consumers' current positions in one store write (durable when this
        returns)."""
        rows = [(c.name, c.position) for c in consumers]
        await self.stream.store.stream_save_cursors(rows)
        for c, (_name, pos) in zip(consumers, rows, strict=True):
            c.saved = pos

    def job_changed(self, job: SubscriptionJob, what: str) -> None:
        """A job's listener (``SubscriptionJobs.listeners``): cursors follow the job."""
        if what == "created":
            self._open_job(job)
            return
        groups = [g for (s, _), g in self.groups.items() if s == job.subId]
        if what == "updated":
            self.filter_of(job)
            for g in groups:
                g.job = job  # its members are closed by the edge and join again
            for c in [self.job_cursors.get(job.subId), *(c for g in groups for c in g.consumers)]:
                if c is not None:
                    c.refilter(self.filter_of(job), self.retention_of(job))
            return
        # deleted: forget its cursors, so that the stream no longer keeps records for it
        for g in groups:
            g._stopped = True
            if g._task is not None:
                g._task.cancel()
            del self.groups[(job.subId, g.name)]
        self.job_cursors.pop(job.subId, None)
        self._filters.pop(job.subId, None)
        names = [_cursor(job.subId)] + [
            _cursor(job.subId, g.name, p) for g in groups for p in range(job.partitions)
        ]
        stored = self.stream.stored_cursors()
        prefix = _cursor(job.subId) + "/"
        names += [n for n in stored if n.startswith(prefix) and n not in names]
        asyncio.get_running_loop().create_task(self._drop(names))

    async def _drop(self, names: Collection[str]) -> None:
        for name in names:
            try:
                await self.stream.drop(name)
            except Exception:
                log.exception("dropping a subscription cursor failed", extra={"cursor": name})

    # -- the edge's questions ---------------------------------------------------------------------

    def authenticate(
        self, sub_id: str, access_key: str, sign: str, sub_type: int
    ) -> SubscriptionJob:
        job = self.jobs.jobs.get(sub_id)
        acc = self.accounts.accounts.get(access_key)
        if (
            job is None
            or acc is None
            or acc.orgId != job.orgId
            or access_key not in job.serviceAccounts
        ):
            # another organization's job looks like no job at all
            raise SubscriptionRefused(
                ACK_NOT_FOUND,
                f"subscription {sub_id[:64]!r} does not exist for access key {access_key[:64]!r}",
            )
        expected = subscription_sign(access_key, acc.secret, sub_id)
        if not hmac.compare_digest(expected.encode(), sign.lower().encode()):
            raise SubscriptionRefused(
                ACK_BAD_SIGN,
                "sign does not match: expected lower hex sha256 of 'access_key' + accessKey"
                " + 'access_secret' + secret + 'sub_id' + subId",
            )
        if not acc.enabled:
            raise SubscriptionRefused(ACK_FORBIDDEN, f"service account {access_key!r} is disabled")
        if not job.enabled:
            raise SubscriptionRefused(ACK_FORBIDDEN, f"subscription {sub_id!r} is stopped")
        if sub_type not in job.categories():
            raise SubscriptionRefused(
                ACK_CONFLICT,
                f"subType {sub_type} does not read a {job.type} subscription on the"
                f" {job.channel} channel (use {job.categories()[0]})",
            )
        return job

    def join(
        self,
        sub_id: str,
        category: int,
        group_name: str,
        client_id: str,
        address: str,
        wake: Callable[[], None],
    ) -> Member:
        job = self.jobs.jobs.get(sub_id)
        if job is None or not job.enabled:
            raise SubscriptionRefused(ACK_NOT_FOUND, f"subscription {sub_id[:64]!r} is gone")
        if category not in job.categories():
            raise SubscriptionRefused(
                ACK_CONFLICT, f"category {category} does not read this subscription"
            )
        if len(group_name) > MAX_GROUP_NAME:
            raise SubscriptionRefused(
                ACK_BAD_REQUEST, f"consumerGroup is longer than {MAX_GROUP_NAME} characters"
            )
        g = self._group(job, group_name)
        if len(g.members) >= job.partitions:
            raise SubscriptionRefused(
                ACK_THROTTLED,
                f"consumer group {group_name!r} already has {job.partitions} members, one per"
                " partition",
            )
        m = Member(g, client_id[:128], address, wake)
        g.join(m)
        if not any(c.position for c in g.consumers) or len(g.members) == 1:
            g._save_soon()  # a new group's cursors are durable from its first member on
        return m

    def groups_of(self, sub_id: str) -> list[dict[str, Any]]:
        return [g.info() for (s, _), g in sorted(self.groups.items()) if s == sub_id]
