"""One enterprise's durable queue and its dispatch to connections (docs/protocols.md C.4).

The rows live in the store (``push_queue``, ordered by a per-enterprise ``seq``); this
object keeps the head of the queue in memory (``ready``, bounded by the
``push.memory_*`` settings) and knows which seqs are where:

    seq <= loaded_upto      in memory (ready), with a connection (unacked), or acked
    loaded_upto < seq       only in the store: read in pages when ``ready`` runs low
                            (once committed: ``committed_upto``)

New events whose seqs follow straight on what is in memory go to ``ready`` at once and
may be pushed before their append has committed: the ingest request they come from is
answered only after that commit, so if it never comes the sender resends and the events
are produced again (at-least-once). Deletes (acks, expiry) of a seq are held until its
append has been queued to the store (``queued_upto``), so they always come after it.

Dispatch is round-robin over the connections that can take a push now: a free slot in
their prefetch window and a transport that is not paused. A connection that does not
read is simply skipped; nothing is buffered for it beyond its window. When a connection
closes, its unacked pushes go back to the head of ``ready`` in seq order and are pushed
again (with new delivery ids) to whichever connection is next.

Acks are collected here and deleted by the fan-out's writer (``push.fanout``), in seq
ranges, in the same store write as the appends of new events (one such write at a time;
whatever arrives meanwhile goes into the next), so a client acking in order costs one
statement per write. An ack counts as done (``acked``) once that write has committed: after a
crash, acks not yet committed are pushed again (at-least-once).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..store.base import PushStore, QueueInfo

log = logging.getLogger("headrace.push")

Entry = tuple[int, int, bytes]
"""(seq, enqueued at ms, event document)"""


class Consumer(Protocol):
    """A logged-in connection as the queue sees it."""

    def window(self) -> int:
        """Pushes it can take now: free prefetch slots, 0 while its transport is paused."""
        ...

    def send(self, entry: Entry) -> None: ...

    def flush(self) -> None: ...


def to_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted seqs -> inclusive ranges of consecutive ones."""
    ranges: list[tuple[int, int]] = []
    if not seqs:
        return ranges
    lo = hi = seqs[0]
    for s in seqs[1:]:
        if s == hi + 1:
            hi = s
        elif s != hi:
            ranges.append((lo, hi))
            lo = hi = s
    ranges.append((lo, hi))
    return ranges


