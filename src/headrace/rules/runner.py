"""One rule at work: read its consumer, transform, format, deliver, then move its cursor.

The cursor moves only past records whose messages the sink acknowledged (or that went
to the dead-letter list), so delivery is at-least-once and a sink that is down makes
the rule fall behind, never lose: it retries with backoff and resumes where it stopped.
Kafka batches are pipelined (up to ``_KAFKA_INFLIGHT`` handed to librdkafka at once, the
cursor following the oldest acknowledged); webhook batches go one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ..stream import Record
from ..stream.follower import FollowerConsumer
from ..stream.records import Lean
from ..tasks import cancel
from .deadletters import DeadLetter
from .formats import Formatter, Message
from .kafka import KafkaDelivery, _Batch
from .model import KafkaSink, Rule
from .transform import Transformer
from .webhook import WebhookDelivery

log = logging.getLogger("headrace.rules")

_KAFKA_INFLIGHT = 4
_TRANSFORM_BATCH = 256
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 30.0
_CURSOR_INTERVAL = 0.05
_STALL_CHECK = 1.0  # how often a batch waiting for its acknowledgement asks the watchdog


@dataclass(slots=True)
class RuleStats:
    matched: int = 0  # records the rule selected
    delivered: int = 0  # messages the sink acknowledged
    failed: int = 0  # failed delivery attempts (each retry counts)
    dead_lettered: int = 0  # records sent to the dead-letter list
    last_error: str = ""
    last_error_at: int = 0  # ms
    # commit-to-acknowledgement ms of the last messages delivered
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=20000))
    _latency_doc: tuple[tuple[int, int], dict[str, float]] | None = None

    def latency_ms(self) -> dict[str, float] | None:
        if not self.latency:
            return None
        key = (self.delivered, len(self.latency))
        if self._latency_doc is not None and self._latency_doc[0] == key:
            return self._latency_doc[1]  # nothing delivered since: not sorted again
        xs = sorted(self.latency)
        doc = {
            "p50": round(xs[len(xs) // 2], 2),
            "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2),
            "samples": len(xs),
        }
        self._latency_doc = (key, doc)
        return doc


class LetterBox(Protocol):
    async def add(self, rule_id: str, letters: list[DeadLetter]) -> None: ...


class RuleRunner:
    """Runs in the delivery process (``worker.py``): its consumer follows the stream
    from the database, its cursor and dead letters go to the hub."""

    def __init__(
        self,
        rule: Rule,
        consumer: FollowerConsumer,
        transformer: Transformer,
        dead: LetterBox,
        *,
        batch: int,
        stats: RuleStats | None = None,
    ) -> None:
        self.rule = rule
        self.consumer = consumer
        self.transformer = transformer
        self.dead = dead
        self.batch = batch
        self.stats = stats if stats is not None else RuleStats()
        sink = rule.sink
        self.formatter = Formatter(
            sink.format,
            sink.topic if isinstance(sink, KafkaSink) else None,
            sink.key if isinstance(sink, KafkaSink) else "{assetId}",
            rule.select.points,
        )
        # records whose content the rule passes on untouched are not decoded
        self._lean = rule.transform is None and self.formatter.lean
        self._task: asyncio.Task[None] | None = None
        self._kafka: KafkaDelivery | None = None
        self._webhook: WebhookDelivery | None = None
        self._done = consumer.position  # delivered up to here (durable in the background)
        self._committer: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._done = self.consumer.position  # a replay may have moved it
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._committer is not None:  # the last delivered position made durable
            try:
                await self._committer
            except Exception:
                log.exception("saving the rule's cursor failed", extra={"rule": self.rule.ruleId})
            self._committer = None
        if self._kafka is not None:
            kafka, self._kafka = self._kafka, None
            await asyncio.get_running_loop().run_in_executor(None, kafka.close)
        if self._webhook is not None:
            await self._webhook.close()
            self._webhook = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def error(self, text: str) -> None:
        """A failed attempt (also called from librdkafka's thread)."""
        st = self.stats
        st.failed += 1
        st.last_error = text[:500]
        st.last_error_at = int(time.time() * 1000)

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if isinstance(self.rule.sink, KafkaSink):
                self._kafka = KafkaDelivery(self.rule.sink, self.error)
            else:
                self._webhook = WebhookDelivery(self.rule.sink, self.rule.ruleId)
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: visible in the rule's stats and the log
            log.exception("rule stopped", extra={"rule": self.rule.ruleId})
            self.error(f"rule stopped: {type(e).__name__}: {e}")

    async def _loop(self) -> None:
        c = self.consumer
        inflight: deque[tuple[_Batch, list[Message], int]] = deque()
        ahead: asyncio.Future[list[Any]] | None = None
        try:
            while True:
                if ahead is not None:
                    records, ahead = await ahead, None
                else:
                    records = await self._read()
                if not records:
                    while inflight:
                        await self._finish(inflight.popleft())
                    if c.read_position != self._done:
                        self._advance(c.read_position)  # past records the filter skipped
                    await c.wait(30.0)
                    continue
                position = c.read_position
                if c.read_position < c.stream.head:
                    # more is committed: read the next page while this one is sent
                    ahead = asyncio.ensure_future(self._read())
                self.stats.matched += len(records)
                messages, dead = await self._prepare(records)
                if dead:
                    await self._dead_letter(dead)
                if self._kafka is not None:
                    inflight.append((await self._kafka.send(messages), messages, position))
                    while inflight and (
                        len(inflight) > _KAFKA_INFLIGHT or inflight[0][0].future.done()
                    ):
                        await self._finish(inflight.popleft())
                else:
                    await self._post(messages)
                    self._advance(position)
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _read(self) -> list[Any]:
        return await self.consumer.read(self.batch, lean=self._lean)

    # -- the cursor ----------------------------------------------------------------------

    def _advance(self, position: int) -> None:
        """Everything up to ``position`` is delivered: the cursor is saved in the
        background (one write at a time, the latest position), so delivery never waits
        for the store's writer."""
        self._done = position
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._save_cursor())

    async def _save_cursor(self) -> None:
        c = self.consumer
        while c.saved != self._done:
            await c.commit(self._done)
            # at most ~20 cursor writes a second beside the ingest's writes (what is
            # acknowledged meanwhile is saved with the next one)
            await asyncio.sleep(_CURSOR_INTERVAL)

    async def _prepare(self, records: list[Record]) -> tuple[list[Message], list[DeadLetter]]:
        fmt = self.formatter
        recs = [fmt.trim(r) for r in records] if fmt.points else records
        messages: list[Message] = []
        dead: list[DeadLetter] = []
        source = self.rule.transform
        if self._lean:
            failed: list[tuple[Any, str]] = []
            fmt.lean_batch(recs, messages, failed)  # type: ignore[arg-type]
            for lr, why in failed:
                dead.append(DeadLetter([full_record(lr)], f"cannot format: {why}"))
            return messages, dead
        if source is None:
            for r in recs:
                try:
                    fmt.messages(r, messages)
                except Exception as e:  # a record the format cannot carry
                    dead.append(DeadLetter([r], f"cannot format: {type(e).__name__}: {e}"))
            return messages, dead
        for i in range(0, len(recs), _TRANSFORM_BATCH):
            chunk = recs[i : i + _TRANSFORM_BATCH]
            outcomes = await self.transformer.run(
                self.rule.ruleId, self.rule.updatedAt, source, chunk
            )
            for r, (values, err) in zip(chunk, outcomes, strict=True):
                if err is not None or values is None:
                    dead.append(DeadLetter([r], err or "transform failed"))
                else:
                    fmt.value_messages(r, values, messages)
        return messages, dead

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        await self.dead.add(self.rule.ruleId, dead)
        n = sum(len(d.records) or len(d.messages) for d in dead)
        self.stats.dead_lettered += n
        self.stats.last_error = dead[-1].error[:500]
        self.stats.last_error_at = int(time.time() * 1000)
        log.warning(
            "records dead-lettered",
            extra={"rule": self.rule.ruleId, "records": n, "error": dead[-1].error[:200]},
        )

    # -- Kafka -----------------------------------------------------------------------------

    async def _finish(self, item: tuple[_Batch, list[Message], int]) -> None:
        batch, messages, position = item
        backoff = _BACKOFF_FIRST
        assert self._kafka is not None
        while True:
            await self._acknowledged(batch)
            failed = {(m.topic, m.value) for m, _err in batch.errors}
            if not failed:
                self._acked(messages, batch.acked_at)
                break
            self._acked([m for m in messages if (m.topic, m.value) not in failed], batch.acked_at)
            retry: list[Message] = []
            dead: list[DeadLetter] = []
            for m, err in batch.errors:  # in the order librdkafka reported them
                if self._kafka.permanent(err):
                    dead.append(DeadLetter([], f"kafka refused: {err.str()}", messages=[m]))
                else:
                    retry.append(m)
                    self.error(f"kafka: {err.str()}")
            if dead:
                await self._dead_letter(dead)
            if not retry:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
            messages = retry
            batch = await self._kafka.send(retry)
        self._advance(position)

    async def _acknowledged(self, batch: _Batch) -> None:
        """Until librdkafka reported every message of the batch; meanwhile its watchdog
        counts the time the broker gives no answer at all (a hung broker) as failed
        attempts (``KafkaDelivery.stalled``)."""
        kafka = self._kafka
        assert kafka is not None
        while not batch.future.done():
            await asyncio.wait([batch.future], timeout=_STALL_CHECK)
            if not batch.future.done():
                kafka.stalled(batch.sent, f"{batch.left} messages of a batch waiting")
        await batch.future

    def _acked(self, messages: list[Message], at: float = 0.0) -> None:
        """Count what the sink acknowledged, and its commit-to-acknowledgement time
        (``at``: when the sink acknowledged the last of them, s; default now)."""
        st = self.stats
        st.delivered += len(messages)
        now = at or time.time()
        committed = self.consumer.stream.committed_at
        lat = st.latency
        prev, ms = -1, 0.0
        for m in messages:
            if m.at != prev:  # the records of one write share their at
                prev = m.at
                ms = (now - committed(prev)) * 1000
            lat.append(ms)

    # -- webhooks --------------------------------------------------------------------------

    async def _post(self, messages: list[Message]) -> None:
        assert self._webhook is not None
        size = self._webhook.sink.batchSize
        for i in range(0, len(messages), size):
            chunk = messages[i : i + size]
            backoff = _BACKOFF_FIRST
            while True:
                answer = await self._webhook.send(chunk)
                if answer.delivered:
                    self._acked(chunk)
                    break
                if not answer.retry:
                    await self._dead_letter(
                        [
                            DeadLetter(
                                [],
                                answer.error,
                                messages=chunk,
                                response={"status": answer.status, "body": answer.body},
                            )
                        ]
                    )
                    break
                self.error(answer.error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def counters(self, *, latency: bool = True) -> dict[str, Any]:
        """What the hub shows of this runner (``RuleEngine.stats``)."""
        st = self.stats
        doc: dict[str, Any] = {
            "running": self.running,
            "matched": st.matched,
            "delivered": st.delivered,
            "failed": st.failed,
            "deadLettered": st.dead_lettered,
            "lastError": st.last_error or None,
            "lastErrorAt": st.last_error_at or None,
        }
        if latency:
            doc["latencyMs"] = st.latency_ms()
        return doc


def full_record(r: Lean) -> Record:
    """A lean record with its content decoded (for a dead letter)."""
    fields = {f: getattr(r, f) for f in r.__struct_fields__ if f != "content"}
    return Record(**fields, content=msgspec.json.decode(r.content))
