"""Enterprises: the applications that receive device events over noti (docs/protocols.md C.4).

An enterprise belongs to an organization and has an ``enterpriseId`` and a secret (both
generated unless given, so that applications moving from another push service keep
their credentials), the products it subscribes to, the event types it wants, an optional
IP allow-list, whether history produces events, and its queue retention.

Store objects: ``enterprise`` (key enterpriseId, scope orgId). The secret is kept as a
salted hash (the client sends it in clear over TLS; nothing needs it back) and shown once.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import uuid
from typing import Final

import msgspec

from ..errors import ValidationFailed

EVENT_TYPES: Final = (
    "device_online",
    "device_offline",
    "attr_fault",
    "attr_alert",
    "device_status_raw",
    "device_status_kv",
)

_CREDENTIAL = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class Enterprise(msgspec.Struct, kw_only=True):
    orgId: str
    enterpriseId: str
    name: str
    products: list[str]
    eventTypes: list[str]
    ipAllowList: list[str] = []
    historyEvents: bool = False
    retentionSeconds: int = 0  # 0: the push.retention_seconds setting
    maxQueue: int = 0  # 0: the push.max_queue setting
    secretHash: str = ""  # "<salt hex>$<sha256 hex>"; never returned by the API
    createdAt: int = 0


class EnterpriseCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    products: list[str]
    eventTypes: list[str]
    enterpriseId: str | None = None
    enterpriseSecret: str | None = None
    ipAllowList: list[str] = []
    historyEvents: bool = False
    retentionSeconds: int = 0
    maxQueue: int = 0


class EnterpriseUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    products: list[str] | None = None
    eventTypes: list[str] | None = None
    ipAllowList: list[str] | None = None
    historyEvents: bool | None = None
    retentionSeconds: int | None = None
    maxQueue: int | None = None


class SecretReset(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enterpriseSecret: str | None = None  # None: generate one


def new_enterprise_id() -> str:
    return uuid.uuid4().hex


def new_secret() -> str:
    return secrets.token_hex(16)


def check_credential(value: str, field: str) -> str:
    if not _CREDENTIAL.match(value):
        raise ValidationFailed(
            f"{field} must be 1-128 characters of letters, digits, '_', '-' or '.'", field=field
        )
    return value


def check_event_types(types: list[str]) -> list[str]:
    if not types:
        raise ValidationFailed("eventTypes must name at least one event type", field="eventTypes")
    for i, t in enumerate(types):
        if t not in EVENT_TYPES:
            raise ValidationFailed(
                f"unknown event type {t!r}: use {', '.join(EVENT_TYPES)}", field=f"eventTypes[{i}]"
            )
    return sorted(set(types), key=EVENT_TYPES.index)


def check_allow_list(entries: list[str]) -> list[str]:
    out = []
    for i, e in enumerate(entries):
        try:
            out.append(str(ipaddress.ip_network(e.strip(), strict=False)))
        except ValueError:
            raise ValidationFailed(
                f"{e!r} is not an IP address or network (CIDR)", field=f"ipAllowList[{i}]"
            ) from None
    return out


def check_limits(retention: int, max_queue: int) -> None:
    if retention < 0:
        raise ValidationFailed(
            "retentionSeconds must be 0 (the default) or positive", field="retentionSeconds"
        )
    if max_queue < 0:
        raise ValidationFailed("maxQueue must be 0 (the default) or positive", field="maxQueue")


class AllowList:
    """An enterprise's IP allow-list, parsed once (empty: every address is allowed)."""

    __slots__ = ("networks",)

    def __init__(self, entries: list[str]) -> None:
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries]

    def allows(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)
