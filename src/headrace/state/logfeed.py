"""The live tail of the channel message logs: an in-memory broadcast of every committed
log record to the readers following its channel.

The store calls ``publish`` (one of its ``log_listeners``) on the event loop with each
write's records once they are committed, ids assigned. Each reader (``Tail``) has a
queue of at most ``capacity`` records; a reader that does not keep up loses the records
beyond it, counted, and is told so (``take`` returns the count) instead of the hub
buffering without bound. Records are filtered before they are queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..store.base import LogRow

Match = Callable[[LogRow], bool]


class Tail:
    """One reader of one channel's log."""

    def __init__(self, channel: str, match: Match, capacity: int):
        self.channel = channel
        self.match = match
        self.capacity = capacity
        self.records: deque[LogRow] = deque()
        self.dropped = 0
        self.closed = False
        self._ready = asyncio.Event()

    def offer(self, row: LogRow) -> None:
        if not self.match(row):
            return
        if len(self.records) >= self.capacity:
            self.dropped += 1
        else:
            self.records.append(row)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self, timeout: float) -> tuple[list[LogRow], int]:
        """The records queued (waiting up to ``timeout`` s for one) and how many were
        dropped since the last call; ([], 0) on timeout or when closed."""
        if not self.records and not self.dropped and not self.closed:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                pass
        self._ready.clear()
        rows = list(self.records)
        self.records.clear()
        dropped, self.dropped = self.dropped, 0
        return rows, dropped


class LogFeed:
    def __init__(self, capacity: int = 1000):
        self.capacity = capacity
        self.tails: dict[str, set[Tail]] = {}

    def publish(self, rows: list[LogRow]) -> None:
        tails = self.tails
        if not tails:
            return
        for row in rows:
            readers = tails.get(row[1])
            if readers:
                for t in readers:
                    t.offer(row)

    def subscribe(self, channel: str, match: Match) -> Tail:
        tail = Tail(channel, match, self.capacity)
        self.tails.setdefault(channel, set()).add(tail)
        return tail

    def unsubscribe(self, tail: Tail) -> None:
        readers = self.tails.get(tail.channel)
        if readers is not None:
            readers.discard(tail)
            if not readers:
                del self.tails[tail.channel]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        """End every reader's stream (the HTTP server then finishes their responses)."""
        for readers in list(self.tails.values()):
            for t in list(readers):
                t.close()
