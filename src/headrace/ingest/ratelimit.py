"""Request rate limits: one token bucket per sender (an MQTT channel, a service account).

The bucket holds at most ``max(1, rate)`` tokens (one second's worth, and never less than
one: a rate below 1/s still lets a request through every 1/rate seconds) and refills at
``rate`` tokens per second; a request takes one token or is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, default_rate: float, clock: Callable[[], float] = time.monotonic):
        self.default_rate = default_rate  # for senders without a rate of their own (0: none)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, stamp)

    def allow(self, key: str, rate: float = 0.0) -> bool:
        """Take a token of ``key``'s bucket (``rate``: the sender's own, 0 for the default)."""
        rate = rate or self.default_rate
        if rate <= 0:
            return True
        now = self.clock()
        burst = max(1.0, rate)
        tokens, stamp = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - stamp) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True
