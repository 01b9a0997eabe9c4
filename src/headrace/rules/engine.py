"""The rule engine: rules' documents, one stream consumer and one runner per rule.

A rule's consumer (``rule:{ruleId}``) is opened when the rule is loaded or created and
stays open while the rule exists, paused or not: the stream keeps its records within
the rule's retention (``rules.retention_seconds``/``rules.retention_bytes``), so a
paused rule resumes where it stopped. Deleting the rule drops the consumer and its
dead letters.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from ..errors import Conflict, NotFound, ValidationFailed
from ..scripts.sandbox import ScriptError
from ..state.common import check_key, now_ms
from ..state.registry import Registry
from ..store.base import Store
from ..stream import Retention, Stream
from .deadletters import DeadLetters, DeadLetterView
from .model import (
    Replay,
    Rule,
    RuleCreate,
    RuleUpdate,
    WebhookSink,
    check_rule,
    new_rule_id,
    new_secret,
    stream_filter,
)
from .runner import RuleRunner, RuleStats
from .transform import Transformer

log = logging.getLogger("headrace.rules")

KIND = "rule"
_CURSOR = "rule:"
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Rule)


class RuleEngine:
    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        stream: Stream,
        transformer: Transformer,
        retention: Retention,
        batch: int = 1000,
        max_dead_letters: int = 10_000,
    ) -> None:
        self.store = store
        self.registry = registry
        self.stream = stream
        self.transformer = transformer
        self.retention = retention
        self.batch = batch
        self.dead = DeadLetters(store, max_per_rule=max_dead_letters)
        self.rules: dict[str, Rule] = {}
        self.runners: dict[str, RuleRunner] = {}
        self._lock = asyncio.Lock()
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the rules and open their consumers (before any request is stored)."""
        for doc in self.store.load_objects(KIND):
            rule = _dec.decode(doc)
            self.rules[rule.ruleId] = rule
            self._runner(rule)
        self.dead.load()

    def _runner(self, rule: Rule, stats: RuleStats | None = None) -> RuleRunner:
        consumer = self.stream.open(_CURSOR + rule.ruleId, stream_filter(rule), self.retention)
        runner = RuleRunner(
            rule, consumer, self.transformer, self.dead, batch=self.batch, stats=stats
        )
        self.runners[rule.ruleId] = runner
        return runner

    async def start(self) -> None:
        for name in self.stream.stored_cursors():
            if name.startswith(_CURSOR) and name[len(_CURSOR) :] not in self.rules:
                await self.stream.drop(name)  # a rule deleted while its cursor was saved
        for runner in self.runners.values():
            if runner.rule.enabled:
                runner.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(r.stop() for r in self.runners.values()))
        self.transformer.close()

    # -- documents -----------------------------------------------------------------------

    def get(self, org_id: str, rule_id: str) -> Rule:
        rule = self.rules.get(rule_id)
        if rule is None or rule.orgId != org_id:
            raise NotFound(f"rule {rule_id!r} not found in organization {org_id!r}")
        return rule

    async def list_rules(self, org_id: str, after: str, limit: int) -> list[Rule]:
        self.registry.org(org_id)
        docs = await self.store.list_objects(KIND, org_id, after, limit)
        return [_dec.decode(d) for d in docs]

    async def _check_transform(self, source: str | None) -> None:
        if source is None:
            return
        engine = self.transformer.engine
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: engine.compile(Transformer.source(source))
            )
        except ScriptError as e:
            raise ValidationFailed(f"transform: {e}", field="transform") from None

    async def create(self, org_id: str, body: RuleCreate) -> Rule:
        self.registry.org(org_id)
        rule_id = body.ruleId or new_rule_id()
        check_key(rule_id, "ruleId")
        if rule_id in self.rules:
            raise Conflict(f"rule {rule_id!r} already exists", field="ruleId")
        sink = body.sink
        if isinstance(sink, WebhookSink) and not sink.secret:
            sink = msgspec.structs.replace(sink, secret=new_secret())
        now = now_ms()
        rule = Rule(
            orgId=org_id,
            ruleId=rule_id,
            name=body.name,
            enabled=body.enabled,
            select=body.select,
            transform=body.transform,
            sink=sink,
            createdAt=now,
            updatedAt=now,
        )
        check_rule(rule)
        await self._check_transform(rule.transform)
        async with self._lock:
            await self.store.insert_objects([(KIND, rule_id, org_id, _enc.encode(rule))])
            self.rules[rule_id] = rule
            runner = self._runner(rule)
            if body.start == "earliest":
                runner.consumer.seek(self.stream.pruned)
            await runner.consumer.commit(runner.consumer.position)  # durable from now on
            if rule.enabled and self._started:
                runner.start()
        log.info("rule created", extra={"rule": rule_id, "org": org_id})
        return rule

    async def _replace(self, old: Rule, new: Rule) -> Rule:
        check_rule(new)
        if new.transform != old.transform:
            await self._check_transform(new.transform)
        async with self._lock:
            await self.store.update_object(KIND, new.ruleId, _enc.encode(new))
            self.rules[new.ruleId] = new
            runner = self.runners.get(new.ruleId)
            stats = None
            if runner is not None:
                await runner.stop()
                stats = runner.stats
            self.transformer.discard(old.ruleId)
            runner = self._runner(new, stats)
            if new.enabled and self._started:
                runner.start()
        return new

    async def update(self, org_id: str, rule_id: str, body: RuleUpdate) -> Rule:
        old = self.get(org_id, rule_id)
        changes = {f: v for f in body.__struct_fields__ if (v := getattr(body, f)) is not None}
        sink = changes.get("sink")
        if isinstance(sink, WebhookSink) and not sink.secret:
            keep = old.sink.secret if isinstance(old.sink, WebhookSink) else new_secret()
            changes["sink"] = msgspec.structs.replace(sink, secret=keep)
        new = msgspec.structs.replace(old, **changes, updatedAt=max(now_ms(), old.updatedAt + 1))
        return await self._replace(old, new)

    async def set_enabled(self, org_id: str, rule_id: str, enabled: bool) -> Rule:
        old = self.get(org_id, rule_id)
        if old.enabled == enabled:
            return old
        return await self._replace(old, msgspec.structs.replace(old, enabled=enabled))

    async def delete(self, org_id: str, rule_id: str) -> None:
        self.get(org_id, rule_id)
        async with self._lock:
            runner = self.runners.pop(rule_id, None)
            if runner is not None:
                await runner.stop()
            await self.store.delete_object(KIND, rule_id)
            self.rules.pop(rule_id, None)
            self.transformer.discard(rule_id)
            await self.stream.drop(_CURSOR + rule_id)
            await self.dead.clear(rule_id)
        log.info("rule deleted", extra={"rule": rule_id, "org": org_id})

    async def replay(self, org_id: str, rule_id: str, body: Replay) -> dict[str, Any]:
        """Deliver again from a stream position or a time (within what the stream still
        holds); answers the position the rule now reads after."""
        rule = self.get(org_id, rule_id)
        if (body.position is None) == (body.time is None):
            raise ValidationFailed("give one of position or time", field="position")
        wanted = (
            body.position if body.position is not None else self.stream.position_at(body.time or 0)
        )
        async with self._lock:
            runner = self.runners[rule_id]
            await runner.stop()
            pos = runner.consumer.seek(wanted)
            await runner.consumer.commit(pos)
            if rule.enabled and self._started:
                runner.start()
        return {"ruleId": rule_id, "position": pos, "requested": wanted, "clamped": pos != wanted}

    def stats(self, org_id: str, rule_id: str) -> dict[str, Any]:
        self.get(org_id, rule_id)
        doc = self.runners[rule_id].stats_doc()
        doc["deadLetters"] = self.dead.count(rule_id)
        return doc

    async def dead_letters(
        self, org_id: str, rule_id: str, after: str, limit: int
    ) -> list[DeadLetterView]:
        self.get(org_id, rule_id)
        return await self.dead.page(rule_id, after, limit)

    def referring(self, kind: str, key: str) -> list[str]:
        """Rules of an organization the registry would delete."""
        if kind == "organization":
            return [f"rule {r.ruleId}" for r in self.rules.values() if r.orgId == key]
        return []
