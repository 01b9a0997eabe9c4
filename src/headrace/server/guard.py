"""What the edges (HTTP, MQTT, noti) share against a hostile client: caps on open and
not-yet-authenticated connections (``Admission``), failed logins per source address
(``LoginGuard``), refusal counts logged at most once a second (``Tally``), and the
process's file-descriptor limit (``raise_fd_limit``).

The pending cap closes the *oldest* connection that has not authenticated yet (HTTP: not
sent a first request) rather than the new one: a flood of idle sockets then holds at most
that many descriptors, each for at most its timeout, while a real client, which sends its
request or login at once, still gets in. Only when every open connection is authenticated
is a new one beyond the cap closed at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("headrace.server")

C = TypeVar("C")


class Tally:
    """Counts one kind of event (a refusal, a timeout) and logs it at most once per
    ``interval`` seconds, with the count since the last line and the total: a flood costs
    a line a second, and no count is lost (more events after a line make the next one due
    ``interval`` after it)."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 1.0,
        level: int = logging.WARNING,
        **extra: Any,
    ) -> None:
        self.logger = logger
        self.message = message
        self.interval = interval
        self.level = level
        self.extra = extra
        self.total = 0
        self._unlogged = 0
        self._last = float("-inf")
        self._due: asyncio.TimerHandle | None = None

    def add(self) -> None:
        self.total += 1
        self._unlogged += 1
        if self._due is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last + self.interval - loop.time()
        if wait <= 0:
            self._emit(loop.time())
        else:
            self._due = loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._due = None
        self._emit(asyncio.get_running_loop().time())

    def _emit(self, now: float) -> None:
        self._last = now
        count, self._unlogged = self._unlogged, 0
        self.logger.log(
            self.level, self.message, extra={"count": count, "total": self.total, **self.extra}
        )


class Admission(Generic[C]):
    """The open connections of one listener and those of them not authenticated yet.

    ``opened`` is asked for every new connection: beyond ``max_open`` open (0: no cap) or
    ``max_pending`` not authenticated (0: no cap), the oldest connection not authenticated
    is closed (through ``close``) to make room; when there is none, the new connection is
    refused (the caller closes it at once). ``authenticated`` and ``closed`` keep the sets.
    """

    def __init__(
        self,
        label: str,
        logger: logging.Logger,
        *,
        max_open: int,
        max_pending: int,
        close: Callable[[C], None],
        pending_means: str = "not logged in",
    ) -> None:
        self.max_open = max_open
        self.max_pending = max_pending
        self._close = close
        self.open: set[C] = set()
        self.pending: dict[C, None] = {}  # insertion-ordered: the oldest first
        self.refused = Tally(
            logger, f"{label} connection cap: new connections closed at once", limit=max_open
        )
        self.evicted = Tally(
            logger,
            f"{label} pending cap: the oldest connections {pending_means} closed to make room",
            limit=max_pending or max_open,
        )

    def opened(self, conn: C) -> bool:
        pending = self.pending
        full = self.max_open and len(self.open) >= self.max_open
        if full or (self.max_pending and len(pending) >= self.max_pending):
            if not pending:
                self.refused.add()
                return False
            oldest = next(iter(pending))
            del pending[oldest]
            self.open.discard(oldest)
            self.evicted.add()
            self._close(oldest)
        self.open.add(conn)
        pending[conn] = None
        return True

    def authenticated(self, conn: C) -> None:
        self.pending.pop(conn, None)

    def closed(self, conn: C) -> None:
        self.open.discard(conn)
        self.pending.pop(conn, None)


def source_key(ip: str) -> str:
    """The source a login failure is counted against: the IPv4 address, or the /64 of an
    IPv6 one (one host usually has a whole /64)."""
    if ":" not in ip:
        return ip
    try:
        addr = ipaddress.IPv6Address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(ipaddress.IPv6Network((addr, 64), strict=False))


class LoginGuard:
    """Failed logins per source address: after ``limit`` failures within ``window``
    seconds, the address's further attempts are refused at once, credentials unchecked,
    for ``window`` seconds from the failure that reached the limit (0: no limit). Other
    addresses are not affected; a success does not reset the count.

    Memory is bounded: past ``max_sources`` addresses, expired records go first, then the
    oldest.
    """

    def __init__(
        self,
        label: str,
        logger: logging.Logger,
        limit: int,
        window: float,
        *,
        max_sources: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.logger = logger
        self.limit = limit
        self.window = window
        self.max_sources = max_sources
        self.clock = clock
        self._failures: dict[str, tuple[float, int]] = {}  # source -> (window start, count)
        self._blocked: dict[str, float] = {}  # source -> refused until
        self.refusals = Tally(
            logger,
            f"{label} login refused: too many failed logins from the address",
            limit=limit,
            window_s=window,
        )

    def admits(self, ip: str) -> bool:
        """Whether to check a login from ``ip``; False (counted, logged once a second):
        refuse it at once."""
        if self.blocked(ip):
            self.refusals.add()
            return False
        return True

    def blocked(self, ip: str) -> bool:
        if not self._blocked:
            return False
        key = source_key(ip)
        until = self._blocked.get(key)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._blocked[key]
        return False

    def retry_after(self, ip: str) -> float:
        """Seconds until ``ip`` may try again (0: now)."""
        if not self.blocked(ip):
            return 0.0
        return max(0.0, self._blocked[source_key(ip)] - self.clock())

    def failed(self, ip: str) -> bool:
        """Count a failed login from ``ip``; True when that blocks the address."""
        if self.limit <= 0:
            return False
        key = source_key(ip)
        now = self.clock()
        start, count = self._failures.pop(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count += 1
        if count >= self.limit:
            self._blocked[key] = now + self.window
            _bound(self._blocked, self.max_sources, lambda until: until <= now)
            self.logger.warning(
                f"{self.label} logins from an address refused for a while: too many failures",
                extra={"source": key, "failures": count, "seconds": self.window},
            )
            return True
        self._failures[key] = (start, count)  # re-inserted: the dict stays oldest first
        _bound(self._failures, self.max_sources, lambda rec: now - rec[0] >= self.window)
        return False


def _bound(records: dict[str, Any], most: int, expired: Callable[[Any], bool]) -> None:
    if len(records) <= most:
        return
    for key in [k for k, v in records.items() if expired(v)]:
        del records[key]
    while len(records) > most * 3 // 4:
        del records[next(iter(records))]


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit of open files (every socket is one) to the hard limit, and
    log both; returns (soft, hard) as they are now."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    was = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. an unlimited hard limit the kernel caps lower
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info("file descriptor limit", extra={"soft_was": was, "soft": soft, "hard": hard})
    return soft, hard
