"""MQTT session logic: who is connected as which client, subscriptions, persistent
sessions, and where a reply goes. No sockets here.

A client is a channel's client id: the same client id under another channel is another
client, with its own session, and never takes over a connection of another channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ...proto.enos import topic_matches
from ...proto.mqtt import ReasonCode, SessionState

log = logging.getLogger("headrace.mqtt")

ClientKey = tuple[str, str]  # (channel id, client id)


class Subscriptions:
    """One connection's topic filters and their granted QoS."""

    __slots__ = ("_matched", "filters")

    # topics whose answer is remembered (every request asks for its reply topic's)
    CACHED_TOPICS = 256

    def __init__(self, filters: dict[str, int] | None = None) -> None:
        self.filters: dict[str, int] = dict(filters or {})
        self._matched: dict[str, int | None] = {}

    def add(self, topic_filter: str, qos: int) -> None:
        self.filters[topic_filter] = qos
        self._matched.clear()

    def remove(self, topic_filter: str) -> None:
        self.filters.pop(topic_filter, None)
        self._matched.clear()

    def qos_for(self, topic: str) -> int | None:
        """The highest QoS of the filters matching ``topic``; None when none does."""
        matched = self._matched
        if topic in matched:
            return matched[topic]
        best = None
        for f, qos in self.filters.items():
            if topic_matches(f, topic) and (best is None or qos > best):
                best = qos
        if len(matched) >= self.CACHED_TOPICS:
            matched.clear()
        matched[topic] = best
        return best


class Client(Protocol):
    """What the registry needs of a connection."""

    subscriptions: Subscriptions

    @property
    def lagging(self) -> bool: ...

    def close(self, reason: str, reason_code: int | None = None) -> None: ...


C = TypeVar("C", bound=Client)


@dataclass(slots=True)
class StoredSession:
    """A persistent session kept between connections (clean_session=0)."""

    subscriptions: dict[str, int]
    state: SessionState
    expires: float  # monotonic


@dataclass(slots=True)
class Clients(Generic[C]):
    """The connected clients and the persistent sessions of those that left."""

    max_expiry: float  # seconds a persistent session is kept at most
    clock: Callable[[], float] = time.monotonic
    live: dict[ClientKey, C] = field(default_factory=dict)
    by_channel: dict[str, set[C]] = field(default_factory=dict)
    stored: dict[ClientKey, StoredSession] = field(default_factory=dict)
    # reply copies not sent to subscribers that did not keep up, in all and since the
    # last log line (one a second at most)
    dropped: int = 0
    _dropped_unlogged: int = 0
    _dropped_logged_at: float = 0.0

    def __len__(self) -> int:
        return len(self.live)

    def connected(self, key: ClientKey) -> bool:
        return key in self.live

    def attach(self, key: ClientKey, conn: C, *, clean: bool) -> StoredSession | None:
        """``conn`` is now client ``key``: a connection of the same client is taken over;
        returns the stored session to resume (None: a clean start)."""
        old = self.live.get(key)
        if old is not None:
            old.close("session taken over", ReasonCode.SESSION_TAKEN_OVER)
        self.live[key] = conn
        self.by_channel.setdefault(key[0], set()).add(conn)
        self.expire()
        stored = self.stored.pop(key, None)
        return None if clean else stored

    def detach(
        self, key: ClientKey, conn: C, *, expiry: float, state: Callable[[], SessionState]
    ) -> None:
        """``conn`` closed; its session is kept for ``expiry`` seconds if it was still the
        client's connection (not taken over)."""
        channel = self.by_channel.get(key[0])
        if channel is not None:
            channel.discard(conn)
            if not channel:
                del self.by_channel[key[0]]
        if self.live.get(key) is not conn:
            return
        del self.live[key]
        if expiry > 0:
            self.stored[key] = StoredSession(
                dict(conn.subscriptions.filters), state(), self.clock() + expiry
            )

    def expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self.stored.items() if s.expires < now]:
            del self.stored[key]

    def of_channel(self, channel_id: str) -> Iterator[C]:
        return iter(list(self.by_channel.get(channel_id, ())))

    def dropped_copy(self, channel_id: str) -> None:
        self.dropped += 1
        self._dropped_unlogged += 1
        now = self.clock()
        if now - self._dropped_logged_at >= 1.0:
            log.warning(
                "reply copies not sent to subscribers that do not read",
                extra={
                    "channel": channel_id,
                    "copies": self._dropped_unlogged,
                    "total": self.dropped,
                },
            )
            self._dropped_unlogged = 0
            self._dropped_logged_at = now

    def reply_targets(self, requester: C, channel_id: str, topic: str) -> Iterable[tuple[C, int]]:
        """Where a reply on ``topic`` goes, with its QoS: to the requesting connection when
        it subscribed to the topic (what the SDKs do), else to the channel's other
        connections that did (a mosquitto_sub beside mosquitto_pub), as a broker would.

        Not to every subscriber every time: with many connections of one channel that
        would multiply reply traffic by the number of connections.
        """
        qos = requester.subscriptions.qos_for(topic)
        if qos is not None:
            return ((requester, qos),)
        targets = []
        for c in self.by_channel.get(channel_id, ()):
            q = c.subscriptions.qos_for(topic)
            if q is not None:
                targets.append((c, q))
        return targets
