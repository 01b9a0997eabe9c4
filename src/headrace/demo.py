"""``headrace serve --demo``: a demo organization, model, product and devices."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from .model.types import ThingModel
from .registry import DeviceCreate, OrgCreate, ProductCreate

if TYPE_CHECKING:
    from .app import Hub

DEMO_ORG = "o-demo"
DEMO_PRODUCT = "demoInverter"
DEMO_MODEL = {
    "id": "inverter",
    "name": "Inverter",
    "attributes": [{"id": "mac", "type": "string"}, {"id": "capacity", "type": "double"}],
    "measurepoints": [
        {"id": "Power", "type": "float", "withQuality": True},
        {"id": "temp", "type": "double"},
        {"id": "branchCurr", "type": "array", "items": "string"},
        {"id": "fan_fault", "type": "bool", "flag": "fault", "name": "Fan fault"},
    ],
    "events": [{"id": "overheat", "outputs": [{"id": "level", "type": "int"}]}],
}


async def seed_demo(hub: Hub) -> str:
    """Create the demo data unless it exists; return what to try next."""
    reg = hub.registry
    if DEMO_ORG not in reg.orgs:
        await reg.create_org(OrgCreate(orgId=DEMO_ORG, name="Demo organization"))
    if (DEMO_ORG, "inverter") not in reg.models:
        await reg.create_model(DEMO_ORG, msgspec.convert(DEMO_MODEL, ThingModel))
    if DEMO_PRODUCT not in reg.products:
        await reg.create_product(
            DEMO_ORG,
            ProductCreate(name="Demo inverter", modelId="inverter", productKey=DEMO_PRODUCT),
        )
    missing = [k for k in ("inv001", "inv002", "inv003") if (DEMO_PRODUCT, k) not in reg.devices]
    if missing:
        await reg.create_devices(
            DEMO_ORG, DEMO_PRODUCT, [DeviceCreate(deviceKey=k, name=k) for k in missing]
        )
    extra = ""
    seed_channel = getattr(hub, "seed_demo_channel", None)
    if seed_channel is not None:
        extra = await seed_channel(DEMO_ORG, DEMO_PRODUCT)
    s = hub.settings
    base = f"http://{s['http.host']}:{s['http.port']}"
    return (
        f"[bold]demo data ready[/bold]: organization {DEMO_ORG}, model inverter, product {DEMO_PRODUCT}, "
        f"devices inv001..inv003\n"
        f"  admin token: {hub.data_dir / 'admin-token'}\n"
        f'  try: curl -H "Authorization: Bearer $(cat {hub.data_dir / "admin-token"})" '
        f"{base}/api/v1/orgs/{DEMO_ORG}/products/{DEMO_PRODUCT}/devices\n"
        f"  API docs: {base}/api/docs" + extra
    )