class EnterpriseQueue:
    def __init__(
        self,
        enterprise_id: str,
        store: PushStore,
        *,
        retention_ms: int,
        max_queue: int,
        memory_events: int,
        memory_bytes: int,
        info: QueueInfo | None = None,
    ) -> None:
        self.id = enterprise_id
        self.store = store
        self.retention_ms = retention_ms
        self.max_queue = max_queue
        self.memory_events = memory_events
        self.memory_bytes = memory_bytes
        self.ready: deque[Entry] = deque()
        self.ready_bytes = 0
        self.consumers: list[Consumer] = []
        self._rr = 0
        if info is not None and info.count:
            self.next_seq = info.last_seq + 1
            self.loaded_upto = info.first_seq - 1
            self.committed_upto = info.last_seq
            self.stored = info.count
        else:
            self.next_seq = 1
            self.loaded_upto = self.committed_upto = 0
            self.stored = 0
        self.queued_upto = self.committed_upto  # appends handed to the store up to here
        self.inflight = 0
        # acks not yet deleted: waiting for the next write, and in the write under way
        self._acks: list[int] = []
        self._deleting = 0
        self.on_ack: Callable[[EnterpriseQueue], None] | None = None  # wakes the writer
        self._refilling = False
        self._expiring = False
        self._disk = asyncio.Lock()  # refills and expiry of store-only rows, one at a time
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        # counters since the hub started
        self.enqueued = 0
        self.delivered = 0
        self.acked = 0
        self.expired = 0
        self.redelivered = 0

    # -- bookkeeping ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add(self, docs: list[bytes], now_ms: int) -> tuple[list[Entry], bool]:
        """Take seqs for new events (their appends must reach the store in seq order).
        While everything before them is in memory they go to ``ready`` at once; returns
        the entries and whether they did (then ``pump``)."""
        first = self.next_seq
        self.next_seq = first + len(docs)
        entries = [(first + i, now_ms, doc) for i, doc in enumerate(docs)]
        if (
            self.loaded_upto == first - 1
            and len(self.ready) < self.memory_events
            and self.ready_bytes < self.memory_bytes
            and not self.closed
        ):
            self.ready.extend(entries)
            self.ready_bytes += sum(len(d) for d in docs)
            self.loaded_upto = self.next_seq - 1
            return entries, True
        return entries, False

    def mark_queued(self, last_seq: int) -> None:
        """The appends of every seq up to ``last_seq`` are being queued to the store now:
        deletes of those seqs may follow from here on."""
        if last_seq > self.queued_upto:
            self.queued_upto = last_seq

    def stats(self) -> dict[str, int]:
        pending = len(self._acks) + self._deleting
        return {
            "depth": max(0, self.stored - self.inflight - pending),
            "unacked": self.inflight,
            "stored": self.stored,
            "connections": len(self.consumers),
            "enqueued": self.enqueued,
            "delivered": self.delivered,
            "acked": self.acked,
            "redelivered": self.redelivered,
            "expired": self.expired,
        }

    # -- appends -------------------------------------------------------------------------------

    def appended(self, entries: list[Entry], ok: bool) -> None:
        """The append of ``entries`` has been committed (``ok``) or has failed; called in
        the order the appends were made."""
        if not entries or self.closed:
            return
        self.committed_upto = max(self.committed_upto, entries[-1][0])
        if ok:
            n = len(entries)
            self.stored += n
            self.enqueued += n
            if self.stored > self.max_queue:
                self.schedule_expiry()
        # entries that did not go to ready at once are read from the store from now on
        self.pump()

    # -- dispatch ------------------------------------------------------------------------------

    def attach(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.pump()

    def detach(self, consumer: Consumer, unacked: list[Entry]) -> None:
        """A connection closed; its unacked pushes go back to the head of the queue."""
        try:
            idx = self.consumers.index(consumer)
        except ValueError:
            return
        del self.consumers[idx]
        if idx < self._rr:
            self._rr -= 1
        if self.consumers:
            self._rr %= len(self.consumers)
        else:
            self._rr = 0
        if unacked:
            self.inflight -= len(unacked)
            if not self.closed:
                self.redelivered += len(unacked)
                self._requeue(unacked)
        self.pump()

    def _requeue(self, entries: list[Entry]) -> None:
        entries = sorted(entries)
        self.ready_bytes += sum(len(e[2]) for e in entries)
        ready = self.ready
        if not ready or entries[-1][0] < ready[0][0]:
            ready.extendleft(reversed(entries))
        else:
            self.ready = deque(heapq.merge(entries, ready))

    def pump(self) -> None:
        """Push what is ready to the connections that can take it, round-robin."""
        if self.closed:
            return
        ready = self.ready
        consumers = self.consumers
        if ready and consumers:
            if len(consumers) == 1:
                c = consumers[0]
                k = min(c.window(), len(ready))
                if k > 0:
                    size = 0
                    popleft = ready.popleft
                    send = c.send
                    for _ in range(k):
                        e = popleft()
                        size += len(e[2])
                        send(e)
                    self.ready_bytes -= size
                    self.inflight += k
                    self.delivered += k
                    c.flush()
            else:
                self._pump_round_robin()
        self._maybe_refill()

    def _pump_round_robin(self) -> None:
        ready = self.ready
        consumers = self.consumers
        n = len(consumers)
        windows = [c.window() for c in consumers]
        touched = [False] * n
        i = self._rr
        idle = 0
        sent = 0
        size = 0
        while ready and idle < n:
            j = i % n
            i += 1
            if windows[j] > 0:
                e = ready.popleft()
                size += len(e[2])
                consumers[j].send(e)
                windows[j] -= 1
                touched[j] = True
                sent += 1
                idle = 0
            else:
                idle += 1
        self._rr = i % n
        self.ready_bytes -= size
        self.inflight += sent
        self.delivered += sent
        for j in range(n):
            if touched[j]:
                consumers[j].flush()

    # -- refills from the store ----------------------------------------------------------------

    def _maybe_refill(self) -> None:
        if self._refilling or self.closed or self.loaded_upto >= self.committed_upto:
            return
        if len(self.ready) >= self.memory_events // 2 or self.ready_bytes >= self.memory_bytes // 2:
            return
        self._refilling = True
        self._spawn(self._refill())

    async def _refill(self) -> None:
        retry = False
        try:
            async with self._disk:
                start = self.committed_upto
                limit = self.memory_events - len(self.ready)
                budget = self.memory_bytes - self.ready_bytes
                if limit <= 0 or budget <= 0 or self.closed:
                    return
                rows = await self.store.push_read(self.id, self.loaded_upto, limit, budget)
                if self.closed:
                    return
                size = sum(len(r[2]) for r in rows)
                self.ready.extend(rows)
                self.ready_bytes += size
                if len(rows) < limit and size < budget:
                    # everything committed before the read began is now in memory
                    self.loaded_upto = max(self.loaded_upto, start)
                elif rows:
                    self.loaded_upto = rows[-1][0]
        except Exception:
            log.exception("reading the push queue failed", extra={"enterprise": self.id})
            retry = True
        finally:
            if not retry:
                self._refilling = False
        if retry:
            asyncio.get_running_loop().call_later(1.0, self._retry_refill)
            return
        self.pump()

    def _retry_refill(self) -> None:
        self._refilling = False
        self.pump()

    # -- acks ----------------------------------------------------------------------------------

    def ack(self, entry: Entry) -> None:
        self.inflight -= 1
        self._acks.append(entry[0])
        if self.on_ack is not None:
            self.on_ack(self)

    def take_acks(self) -> list[int]:
        """Acked seqs to delete now (sorted): those whose appends are queued already."""
        acks = self._acks
        if not acks:
            return []
        limit = self.queued_upto
        seqs = [s for s in acks if s <= limit]
        self._acks = [s for s in acks if s > limit] if len(seqs) < len(acks) else []
        seqs.sort()
        self._deleting += len(seqs)
        return seqs

    def acks_done(self, count: int, deleted: int, ok: bool) -> None:
        """The delete of ``count`` taken acks committed (``deleted`` rows) or failed; a
        failed one leaves the rows, pushed again after a restart (at-least-once)."""
        self._deleting -= count
        if ok:
            self.acked += count
            self.stored -= deleted

    @property
    def acks_waiting(self) -> bool:
        """Acks not yet taken for a delete (some may wait for their append)."""
        return bool(self._acks)

    @property
    def has_acks(self) -> bool:
        return bool(self._acks) and min(self._acks) <= self.queued_upto

    # -- expiry --------------------------------------------------------------------------------

    def schedule_expiry(self) -> None:
        if not self._expiring and not self.closed:
            self._expiring = True
            self._spawn(self.expire(int(time.time() * 1000)))

    def needs_expiry(self, now_ms: int) -> bool:
        if self._expiring or self.closed:
            return False
        if self.stored > self.max_queue:
            return True
        cutoff = now_ms - self.retention_ms
        if self.ready:
            return self.ready[0][1] < cutoff
        return self.loaded_upto < self.committed_upto

    async def expire(self, now_ms: int) -> int:
        """Drop what is older than the retention, then the oldest beyond ``max_queue``;
        pushes a connection holds are never dropped. Returns how many expired."""
        self._expiring = True
        try:
            cutoff = now_ms - self.retention_ms
            ready = self.ready
            dropped: list[int] = []
            size = 0
            # never an event whose append is not queued yet (its delete would come first)
            limit = self.queued_upto
            while ready and ready[0][1] < cutoff and ready[0][0] <= limit:
                e = ready.popleft()
                size += len(e[2])
                dropped.append(e[0])
            excess = self.stored - len(dropped) - self.max_queue
            while excess > 0 and ready and ready[0][0] <= limit:
                e = ready.popleft()
                size += len(e[2])
                dropped.append(e[0])
                excess -= 1
            self.ready_bytes -= size
            disk = 0
            if not ready and self.loaded_upto < self.committed_upto:
                async with self._disk:
                    if not self.closed:
                        disk = await self.store.push_expire(
                            self.id, self.loaded_upto, cutoff, max(excess, 0)
                        )
            if dropped:
                disk += await self.store.push_delete(self.id, to_ranges(sorted(dropped)))
            n = disk
            if n:
                self.expired += n
                self.stored -= n
                log.warning(
                    "push events expired",
                    extra={
                        "enterprise": self.id,
                        "expired": n,
                        "retention_s": self.retention_ms // 1000,
                        "max_queue": self.max_queue,
                    },
                )
            return n
        finally:
            self._expiring = False
            self.pump()

    # -- end -----------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Finish the store work under way (shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def close(self) -> None:
        """The enterprise is gone: stop dispatching (its rows are cleared separately)."""
        self.closed = True
        self.ready.clear()
        self.ready_bytes = 0
