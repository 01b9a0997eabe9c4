"""The Kafka sink: confluent-kafka (librdkafka) with settings that keep per-device order.

``acks=all``; no idempotence but one request in flight per connection and unlimited
retries with no message timeout, so librdkafka retries a batch until the broker takes
it and never lets a later batch of a partition overtake an earlier one (idempotence
cost ~3x the rate against tansu, and is not needed for order with one in flight;
duplicates are possible either way after a crash: delivery is at-least-once). The
messages wait in librdkafka's queue and the rule falls behind while the broker is away.

A broker that is down (connections refused or closed) shows as failed attempts and the
last error through librdkafka's error callback. A broker that is *hung* (its process
stopped, its sockets open) gives librdkafka nothing to report: the produce request waits
with no error, delivery report or callback (measured against a SIGSTOPped tansu: nothing
in 25 s, request.timeout.ms notwithstanding). So the watchdog (``stalled``, asked by the
rule's runner while it waits for a batch) counts a failed attempt each ``STALL_SECONDS``
that a handed-over message waits with no delivery report at all; it only observes:
nothing is resent, reordered or dropped.

librdkafka's delivery reports are served by one thread per producer (``poll``); a
batch's future resolves when its last message is reported.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

from .formats import Message
from .model import KafkaSink

STALL_SECONDS = 5.0  # messages waiting this long with no delivery report: a failed attempt

# errors of one message that retrying cannot fix: the record is dead-lettered
_PERMANENT = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._MSG_TIMED_OUT,  # not with message.timeout.ms=0; kept for custom configs
    KafkaError._INVALID_ARG,
}


class _Batch:
    """One ``send``: its future resolves when librdkafka reported every message."""

    __slots__ = ("acked_at", "errors", "future", "left", "loop", "owner", "sent")

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop, owner: Any = None) -> None:
        self.left = n
        self.owner = owner  # the KafkaDelivery: the time of its last delivery report
        self.sent = time.monotonic()  # when it was handed to librdkafka
        self.acked_at = 0.0  # when the last message was reported (time.time())
        self.errors: list[tuple[Message, KafkaError]] = []
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def delivered(self, err: Any, msg: Any) -> None:  # librdkafka's thread
        if self.owner is not None:
            self.owner.last_report = time.monotonic()
        if err is not None:
            self.errors.append((Message(msg.topic(), msg.key(), msg.value(), 0, 0), err))
        self.left -= 1
        if self.left == 0:
            self.acked_at = time.time()
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def producer_config(sink: KafkaSink, on_error: Callable[[Any], None]) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": sink.bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": 0,  # never give up: the rule waits for the broker
        "retries": 2147483647,
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 5000,
        "reconnect.backoff.max.ms": 5000,
        "linger.ms": 2,  # under load, batches fill while the request before is in flight
        "compression.type": sink.compression,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
        "socket.keepalive.enable": True,
        "request.timeout.ms": 10000,  # a hung broker shows as failed attempts after 10 s
        "error_cb": on_error,
    }
    if sink.tls or sink.sasl is not None:
        conf["security.protocol"] = (
            ("SASL_SSL" if sink.tls else "SASL_PLAINTEXT") if sink.sasl is not None else "SSL"
        )
    if sink.caFile:
        conf["ssl.ca.location"] = sink.caFile
    if sink.sasl is not None:
        conf["sasl.mechanism"] = sink.sasl.mechanism
        conf["sasl.username"] = sink.sasl.username
        conf["sasl.password"] = sink.sasl.password
    return conf


class KafkaDelivery:
    def __init__(self, sink: KafkaSink, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self.last_report = time.monotonic()  # librdkafka's last delivery report (any)
        self._stall_noted = 0.0
        self.producer = Producer(producer_config(sink, self._error))
        self._running = True
        self._thread = threading.Thread(target=self._poll, name="headrace-kafka", daemon=True)
        self._thread.start()

    def _error(self, err: Any) -> None:  # librdkafka's thread: a broker/transport error
        self._on_error(f"kafka: {err.str() if hasattr(err, 'str') else err}")

    def _poll(self) -> None:
        p = self.producer
        while self._running:
            p.poll(0.05)

    async def send(self, messages: list[Message]) -> _Batch:
        """Hand the messages to librdkafka (in order); the returned batch's future
        resolves once the broker acknowledged (or refused) each of them."""
        loop = asyncio.get_running_loop()
        batch = _Batch(len(messages), loop, self)
        if not messages:
            batch.future.set_result(None)
            return batch
        produce = self.producer.produce
        done = batch.delivered
        for m in messages:
            while True:
                try:
                    # positional: no keyword parsing per message (partition -1: by key)
                    produce(m.topic, m.value, m.key, -1, done)
                    break
                except BufferError:  # librdkafka's queue is full: the broker is slow or down
                    self.stalled(batch.sent, "librdkafka's queue is full")
                    await asyncio.sleep(0.01)
        return batch

    def stalled(self, since: float, what: str = "") -> bool:
        """The watchdog: whether messages handed over at ``since`` (monotonic) have
        waited ``STALL_SECONDS`` with no delivery report since; if so, a failed attempt
        is counted (at most one per ``STALL_SECONDS``) with the time it has waited."""
        now = time.monotonic()
        quiet = now - max(since, self.last_report)
        if quiet < STALL_SECONDS:
            return False
        if now - self._stall_noted >= STALL_SECONDS:
            self._stall_noted = now
            self._on_error(
                f"kafka: no acknowledgement from the broker for {quiet:.0f} s "
                f"({what or 'messages waiting'}; the broker is hung or unreachable)"
            )
        return True

    @staticmethod
    def permanent(err: Any) -> bool:
        return bool(err.code() in _PERMANENT)

    def close(self) -> None:
        """Drop what is not delivered (the cursor has not passed it: delivered again on
        the next start) and stop the thread."""
        try:
            self.producer.purge()
            self.producer.flush(1)
        except Exception:
            pass
        self._running = False
        self._thread.join(timeout=2)
