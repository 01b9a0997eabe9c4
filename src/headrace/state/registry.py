"""The registry: organizations, thing models, products, devices (and later channels, ...).

Documents live in the store; this service keeps them in memory as well, so the ingest
pipeline resolves products, devices and compiled models without touching the database.
Every change is checked first, written to the store, and only then applied to the cache,
so a refused change leaves nothing behind.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from ..errors import Conflict, NotFound, ValidationFailed
from ..model.types import Channel, DataFormat, Device, Organization, Product, ThingModel
from ..model.validate import CompiledModel, check_model, compile_model
from ..store.base import DeviceRow, Store
from .common import check_key, check_name, hash_password, now_ms, random_key

S = TypeVar("S", bound=msgspec.Struct)


# -- inputs of the admin operations (also the admin API's request bodies) --------------


class OrgCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    orgId: str | None = None


class OrgUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str


class ProductCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    modelId: str
    productKey: str | None = None
    productSecret: str | None = None
    dataFormat: DataFormat = "json"
    inactivityTimeout: int = 300
    description: str = ""
    retentionDays: float = 0
    timezone: str = ""


class ProductUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    modelId: str | None = None
    dataFormat: DataFormat | None = None
    inactivityTimeout: int | None = None
    description: str | None = None
    retentionDays: float | None = None
    timezone: str | None = None


class DeviceCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    deviceKey: str
    name: str = ""
    group: str = ""
    assetId: str | None = None
    deviceSecret: str | None = None


class DeviceUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    group: str | None = None


class ChannelCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    products: list[str]
    enabled: bool = True
    clientId: str = ""
    rateLimit: float = 0.0


class ChannelUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    products: list[str] | None = None
    enabled: bool | None = None
    clientId: str | None = None
    rateLimit: float | None = None


@dataclass(slots=True)
class DeviceEntry:
    """A device as the pipeline sees it: its compact store id and its document."""

    id: int
    device: Device


_enc = msgspec.json.Encoder()


def _apply(obj: S, update: msgspec.Struct) -> S:
    changes = {f: v for f in update.__struct_fields__ if (v := getattr(update, f)) is not None}
    return msgspec.structs.replace(obj, **changes)


def _retention(days: float) -> float:
    if not 0 <= days <= 1e6:
        raise ValidationFailed(
            "retentionDays must be 0 (the store default) to 1000000", field="retentionDays"
        )
    return days


class Registry:
    def __init__(self, store: Store):
        self.store = store
        self.orgs: dict[str, Organization] = {}
        self.models: dict[tuple[str, str], tuple[ThingModel, CompiledModel]] = {}
        self.products: dict[str, Product] = {}
        self.devices: dict[tuple[str, str], DeviceEntry] = {}
        self.by_asset: dict[str, DeviceEntry] = {}
        self.channels: dict[str, Channel] = {}
        self.channels_by_user: dict[str, Channel] = {}
        # called with a channel after it changed or was deleted (servers drop its clients)
        self.channel_listeners: list[Any] = []
        # services holding objects that refer to registry objects (enterprises -> products):
        # fn(kind, key) -> descriptions of what still refers to it
        self.referrers: list[Callable[[str, str], list[str]]] = []

    def load(self) -> None:
        dec = msgspec.json.Decoder
        for doc in self.store.load_objects("organization"):
            org = dec(Organization).decode(doc)
            self.orgs[org.orgId] = org
        model_dec = dec(_StoredModel)
        for doc in self.store.load_objects("model"):
            sm = model_dec.decode(doc)
            self.models[(sm.orgId, sm.model.id)] = (sm.model, compile_model(sm.model))
        for doc in self.store.load_objects("product"):
            p = dec(Product).decode(doc)
            self.products[p.productKey] = p
        for doc in self.store.load_objects("channel"):
            ch = dec(Channel).decode(doc)
            self._cache_channel(ch)
        ddec = dec(Device)
        for row in self.store.load_devices():
            self._cache_device(DeviceEntry(row.id, ddec.decode(row.doc)))

    def _cache_device(self, e: DeviceEntry) -> None:
        self.devices[(e.device.productKey, e.device.deviceKey)] = e
        self.by_asset[e.device.assetId] = e

    # -- organizations ---------------------------------------------------------------

    def org(self, org_id: str) -> Organization:
        org = self.orgs.get(org_id)
        if org is None:
            raise NotFound(f"organization {org_id!r} not found")
        return org

    async def create_org(self, body: OrgCreate) -> Organization:
        org_id = (
            check_key(body.orgId, "orgId") if body.orgId else "o" + random_key(14, string.digits)
        )
        org = Organization(orgId=org_id, name=check_name(body.name), createdAt=now_ms())
        await self.store.insert_objects([("organization", org_id, "", _enc.encode(org))])
        self.orgs[org_id] = org
        return org

    async def update_org(self, org_id: str, body: OrgUpdate) -> Organization:
        org = msgspec.structs.replace(self.org(org_id), name=check_name(body.name))
        await self.store.update_object("organization", org_id, _enc.encode(org))
        self.orgs[org_id] = org
        return org

    async def delete_org(self, org_id: str) -> None:
        self.org(org_id)
        if (
            any(k[0] == org_id for k in self.models)
            or any(p.orgId == org_id for p in self.products.values())
            or any(c.orgId == org_id for c in self.channels.values())
        ):
            raise Conflict(
                f"organization {org_id!r} still has models, products or channels; delete them first"
            )
        self._check_referrers("organization", org_id)
        await self.store.delete_object("organization", org_id)
        del self.orgs[org_id]

    async def list_orgs(self, after: str, limit: int) -> list[Organization]:
        docs = await self.store.list_objects("organization", "", after, limit)
        return [msgspec.json.decode(d, type=Organization) for d in docs]

    # -- thing models ----------------------------------------------------------------

    def model(self, org_id: str, model_id: str) -> ThingModel:
        return self._model_entry(org_id, model_id)[0]

    def compiled(self, org_id: str, model_id: str) -> CompiledModel:
        return self._model_entry(org_id, model_id)[1]

    def _model_entry(self, org_id: str, model_id: str) -> tuple[ThingModel, CompiledModel]:
        self.org(org_id)
        entry = self.models.get((org_id, model_id))
        if entry is None:
            raise NotFound(f"model {model_id!r} not found in organization {org_id!r}")
        return entry

    async def create_model(self, org_id: str, model: ThingModel) -> ThingModel:
        self.org(org_id)
        check_model(model)
        compiled = compile_model(model)
        doc = _enc.encode(_StoredModel(orgId=org_id, model=model))
        await self.store.insert_objects([("model", f"{org_id}/{model.id}", org_id, doc)])
        self.models[(org_id, model.id)] = (model, compiled)
        return model

    async def update_model(self, org_id: str, model_id: str, model: ThingModel) -> ThingModel:
        self._model_entry(org_id, model_id)
        if model.id != model_id:
            raise ValidationFailed("model id cannot be changed", field="id")
        check_model(model)
        compiled = compile_model(model)
        doc = _enc.encode(_StoredModel(orgId=org_id, model=model))
        await self.store.update_object("model", f"{org_id}/{model_id}", doc)
        self.models[(org_id, model_id)] = (model, compiled)
        return model

    async def delete_model(self, org_id: str, model_id: str) -> None:
        self._model_entry(org_id, model_id)
        users = [
            p.productKey
            for p in self.products.values()
            if p.orgId == org_id and p.modelId == model_id
        ]
        if users:
            raise Conflict(
                f"model {model_id!r} is used by products {', '.join(sorted(users)[:10])}"
            )
        await self.store.delete_object("model", f"{org_id}/{model_id}")
        del self.models[(org_id, model_id)]

    async def list_models(self, org_id: str, after: str, limit: int) -> list[ThingModel]:
        self.org(org_id)
        docs = await self.store.list_objects(
            "model", org_id, f"{org_id}/{after}" if after else "", limit
        )
        return [msgspec.json.decode(d, type=_StoredModel).model for d in docs]

    # -- products --------------------------------------------------------------------

    def product(self, org_id: str, product_key: str) -> Product:
        self.org(org_id)
        p = self.products.get(product_key)
        if p is None or p.orgId != org_id:
            raise NotFound(f"product {product_key!r} not found in organization {org_id!r}")
        return p

    async def create_product(self, org_id: str, body: ProductCreate) -> Product:
        self.org(org_id)
        self._model_entry(org_id, body.modelId)
        pk = check_key(body.productKey, "productKey") if body.productKey else random_key(8)
        secret = (
            check_key(body.productSecret, "productSecret") if body.productSecret else random_key(16)
        )
        if body.inactivityTimeout <= 0:
            raise ValidationFailed(
                "inactivityTimeout must be positive (seconds)", field="inactivityTimeout"
            )
        p = Product(
            orgId=org_id,
            productKey=pk,
            productSecret=secret,
            name=check_name(body.name),
            modelId=body.modelId,
            dataFormat=body.dataFormat,
            inactivityTimeout=body.inactivityTimeout,
            description=body.description,
            createdAt=now_ms(),
            retentionDays=_retention(body.retentionDays),
            timezone=check_timezone(body.timezone),
        )
        await self.store.insert_objects([("product", pk, org_id, _enc.encode(p))])
        self.products[pk] = p
        return p

    async def update_product(self, org_id: str, product_key: str, body: ProductUpdate) -> Product:
        p = _apply(self.product(org_id, product_key), body)
        _retention(p.retentionDays)
        self._model_entry(org_id, p.modelId)
        check_timezone(p.timezone)
        if p.inactivityTimeout <= 0:
            raise ValidationFailed(
                "inactivityTimeout must be positive (seconds)", field="inactivityTimeout"
            )
        await self.store.update_object("product", product_key, _enc.encode(p))
        self.products[product_key] = p
        return p

    async def reset_product_secret(self, org_id: str, product_key: str) -> Product:
        """A new random productSecret: signed logins with the old one fail from now on."""
        p = msgspec.structs.replace(self.product(org_id, product_key), productSecret=random_key(16))
        await self.store.update_object("product", product_key, _enc.encode(p))
        self.products[product_key] = p
        return p

    async def delete_product(self, org_id: str, product_key: str) -> None:
        self.product(org_id, product_key)
        if any(k[0] == product_key for k in self.devices):
            raise Conflict(f"product {product_key!r} still has devices; delete them first")
        self._check_referrers("product", product_key)
        users = [c.channelId for c in self.channels.values() if product_key in c.products]
        if users:
            raise Conflict(
                f"product {product_key!r} is integrated by channels {', '.join(sorted(users))}"
            )
        await self.store.delete_object("product", product_key)
        del self.products[product_key]

    async def list_products(self, org_id: str, after: str, limit: int) -> list[Product]:
        self.org(org_id)
        docs = await self.store.list_objects("product", org_id, after, limit)
        return [msgspec.json.decode(d, type=Product) for d in docs]

    # -- devices ---------------------------------------------------------------------

    def find_device(
        self,
        org_id: str,
        *,
        product_key: str | None = None,
        device_key: str | None = None,
        asset_id: str | None = None,
    ) -> DeviceEntry | None:
        """The device an integration item, a file request or an admin path names, as every
        edge resolves it: by ``asset_id`` when no ``device_key`` is given, else by
        ``(product_key, device_key)``. None when there is no such device in ``org_id``
        (whoever else may own it)."""
        if asset_id and not device_key:
            e = self.by_asset.get(asset_id)
        elif device_key and product_key:
            e = self.devices.get((product_key, device_key))
        else:
            return None
        return e if e is not None and e.device.orgId == org_id else None

    def device(self, org_id: str, product_key: str, device_key: str) -> DeviceEntry:
        self.product(org_id, product_key)
        e = self.find_device(org_id, product_key=product_key, device_key=device_key)
        if e is None:
            raise NotFound(f"device {device_key!r} not found in product {product_key!r}")
        return e

    def device_by_asset(self, org_id: str, asset_id: str) -> DeviceEntry:
        e = self.find_device(org_id, asset_id=asset_id)
        if e is None:
            raise NotFound(f"device {asset_id!r} not found in organization {org_id!r}")
        return e

    async def create_devices(
        self, org_id: str, product_key: str, bodies: list[DeviceCreate]
    ) -> list[Device]:
        """Create one or many devices atomically: all are created or none."""
        self.product(org_id, product_key)
        if not bodies:
            raise ValidationFailed("no devices given", field="")
        seen_keys: set[str] = set()
        seen_assets: set[str] = set()
        devices = []
        now = now_ms()
        for i, b in enumerate(bodies):
            prefix = f"[{i}]." if len(bodies) > 1 else ""
            dk = check_key(b.deviceKey, f"{prefix}deviceKey")
            aid = check_key(b.assetId, f"{prefix}assetId") if b.assetId else random_key(10)
            secret = (
                check_key(b.deviceSecret, f"{prefix}deviceSecret")
                if b.deviceSecret
                else random_key(20)
            )
            if dk in seen_keys or (product_key, dk) in self.devices:
                raise Conflict(
                    f"device with deviceKey {dk!r} already exists", field=f"{prefix}deviceKey"
                )
            if aid in seen_assets or aid in self.by_asset:
                raise Conflict(
                    f"device with assetId {aid!r} already exists", field=f"{prefix}assetId"
                )
            seen_keys.add(dk)
            seen_assets.add(aid)
            devices.append(
                Device(
                    orgId=org_id,
                    productKey=product_key,
                    deviceKey=dk,
                    assetId=aid,
                    deviceSecret=secret,
                    name=b.name,
                    group=b.group,
                    createdAt=now,
                )
            )
        rows = [
            DeviceRow(0, d.assetId, org_id, product_key, d.deviceKey, _enc.encode(d))
            for d in devices
        ]
        ids = await self.store.insert_devices(rows)
        for dev_id, d in zip(ids, devices, strict=True):
            self._cache_device(DeviceEntry(dev_id, d))
        return devices

    async def update_device(
        self, org_id: str, product_key: str, device_key: str, body: DeviceUpdate
    ) -> Device:
        e = self.device(org_id, product_key, device_key)
        d = _apply(e.device, body)
        await self.store.update_device(e.id, _enc.encode(d))
        e.device = d
        return d

    async def delete_device(self, org_id: str, product_key: str, device_key: str) -> None:
        e = self.device(org_id, product_key, device_key)
        await self.store.delete_device(e.id)
        self.devices.pop((product_key, device_key), None)
        self.by_asset.pop(e.device.assetId, None)

    async def list_devices(
        self, org_id: str, product_key: str, after: str, limit: int
    ) -> list[Device]:
        self.product(org_id, product_key)
        docs = await self.store.list_devices(product_key, after, limit)
        return [msgspec.json.decode(d, type=Device) for d in docs]

    def _check_referrers(self, kind: str, key: str) -> None:
        found = [what for fn in self.referrers for what in fn(kind, key)]
        if found:
            raise Conflict(
                f"{kind} {key!r} is still referred to by {', '.join(sorted(found)[:10])}"
            )

    # -- channels --------------------------------------------------------------------

    def _cache_channel(self, ch: Channel) -> None:
        self.channels[ch.channelId] = ch
        self.channels_by_user[ch.username] = ch

    def channel(self, org_id: str, channel_id: str) -> Channel:
        self.org(org_id)
        ch = self.channels.get(channel_id)
        if ch is None or ch.orgId != org_id:
            raise NotFound(f"channel {channel_id!r} not found in organization {org_id!r}")
        return ch

    def _check_channel_products(self, org_id: str, products: list[str]) -> list[str]:
        if not products:
            raise ValidationFailed("a channel needs at least one product", field="products")
        for i, pk in enumerate(products):
            p = self.products.get(pk)
            if p is None or p.orgId != org_id:
                raise ValidationFailed(
                    f"product {pk!r} not found in organization {org_id!r}", field=f"products[{i}]"
                )
        return sorted(set(products))

    async def create_channel(self, org_id: str, body: ChannelCreate) -> tuple[Channel, str]:
        """Create a channel; returns it with its password (shown this once)."""
        self.org(org_id)
        products = self._check_channel_products(org_id, body.products)
        if body.clientId:
            check_key(body.clientId, "clientId")
        channel_id = "ch" + random_key(10)
        password = random_key(24)
        ch = Channel(
            orgId=org_id,
            channelId=channel_id,
            name=check_name(body.name),
            products=products,
            enabled=body.enabled,
            username=f"{channel_id}@{org_id}",
            passwordHash=hash_password(password),
            clientId=body.clientId,
            rateLimit=max(0.0, body.rateLimit),
            createdAt=now_ms(),
        )
        await self.store.insert_objects([("channel", channel_id, org_id, _enc.encode(ch))])
        self._cache_channel(ch)
        return ch, password

    async def _replace_channel(self, ch: Channel) -> Channel:
        await self.store.update_object("channel", ch.channelId, _enc.encode(ch))
        self._cache_channel(ch)
        for listener in self.channel_listeners:
            listener(ch)
        return ch

    async def update_channel(self, org_id: str, channel_id: str, body: ChannelUpdate) -> Channel:
        ch = _apply(self.channel(org_id, channel_id), body)
        ch = msgspec.structs.replace(
            ch, products=self._check_channel_products(org_id, ch.products), name=check_name(ch.name)
        )
        if ch.clientId:
            check_key(ch.clientId, "clientId")
        return await self._replace_channel(ch)

    async def reset_channel_password(self, org_id: str, channel_id: str) -> tuple[Channel, str]:
        password = random_key(24)
        ch = msgspec.structs.replace(
            self.channel(org_id, channel_id), passwordHash=hash_password(password)
        )
        return await self._replace_channel(ch), password

    async def delete_channel(self, org_id: str, channel_id: str) -> None:
        ch = self.channel(org_id, channel_id)
        await self.store.delete_object("channel", channel_id)
        del self.channels[channel_id]
        self.channels_by_user.pop(ch.username, None)
        for listener in self.channel_listeners:
            listener(msgspec.structs.replace(ch, enabled=False))

    async def list_channels(self, org_id: str, after: str, limit: int) -> list[Channel]:
        self.org(org_id)
        docs = await self.store.list_objects("channel", org_id, after, limit)
        return [msgspec.json.decode(d, type=Channel) for d in docs]

    def channel_for_product(self, product_key: str) -> Channel | None:
        """The enabled channel an EnOS signed login for this product belongs to."""
        found = [c for c in self.channels.values() if c.enabled and product_key in c.products]
        return min(found, key=lambda c: c.createdAt) if found else None

    def summary(self) -> dict[str, Any]:
        return {
            "orgs": len(self.orgs),
            "models": len(self.models),
            "products": len(self.products),
            "devices": len(self.devices),
        }


def check_timezone(name: str) -> str:
    """An IANA time zone name (or "" for UTC), else ValidationFailed."""
    if name:
        try:
            ZoneInfo(name)
        except (ValueError, OSError, ZoneInfoNotFoundError):
            raise ValidationFailed(
                f"timezone {name!r} is not an IANA time zone such as Asia/Shanghai",
                field="timezone",
            ) from None
    return name


class _StoredModel(msgspec.Struct):
    orgId: str
    model: ThingModel
