"""Each rule's dead-letter list: what its sink refused for good or its transform failed on.

Store objects ``rule_dead_letter`` (key ``{ruleId}/{time:013d}-{n:06d}``, scope ruleId),
each with the error, the records (headrace's record) or the messages as sent, and for a
webhook the response. At most ``max_per_rule`` are kept; the oldest go first (counted).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..store.base import Store
from ..stream import Record
from .formats import Message

KIND = "rule_dead_letter"


@dataclass(slots=True)
class DeadLetter:
    records: list[Record]
    error: str
    messages: list[Message] = field(default_factory=list)
    response: dict[str, Any] | None = None


class DeadLetterView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    ruleId: str
    at: int
    error: str
    records: list[Any] = []
    messages: list[Any] = []
    response: dict[str, Any] | None = None


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(DeadLetterView)


def _message_doc(m: Message) -> dict[str, Any]:
    try:
        value: Any = msgspec.json.decode(m.value)
    except msgspec.DecodeError:
        value = m.value.decode(errors="replace")
    return {"seq": m.seq, "topic": m.topic, "key": (m.key or b"").decode(), "value": value}


def letter_doc(dl: DeadLetter) -> dict[str, Any]:
    """A dead letter as plain data (sent from the delivery process to the hub)."""
    return {
        "error": dl.error,
        "records": [msgspec.to_builtins(r) for r in dl.records],
        "messages": [_message_doc(m) for m in dl.messages],
        "response": dl.response,
    }


class DeadLetters:
    def __init__(self, store: Store, *, max_per_rule: int = 10_000) -> None:
        self.store = store
        self.max_per_rule = max_per_rule
        self._keys: dict[str, deque[str]] = {}
        self._n = itertools.count()
        self.discarded = 0  # dropped beyond max_per_rule

    def load(self) -> None:
        for doc in self.store.load_objects(KIND):
            d = _dec.decode(doc)
            self._keys.setdefault(d.ruleId, deque()).append(d.id)
        for keys in self._keys.values():
            keys_sorted = sorted(keys)
            keys.clear()
            keys.extend(keys_sorted)

    def count(self, rule_id: str) -> int:
        return len(self._keys.get(rule_id, ()))

    async def add(self, rule_id: str, docs: list[dict[str, Any]]) -> None:
        """Store dead letters (``letter_doc``s, from the delivery process)."""
        now = int(time.time() * 1000)
        rows = []
        keys = self._keys.setdefault(rule_id, deque())
        for doc in docs:
            key = f"{rule_id}/{now:013d}-{next(self._n) % 1_000_000:06d}"
            view = DeadLetterView(
                id=key,
                ruleId=rule_id,
                at=now,
                error=str(doc.get("error", "")),
                records=list(doc.get("records") or []),
                messages=list(doc.get("messages") or []),
                response=doc.get("response"),
            )
            rows.append((KIND, key, rule_id, _enc.encode(view)))
            keys.append(key)
        await self.store.insert_objects(rows)
        while len(keys) > self.max_per_rule:
            await self.store.delete_object(KIND, keys.popleft())
            self.discarded += 1

    async def page(self, rule_id: str, after: str, limit: int) -> list[DeadLetterView]:
        docs = await self.store.list_objects(KIND, rule_id, after, limit)
        return [_dec.decode(d) for d in docs]

    async def clear(self, rule_id: str) -> int:
        keys = self._keys.pop(rule_id, deque())
        for key in keys:
            await self.store.delete_object(KIND, key)
        return len(keys)
