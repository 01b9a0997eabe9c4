"""The rule engine: rules' documents, one stream consumer per rule, and the delivery
process that runs them.

A rule's consumer (``rule:{ruleId}``) is opened when the rule is loaded or created and
stays open while the rule exists, paused or not: the stream keeps its records within
the rule's retention (``rules.retention_seconds``/``rules.retention_bytes``), so a
paused rule resumes where it stopped. Deleting the rule drops the consumer and its
dead letters.

The rules' runners (``runner.py``) work in a process of their own (``worker.py``,
started by ``process.DeliveryProcess`` when a rule first runs): they read the committed
records from the database, transform, format and deliver there, with their own
interpreter, so a rule's work does not take the hub's GIL from the ingest. The hub
keeps what must stay in one place: the documents, the cursors (made durable as the
process reports them), the dead letters and the counters it shows. After each commit
the hub tells the process the new head. A process that dies is started again and its
rules run again from their durable cursors (at-least-once).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import msgspec

from ..errors import Conflict, NotFound, ValidationFailed
from ..scripts.engine import ScriptEngine
from ..scripts.sandbox import ScriptError
from ..state.common import check_key, now_ms
from ..state.registry import Registry
from ..store.base import Store
from ..stream import Consumer, Retention, Stream
from ..tasks import cancel
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
from .process import DeliveryProcess
from .transform import Transformer

log = logging.getLogger("headrace.rules")

KIND = "rule"
_CURSOR = "rule:"
_RESTART_FIRST = 1.0
_RESTART_MAX = 30.0
_HEAD_BACKLOG = 256 * 1024  # bytes waiting for the delivery process: heads held back
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Rule)


class RuleEngine:
    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        stream: Stream,
        scripts: ScriptEngine,
        script_settings: dict[str, Any],
        retention: Retention,
        batch: int = 1000,
        max_dead_letters: int = 10_000,
    ) -> None:
        self.store = store
        self.registry = registry
        self.stream = stream
        self.scripts = scripts  # checks a transform when a rule is written
        self.retention = retention
        self.dead = DeadLetters(store, max_per_rule=max_dead_letters)
        self.rules: dict[str, Rule] = {}
        self.consumers: dict[str, Consumer] = {}
        self.delivery = DeliveryProcess(
            {"source": store.stream_source(), "batch": batch, "scripts": script_settings},
            self._handle,
            self._exited,
        )
        self._counters: dict[str, dict[str, Any]] = {}  # the runners' last report
        self._gen = itertools.count(1)
        self._running: dict[str, int] = {}  # rules sent to the process -> their run's gen
        self._halting: dict[str, asyncio.Future[None]] = {}
        self._times: dict[int, float] = {}  # commit times not yet sent
        self._flush_at: asyncio.Handle | asyncio.TimerHandle | None = None
        self._restart: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._started = False
        stream.tails.append(self._committed)

    # -- lifecycle -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the rules and open their consumers (before any request is stored)."""
        for doc in self.store.load_objects(KIND):
            rule = _dec.decode(doc)
            self.rules[rule.ruleId] = rule
            self._open(rule)
        self.dead.load()

    def _open(self, rule: Rule) -> Consumer:
        c = self.stream.open(_CURSOR + rule.ruleId, stream_filter(rule), self.retention)
        self.consumers[rule.ruleId] = c
        return c

    async def start(self) -> None:
        for name in self.stream.stored_cursors():
            if name.startswith(_CURSOR) and name[len(_CURSOR) :] not in self.rules:
                await self.stream.drop(name)  # a rule deleted while its cursor was saved
        self._started = True
        for rule in list(self.rules.values()):
            await self._run(rule)

    async def stop(self) -> None:
        self._started = False
        await cancel(self._restart)
        await self.delivery.stop()  # every runner's last cursor is handled before
        self._running.clear()

    # -- the delivery process ----------------------------------------------------------------

    async def _run(self, rule: Rule) -> None:
        """Start the rule's runner in the delivery process (if enabled)."""
        if not (rule.enabled and self._started):
            return
        failure = await self._start_process()
        if failure is not None:  # shown in the rule's stats; tried again with a backoff
            counters = self._counters.setdefault(rule.ruleId, {})
            counters.update(
                running=False,
                lastError=f"the rules' delivery process did not start: {failure}",
                lastErrorAt=int(time.time() * 1000),
            )
            self._schedule_restart()
            return
        gen = next(self._gen)
        self._running[rule.ruleId] = gen
        counters = self._counters.setdefault(rule.ruleId, {})
        counters["running"] = True
        self._send_head()
        position = self.consumers[rule.ruleId].position
        self.delivery.send(["run", _enc.encode(rule), gen, position, counters])

    async def _halt(self, rule_id: str, forget: bool = False) -> None:
        """Stop the rule's runner; returns once its last cursor is durable."""
        if rule_id not in self._running or not self.delivery.alive:
            self._running.pop(rule_id, None)
            return
        fut = self._halting.get(rule_id)
        if fut is None:
            fut = self._halting[rule_id] = asyncio.get_running_loop().create_future()
            self.delivery.send(["halt", rule_id, forget])
        await fut

    def _committed(self, entries: list[tuple[int, int, bytes]]) -> None:
        """A stream tail: each commit's head goes to the process (one message per loop
        pass, with the writes' commit times for the commit-to-ack latency)."""
        if not self._running:
            return
        prev = -1
        times = self._times
        committed_at = self.stream.committed_at
        for _seq, at, _doc in entries:
            if at != prev:
                prev = at
                times[at] = committed_at(at)
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_soon(self._send_head)

    def _send_head(self) -> None:
        self._flush_at = None
        if self.delivery.backlog() > _HEAD_BACKLOG:
            # the process is not reading (stopped, or busy): the latest head goes later,
            # instead of a queue of heads in this process's memory
            times = self._times
            if len(times) > 20_000:
                for k in list(itertools.islice(times, 10_000)):
                    del times[k]
            self._flush_at = asyncio.get_running_loop().call_later(0.05, self._send_head)
            return
        times_list = list(self._times.items())
        self._times.clear()
        st = self.stream
        self.delivery.send(["head", st.head, st.pruned, times_list])

    async def _handle(self, msg: list[Any]) -> None:
        kind, rule_id, gen = msg[0], msg[1], msg[2]
        if kind == "log":  # ["log", level, logger, message, extra]
            logging.getLogger(str(msg[2])).log(int(msg[1]), msg[3], extra=msg[4])
            return
        if self._running.get(rule_id) != gen:
            return  # from a run that was stopped meanwhile
        if kind == "cursor":
            self._counters.setdefault(rule_id, {}).update(msg[4])  # first: they cover it
            c = self.consumers.get(rule_id)
            if c is not None and msg[3] > c.position:
                await c.commit(msg[3])
        elif kind == "dead":
            await self.dead.add(rule_id, msg[3])
        elif kind in ("stats", "halted"):
            self._counters.setdefault(rule_id, {}).update(msg[3])
        if kind == "halted":
            self._counters.setdefault(rule_id, {})["running"] = False
            del self._running[rule_id]
            fut = self._halting.pop(rule_id, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _exited(self, reason: str) -> None:
        """The process died: its rules show it, and run again from their durable
        cursors once a new process started."""
        now = int(time.time() * 1000)
        for rule_id in self._running:
            counters = self._counters.setdefault(rule_id, {})
            counters.update(running=False, lastError=reason, lastErrorAt=now)
            counters["failed"] = counters.get("failed", 0) + 1
        self._running.clear()
        for fut in self._halting.values():
            if not fut.done():
                fut.set_result(None)
        self._halting.clear()
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        if self._started and (self._restart is None or self._restart.done()):
            self._restart = asyncio.create_task(self._start_again())

    async def _start_again(self) -> None:
        backoff = _RESTART_FIRST
        while self._started:
            await asyncio.sleep(backoff)
            async with self._lock:
                if self.delivery.alive or await self._start_process() is None:
                    for rule in list(self.rules.values()):
                        if rule.ruleId not in self._running:
                            await self._run(rule)
                    return
            backoff = min(backoff * 2, _RESTART_MAX)

    async def _start_process(self) -> Exception | None:
        """Start the delivery process unless it runs; the failure, logged (None: it runs)."""
        try:
            await self.delivery.ensure()
            return None
        except Exception as e:
            log.exception("starting the rules' delivery process failed")
            return e

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
        engine = self.scripts
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
            c = self._open(rule)
            if body.start == "earliest":
                c.seek(self.stream.pruned)
            await c.commit(c.position)  # durable from now on
            await self._run(rule)
        log.info("rule created", extra={"rule": rule_id, "org": org_id})
        return rule

    async def _replace(self, old: Rule, new: Rule) -> Rule:
        check_rule(new)
        if new.transform != old.transform:
            await self._check_transform(new.transform)
        async with self._lock:
            await self.store.update_object(KIND, new.ruleId, _enc.encode(new))
            self.rules[new.ruleId] = new
            await self._halt(new.ruleId)
            self._open(new)
            await self._run(new)
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
            await self._halt(rule_id, forget=True)
            await self.store.delete_object(KIND, rule_id)
            self.rules.pop(rule_id, None)
            self.consumers.pop(rule_id, None)
            self._counters.pop(rule_id, None)
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
            await self._halt(rule_id)
            c = self.consumers[rule_id]
            pos = c.seek(wanted)
            await c.commit(pos)
            await self._run(rule)
        return {"ruleId": rule_id, "position": pos, "requested": wanted, "clamped": pos != wanted}

    def stats_doc(self, rule_id: str) -> dict[str, Any]:
        """The rule's counters (as its runner last reported them) and its cursor's lag."""
        rule = self.rules[rule_id]
        c = self.consumers[rule_id]
        k = self._counters.get(rule_id, {})
        return {
            "ruleId": rule_id,
            "enabled": rule.enabled,
            "running": rule_id in self._running and bool(k.get("running", True)),
            "matched": k.get("matched", 0),
            "delivered": k.get("delivered", 0),
            "failed": k.get("failed", 0),
            "deadLettered": k.get("deadLettered", 0),
            "lagRecords": c.lag_records,
            "lagSeconds": round(c.lag_seconds, 3),
            "position": c.position,
            "head": self.stream.head,
            "dropped": c.dropped,
            "lastError": k.get("lastError"),
            "lastErrorAt": k.get("lastErrorAt"),
            "latencyMs": k.get("latencyMs"),
        }

    def stats(self, org_id: str, rule_id: str) -> dict[str, Any]:
        self.get(org_id, rule_id)
        doc = self.stats_doc(rule_id)
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
