"""Retention: a background task that drops samples older than each device's retention
(and then has the store merge the small chunks written since the last pass).

It asks ``retention(device)`` how long a device's samples are kept: ``[(points, keep_ms)]``
(``points`` None: every point; an empty list keeps everything) and calls
``Store.prune_before`` per device and group of points, which drops whole chunks and trims
the chunk the cut falls in, in writes of bounded size: ingest writes queue between them,
so a pass never holds the writer for long. A pass runs every ``interval`` seconds;
failures are logged and the next pass tries again.

Beside it, every ``fold_interval`` seconds, ``Store.fold`` moves the plain rows of short
runs (live data) that are due into chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from ..tasks import cancel, every
from .base import Store

log = logging.getLogger("headrace.store")


class Retention:
    def __init__(
        self,
        store: Store,
        devices: Callable[[], Iterable[int]],
        retention: Callable[[int], list[tuple[list[str] | None, int]]],
        *,
        interval: float = 600.0,
        fold_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.devices = devices
        self.retention = retention
        self.interval = interval
        self.fold_interval = fold_interval
        self.clock = clock
        self.folded = 0  # plain rows moved into chunks since start
        self._fold_task: asyncio.Task[None] | None = None
        self.passes = 0
        self.pruned = 0  # samples dropped since start
        self.compacted = 0  # small chunks merged away since start
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass over every device; returns the samples dropped."""
        now = int(self.clock() * 1000)
        dropped = 0
        devices = 0
        for device in list(self.devices()):
            n = 0
            for points, keep in self.retention(device):
                if keep > 0:
                    n += await self.store.prune_before(device, points, now - keep)
            if n:
                dropped += n
                devices += 1
        self.passes += 1
        self.pruned += dropped
        merged = await self.store.compact()
        self.compacted += merged
        if merged:
            log.info("store compacted small chunks", extra={"chunks": merged})
        if dropped:
            log.info("retention pruned samples", extra={"samples": dropped, "devices": devices})
        return dropped

    async def fold_once(self) -> int:
        moved = await self.store.fold()
        self.folded += moved
        return moved

    async def start(self) -> None:
        self._task = every(self.interval, self.run_once, "retention pass", log, now=True)
        self._fold_task = every(self.fold_interval, self.fold_once, "store fold", log)

    async def stop(self) -> None:
        await cancel(self._task, self._fold_task)
        self._task = self._fold_task = None
