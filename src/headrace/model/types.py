"""Domain types of the registry: organizations, thing models, products, devices.

These are the wire shapes of the admin API as well (msgspec structs, camelCase names as
in EnOS). Semantic checks of a thing model live in ``model.validate``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

PointType = Literal[
    "int",
    "float",
    "double",
    "bool",
    "string",
    "enum",
    "date",
    "timestamp",
    "array",
    "struct",
    "file",
]
POINT_TYPES: tuple[str, ...] = PointType.__args__  # type: ignore[attr-defined]

MAX_ID_LENGTH = 128
DEFAULT_STRING_MAX = 1024
MAX_ARRAY_ITEMS = 128


class TypeSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A typed value slot: a measurepoint, attribute, event output, or struct field."""

    id: str
    type: PointType
    name: str = ""
    description: str = ""
    # string: maximum length in characters
    maxLength: int | None = None
    # enum: value -> label (keys are the allowed values, written as strings)
    enum: dict[str, str] | None = None
    # array: element type and, for struct elements, their fields
    items: PointType | None = None
    # struct (or array of struct): declared fields
    fields: list[TypeSpec] | None = None
    # measurepoints only
    withQuality: bool = False
    flag: Literal["fault", "alert"] | None = None
    unit: str = ""


class EventSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str = ""
    description: str = ""
    outputs: list[TypeSpec] = []


class ThingModel(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str = ""
    description: str = ""
    attributes: list[TypeSpec] = []
    measurepoints: list[TypeSpec] = []
    events: list[EventSpec] = []


class Organization(msgspec.Struct, kw_only=True):
    orgId: str
    name: str
    createdAt: int = 0


DataFormat = Literal["json", "custom"]


class Product(msgspec.Struct, kw_only=True):
    orgId: str
    productKey: str
    productSecret: str
    name: str
    modelId: str
    dataFormat: DataFormat = "json"
    inactivityTimeout: int = 300
    description: str = ""
    createdAt: int = 0
    retentionDays: float = 0
    """Days the samples of the product's devices are kept; 0: ``store.retention_days``."""
    # IANA time zone of the product's devices ("" = UTC; a device's ``timezone``
    # attribute wins): the TSDB API's local times
    timezone: str = ""


class Device(msgspec.Struct, kw_only=True):
    orgId: str
    productKey: str
    deviceKey: str
    assetId: str
    deviceSecret: str
    name: str = ""
    group: str = ""
    createdAt: int = 0


class Channel(msgspec.Struct, kw_only=True):
    """An offline message integration channel: one third-party system's MQTT login."""

    orgId: str
    channelId: str
    name: str
    products: list[str]
    enabled: bool = True
    username: str
    # "<salt hex>$<sha256 hex>"; never returned by the API
    passwordHash: str = ""
    clientId: str = ""  # when set, the only client id accepted for this channel
    rateLimit: float = 0.0  # requests/s (0: the ingest.rate_limit setting)
    createdAt: int = 0
