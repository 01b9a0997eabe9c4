"""Admin API: organizations, thing models, products, devices (``/api/v1``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, delete, get, patch, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from ..model.types import Device, Organization, Product, ThingModel
from ..model.validate import INT64_MAX, INT64_MIN
from ..state.registry import (
    DeviceCreate,
    DeviceUpdate,
    OrgCreate,
    OrgUpdate,
    ProductCreate,
    ProductUpdate,
)
from .auth import principal
from .common import admin_guard, page, page_limit
from .services import services

Req = Request[Any, Any, Any]
Limit = Parameter(default=100, ge=1, le=1000)
Cursor = Parameter(default="")
# query integers the store compares with what it holds (SQLite INTEGER: int64): one out
# of range is a 422 naming the parameter, not an OverflowError in the store (a 500)
Start = Parameter(default=0, ge=INT64_MIN, le=INT64_MAX)  # ms
End = Parameter(default=None, ge=INT64_MIN, le=INT64_MAX)  # ms
LogCursor = Parameter(default=None, ge=INT64_MIN, le=INT64_MAX)  # a message-log record id


# -- organizations ---------------------------------------------------------------------


@post("/orgs")
async def create_org(request: Req, data: OrgCreate) -> Organization:
    return await services(request).registry.create_org(data)


@get("/orgs", opt={"access": "user"})
async def list_orgs(request: Req, limit: int = Limit, cursor: str = Cursor) -> dict[str, Any]:
    """The organizations the caller may see (a user: those it holds a role in)."""
    registry = services(request).registry
    visible = principal(request).orgs()
    if visible is None:
        return page(await registry.list_orgs(cursor, page_limit(limit)), limit, "orgId")
    ids = sorted(o for o in visible if o > cursor and o in registry.orgs)[: page_limit(limit)]
    return page([registry.org(o) for o in ids], limit, "orgId")


@get("/orgs/{org_id:str}")
async def get_org(request: Req, org_id: str) -> Organization:
    return services(request).registry.org(org_id)


@patch("/orgs/{org_id:str}")
async def update_org(request: Req, org_id: str, data: OrgUpdate) -> Organization:
    return await services(request).registry.update_org(org_id, data)


@delete("/orgs/{org_id:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_org(request: Req, org_id: str) -> None:
    await services(request).registry.delete_org(org_id)


# -- thing models ----------------------------------------------------------------------


@post("/orgs/{org_id:str}/models")
async def create_model(request: Req, org_id: str, data: ThingModel) -> ThingModel:
    return await services(request).registry.create_model(org_id, data)


@get("/orgs/{org_id:str}/models")
async def list_models(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    return page(
        await services(request).registry.list_models(org_id, cursor, page_limit(limit)), limit, "id"
    )


@get("/orgs/{org_id:str}/models/{model_id:str}")
async def get_model(request: Req, org_id: str, model_id: str) -> ThingModel:
    return services(request).registry.model(org_id, model_id)


@put("/orgs/{org_id:str}/models/{model_id:str}")
async def update_model(request: Req, org_id: str, model_id: str, data: ThingModel) -> ThingModel:
    return await services(request).registry.update_model(org_id, model_id, data)


@delete("/orgs/{org_id:str}/models/{model_id:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_model(request: Req, org_id: str, model_id: str) -> None:
    await services(request).registry.delete_model(org_id, model_id)


# -- products --------------------------------------------------------------------------


@post("/orgs/{org_id:str}/products")
async def create_product(request: Req, org_id: str, data: ProductCreate) -> Product:
    return await services(request).registry.create_product(org_id, data)


@get("/orgs/{org_id:str}/products")
async def list_products(
    request: Req, org_id: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    items = await services(request).registry.list_products(org_id, cursor, page_limit(limit))
    return page(items, limit, "productKey")


@get("/orgs/{org_id:str}/products/{product_key:str}")
async def get_product(request: Req, org_id: str, product_key: str) -> Product:
    return services(request).registry.product(org_id, product_key)


@patch("/orgs/{org_id:str}/products/{product_key:str}")
async def update_product(
    request: Req, org_id: str, product_key: str, data: ProductUpdate
) -> Product:
    return await services(request).registry.update_product(org_id, product_key, data)


@post("/orgs/{org_id:str}/products/{product_key:str}/reset-secret", status_code=200)
async def reset_product_secret(request: Req, org_id: str, product_key: str) -> Product:
    """A new random productSecret (shown in the answer); the old one stops working."""
    return await services(request).registry.reset_product_secret(org_id, product_key)


@delete("/orgs/{org_id:str}/products/{product_key:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_product(request: Req, org_id: str, product_key: str) -> None:
    await services(request).registry.delete_product(org_id, product_key)


# -- devices ---------------------------------------------------------------------------

_DEVICES = "/orgs/{org_id:str}/products/{product_key:str}/devices"


@post(_DEVICES)
async def create_devices(
    request: Req, org_id: str, product_key: str, data: DeviceCreate | list[DeviceCreate]
) -> Device | dict[str, list[Device]]:
    """Create one device (object body) or many at once (array body; all or nothing)."""
    bodies = data if isinstance(data, list) else [data]
    devices = await services(request).registry.create_devices(org_id, product_key, bodies)
    return {"items": devices} if isinstance(data, list) else devices[0]


@get(_DEVICES)
async def list_devices(
    request: Req, org_id: str, product_key: str, limit: int = Limit, cursor: str = Cursor
) -> dict[str, Any]:
    items = await services(request).registry.list_devices(
        org_id, product_key, cursor, page_limit(limit)
    )
    return page(items, limit, "deviceKey")


@get(_DEVICES + "/{device_key:str}")
async def get_device(request: Req, org_id: str, product_key: str, device_key: str) -> Device:
    return services(request).registry.device(org_id, product_key, device_key).device


@patch(_DEVICES + "/{device_key:str}")
async def update_device(
    request: Req, org_id: str, product_key: str, device_key: str, data: DeviceUpdate
) -> Device:
    return await services(request).registry.update_device(org_id, product_key, device_key, data)


@delete(_DEVICES + "/{device_key:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_device(request: Req, org_id: str, product_key: str, device_key: str) -> None:
    await services(request).registry.delete_device(org_id, product_key, device_key)


@get("/orgs/{org_id:str}/devices/{asset_id:str}")
async def get_device_by_asset(request: Req, org_id: str, asset_id: str) -> Device:
    return services(request).registry.device_by_asset(org_id, asset_id).device


registry_router = Router(
    path="/api/v1",
    guards=[admin_guard],
    tags=["admin"],
    route_handlers=[
        create_org,
        list_orgs,
        get_org,
        update_org,
        delete_org,
        create_model,
        list_models,
        get_model,
        update_model,
        delete_model,
        create_product,
        list_products,
        get_product,
        update_product,
        reset_product_secret,
        delete_product,
        create_devices,
        list_devices,
        get_device,
        update_device,
        delete_device,
        get_device_by_asset,
    ],
)
