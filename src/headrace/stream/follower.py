"""The stream followed from another process (the rules' delivery process, ``rules/worker.py``).

The hub tells the follower of its commits (``advance``: the head, the pruned seq and
each write's commit time); the follower reads the committed records from the database
itself (``store.sqlite.stream.StreamReader``, its own connection, in a thread), so the
hub's process spends nothing on reading, decoding or delivering them. A
``FollowerConsumer`` reads like a ``Consumer``; its cursor is kept by the hub: ``commit``
hands the position to ``save``, which sends it to the hub (the hub makes it durable).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from .outbound import select
from .records import Filter


class EntryReader(Protocol):
    def read(
        self, after: int, limit: int, orgs: Collection[str] | None = None
    ) -> list[tuple[int, int, bytes]]: ...
    def close(self) -> None: ...


class Follower:
    def __init__(self, reader: EntryReader) -> None:
        self.reader = reader
        self.head = 0
        self.pruned = 0
        self._times: dict[int, float] = {}  # a write's ``at`` (ms) -> its commit time (s)
        self._event = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headrace-follow")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.reader.close()

    def advance(self, head: int, pruned: int, times: list[tuple[int, float]]) -> None:
        """The hub committed up to ``head`` (called on the loop)."""
        t = self._times
        for at, when in times:
            t[at] = when
        if len(t) > 20_000:  # the oldest half forgotten
            for k in list(itertools.islice(t, 10_000)):
                del t[k]
        self.pruned = max(self.pruned, pruned)
        if head > self.head:
            self.head = head
            ev = self._event
            self._event = asyncio.Event()
            ev.set()

    async def read(
        self, after: int, limit: int = 1000, filter: Filter | None = None, *, lean: bool = False
    ) -> tuple[list[Any], int]:
        head = self.head  # committed before the query starts: the query sees it all
        orgs = filter.orgs if filter else None
        rows = await asyncio.get_running_loop().run_in_executor(
            self._pool, self.reader.read, after, limit, orgs
        )
        return select(rows, after, head, limit, filter, lean)

    async def wait(self, after: int, timeout: float | None = None) -> bool:
        while self.head <= after:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return self.head > after
        return True

    def committed_at(self, at: int) -> float:
        return self._times.get(at, at / 1000)


class FollowerConsumer:
    """``Consumer``'s reading half over a ``Follower``; the cursor is the hub's."""

    def __init__(
        self, stream: Follower, filter: Filter, position: int, save: Callable[[int], None]
    ) -> None:
        self.stream = stream
        self.filter = filter
        self.position = position
        self.read_position = position
        self.saved = position
        self._save = save

    async def read(self, limit: int = 1000, *, lean: bool = False) -> list[Any]:
        start = self.read_position
        records, upto = await self.stream.read(start, limit, self.filter, lean=lean)
        if self.read_position == start:
            self.read_position = upto
        return records

    async def wait(self, timeout: float | None = None) -> bool:
        return await self.stream.wait(self.read_position, timeout)

    async def commit(self, position: int | None = None) -> None:
        pos = self.read_position if position is None else position
        self.position = pos
        self._save(pos)
        self.saved = pos
