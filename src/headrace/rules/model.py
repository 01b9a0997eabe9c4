"""Rule documents: what a rule selects, how it transforms, where it sends (docs/rules.md).

Store objects ``rule`` (key ruleId, scope orgId). A webhook's secret is kept in the
document (the hub signs with it) and shown only when the rule is created.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from typing import Any, Final, Literal

import msgspec

from ..errors import ValidationFailed
from ..stream import KINDS, Filter

Format = Literal["enos", "enos-point", "headrace"]

# the fields a topic or key template may name
TEMPLATE_FIELDS: Final = frozenset(
    {"orgId", "productKey", "modelId", "assetId", "deviceKey", "source", "kind", "pointId"}
)
ENOS_KINDS: Final = ("measurepoint", "attribute", "event")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


class Select(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which records of the rule's organization it takes; an empty list means all."""

    products: list[str] = []
    models: list[str] = []
    devices: list[str] = []  # assetIds or deviceKeys
    sources: list[Literal["realtime", "offline"]] = []
    kinds: list[str] = []
    points: list[str] = []  # measurepoint ids: records with none are skipped, others trimmed


class Sasl(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    username: str
    password: str


class KafkaSink(msgspec.Struct, kw_only=True, tag="kafka", tag_field="type"):
    bootstrap: str  # "host:port,host:port"
    topic: str | None = None  # template; None with format enos: the EnOS topics
    key: str = "{assetId}"  # template
    format: Format = "enos"
    acks: Literal["all"] = "all"
    # of the produce batches (librdkafka compresses in its own threads): lz4 cut the
    # broker's and the client's work per message against tansu (docs/benchmarks.md)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    tls: bool = False
    caFile: str | None = None
    sasl: Sasl | None = None


class WebhookSink(msgspec.Struct, kw_only=True, tag="webhook", tag_field="type"):
    url: str
    format: Format = "headrace"
    secret: str = ""  # HMAC-SHA256 key of X-Headrace-Signature (generated when empty)
    timeout: float = 10.0
    batchSize: int = 100
    headers: dict[str, str] = {}


Sink = KafkaSink | WebhookSink


class Rule(msgspec.Struct, kw_only=True):
    orgId: str
    ruleId: str
    name: str
    enabled: bool = True
    select: Select = msgspec.field(default_factory=Select)
    transform: str | None = None  # JavaScript defining transform(record)
    sink: Sink
    createdAt: int = 0
    updatedAt: int = 0


class RuleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    sink: Sink
    ruleId: str | None = None
    enabled: bool = True
    select: Select = msgspec.field(default_factory=Select)
    transform: str | None = None
    # where a new rule starts: "now" (what is committed from now on) or "earliest" (all
    # the stream still holds)
    start: Literal["now", "earliest"] = "now"


class RuleUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    enabled: bool | None = None
    select: Select | None = None
    transform: str | None = None
    sink: Sink | None = None


class Replay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Deliver again from a stream position (after it) or from a time (ms)."""

    position: int | None = None
    time: int | None = None


def new_rule_id() -> str:
    return "rule-" + uuid.uuid4().hex[:12]


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def stream_filter(rule: Rule) -> Filter:
    sel = rule.select
    kinds = list(sel.kinds)
    fmt = rule.sink.format
    if not kinds and fmt == "enos":
        kinds = list(ENOS_KINDS)
    elif not kinds and fmt == "enos-point":
        kinds = ["measurepoint"]
    return Filter(
        orgs=[rule.orgId],
        products=list(sel.products),
        models=list(sel.models),
        devices=list(sel.devices),
        sources=list(sel.sources),
        kinds=kinds,  # type: ignore[arg-type]
        points=list(sel.points),
    )


def template_fields(text: str, what: str) -> None:
    """A template names only known fields, in ``{field}`` form."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise ValidationFailed(f"{what}: {e}", field=f"sink.{what}") from None
    for _literal, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conv:
            raise ValidationFailed(
                f"{what}: unknown field {{{name}}} (fields: {', '.join(sorted(TEMPLATE_FIELDS))})",
                field=f"sink.{what}",
            )


def check_rule(rule: Rule) -> None:
    if not rule.name or len(rule.name) > 128:
        raise ValidationFailed("name must be 1..128 characters", field="name")
    for k in rule.select.kinds:
        if k not in KINDS:
            raise ValidationFailed(
                f"unknown kind {k!r} (kinds: {', '.join(KINDS)})", field="select.kinds"
            )
    sink = rule.sink
    fmt = sink.format
    kinds = rule.select.kinds
    if fmt == "enos" and any(k not in ENOS_KINDS for k in kinds):
        raise ValidationFailed(
            "format enos carries measurepoint, attribute and event records only",
            field="select.kinds",
        )
    if fmt == "enos-point" and any(k != "measurepoint" for k in kinds):
        raise ValidationFailed(
            "format enos-point carries measurepoint records only", field="select.kinds"
        )
    if rule.transform is not None and len(rule.transform) > 256 * 1024:
        raise ValidationFailed("transform is over 256 KiB", field="transform")
    if isinstance(sink, KafkaSink):
        hosts = [h.strip() for h in sink.bootstrap.split(",") if h.strip()]
        if not hosts or any(":" not in h for h in hosts):
            raise ValidationFailed(
                "bootstrap must be host:port[,host:port...]", field="sink.bootstrap"
            )
        if sink.topic is None and fmt != "enos":
            raise ValidationFailed("topic is required unless format is enos", field="sink.topic")
        if sink.topic is not None:
            template_fields(sink.topic, "topic")
            literal = sink.topic.replace("{", "").replace("}", "")
            if not _TOPIC.match(literal):
                raise ValidationFailed(
                    "topic: letters, digits, '.', '_' and '-' only", field="sink.topic"
                )
        template_fields(sink.key, "key")
    else:
        if not sink.url.startswith(("http://", "https://")):
            raise ValidationFailed("url must be http:// or https://", field="sink.url")
        if not 0 < sink.timeout <= 300:
            raise ValidationFailed("timeout must be 0..300 seconds", field="sink.timeout")
        if not 1 <= sink.batchSize <= 10_000:
            raise ValidationFailed("batchSize must be 1..10000", field="sink.batchSize")


def public(rule: Rule, *, with_secret: bool = False) -> dict[str, Any]:
    """The rule as the API shows it (a webhook's secret only when asked)."""
    doc: dict[str, Any] = msgspec.to_builtins(rule)
    sink = doc["sink"]
    if sink.get("type") == "webhook" and not with_secret:
        sink.pop("secret", None)
    if sink.get("sasl"):
        sink["sasl"]["password"] = "***"
    return doc
