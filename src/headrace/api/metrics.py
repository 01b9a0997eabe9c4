"""``GET /metrics``: Prometheus text format, behind the admin token.

Per enterprise (label ``enterprise``): queue depth, unacked pushes, stored events,
connected clients, and the enqueued/delivered/acked/redelivered/expired counters (since
the hub started). Hub-wide: noti logins and refusals, ingest requests and points.
Scrape with ``authorization: {credentials: <admin token>}`` in the Prometheus job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..ingest.pipeline import Pipeline
from ..push.fanout import Fanout
from ..rules.engine import RuleEngine
from ..server.noti import NotiServer
from ..stream import Stream
from .common import admin_guard
from .services import services

_GAUGES = (
    ("depth", "headrace_push_queue_depth", "Events waiting to be pushed."),
    ("unacked", "headrace_push_unacked", "Events pushed and not acked yet."),
    ("stored", "headrace_push_queue_stored", "Events stored in the queue (waiting or unacked)."),
    ("connections", "headrace_push_connections", "Connected noti clients."),
)
_COUNTERS = (
    ("enqueued", "headrace_push_enqueued", "Events appended to the queue."),
    ("delivered", "headrace_push_delivered", "Pushes sent (redeliveries included)."),
    ("acked", "headrace_push_acked", "Pushes acked (and deleted)."),
    ("redelivered", "headrace_push_redelivered", "Unacked pushes returned to the queue."),
    ("expired", "headrace_push_expired", "Events dropped by retention time or size."),
)


class HubCollector(Collector):
    """Reads the counters of the push fan-out (and its queues), the noti server and the
    pipeline."""

    def __init__(self, fanout: Fanout, noti: NotiServer, pipeline: Pipeline) -> None:
        self.fanout = fanout
        self.noti = noti
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        stats = {eid: q.stats() for eid, q in self.fanout.queues.items()}
        for key, name, doc in _GAUGES:
            g = GaugeMetricFamily(name, doc, labels=["enterprise"])
            for eid, st in stats.items():
                g.add_metric([eid], st[key])
            yield g
        for key, name, doc in _COUNTERS:
            c = CounterMetricFamily(name, doc, labels=["enterprise"])
            for eid, st in stats.items():
                c.add_metric([eid], st[key])
            yield c
        yield CounterMetricFamily(
            "headrace_push_oversize_events",
            "Events whose push line passes 8 KiB (raw data too large to split).",
            value=self.fanout.oversize,
        )
        yield CounterMetricFamily(
            "headrace_push_unwritten_events",
            "Events acked within push.write_delay_ms of their push: never written to the queue's rows.",
            value=self.fanout.unwritten,
        )
        noti = self.noti
        yield CounterMetricFamily(
            "headrace_noti_logins", "Accepted noti logins.", value=noti.logins
        )
        yield CounterMetricFamily(
            "headrace_noti_logins_refused", "Refused noti logins.", value=noti.refused
        )
        yield CounterMetricFamily(
            "headrace_noti_invalid_messages", "invalid_msg answers sent.", value=noti.rejected
        )
        yield GaugeMetricFamily(
            "headrace_noti_connections_open",
            "Open noti connections (logged in or not).",
            value=len(noti.connections),
        )
        yield CounterMetricFamily(
            "headrace_ingest_requests",
            "Integration requests stored.",
            value=self.pipeline.requests,
        )
        yield CounterMetricFamily(
            "headrace_ingest_points",
            "Values stored by integration requests.",
            value=self.pipeline.points,
        )


_RULE_COUNTERS = (
    ("matched", "headrace_rule_matched", "Records the rule selected."),
    ("delivered", "headrace_rule_delivered", "Messages the rule's sink acknowledged."),
    ("failed", "headrace_rule_failed_attempts", "Failed delivery attempts (each retry)."),
    ("deadLettered", "headrace_rule_dead_lettered", "Records sent to the dead-letter list."),
)
_RULE_GAUGES = (
    ("lagRecords", "headrace_rule_lag_records", "Stream records after the rule's cursor."),
    ("lagSeconds", "headrace_rule_lag_seconds", "Age of the oldest record not done yet."),
    ("lastErrorAt", "headrace_rule_last_error_time", "When the last error happened (ms, 0 none)."),
)


class StreamCollector(Collector):
    """The outbound stream (head, bytes, records dropped by retention, per consumer lag)
    and every rule's counters (labels ``org``, ``rule``)."""

    def __init__(self, stream: Stream, rules: RuleEngine) -> None:
        self.stream = stream
        self.rules = rules

    def collect(self) -> Iterator[Metric]:
        st = self.stream
        yield GaugeMetricFamily(
            "headrace_stream_head", "Seq of the last committed stream record.", value=st.head
        )
        yield GaugeMetricFamily(
            "headrace_stream_bytes", "Bytes of records the stream holds.", value=st.bytes
        )
        yield CounterMetricFamily(
            "headrace_stream_appended", "Records appended since start.", value=st.appended
        )
        dropped = CounterMetricFamily(
            "headrace_stream_dropped",
            "Records that fell out of a consumer's retention before it was done.",
            labels=["consumer"],
        )
        lag = GaugeMetricFamily(
            "headrace_stream_consumer_lag_records",
            "Stream records after the consumer's cursor.",
            labels=["consumer"],
        )
        for name, consumer in list(st.consumers.items()):
            dropped.add_metric([name], consumer.dropped)
            lag.add_metric([name], consumer.lag_records)
        yield dropped
        yield lag
        docs = [
            (rule.orgId, rid, self.rules.stats_doc(rid))
            for rid, rule in list(self.rules.rules.items())
            if rid in self.rules.consumers
        ]
        for key, name, doc in _RULE_COUNTERS:
            c = CounterMetricFamily(name, doc, labels=["org", "rule"])
            for org, rid, d in docs:
                c.add_metric([org, rid], d[key])
            yield c
        for key, name, doc in _RULE_GAUGES:
            g = GaugeMetricFamily(name, doc, labels=["org", "rule"])
            for org, rid, d in docs:
                g.add_metric([org, rid], d[key] or 0)
            yield g


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)
    return registry


@get("/metrics", guards=[admin_guard], include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(generate_latest(services(request).metrics), media_type=CONTENT_TYPE_LATEST)
