"""``headrace serve --demo``: a demo organization, model, product and devices."""

from __future__ import annotations

from pathlib import Path

import msgspec

from .model.types import Channel, ThingModel
from .state.registry import ChannelCreate, DeviceCreate, OrgCreate, ProductCreate, Registry

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


async def seed_demo(reg: Registry) -> tuple[Channel, str]:
    """Create the demo data unless it exists; returns the demo channel and its new password."""
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
    # the demo channel's password is shown only when set, so it is reset at each --demo start
    channel = next(
        (c for c in reg.channels.values() if c.orgId == DEMO_ORG and c.name == "demo"), None
    )
    if channel is None:
        channel, password = await reg.create_channel(
            DEMO_ORG, ChannelCreate(name="demo", products=[DEMO_PRODUCT])
        )
    else:
        channel, password = await reg.reset_channel_password(DEMO_ORG, channel.channelId)
    return channel, password


def demo_summary(
    channel: Channel, password: str, data_dir: Path, hosts: dict[str, str], ports: dict[str, int]
) -> str:
    """What to try next, with the ports the hub bound."""
    topic = f"/sys/{DEMO_PRODUCT}/integration/measurepoint/post"
    body = (
        '{"id":"1","version":"1.0","method":"integration.measurepoint.post","params":'
        '[{"deviceKey":"inv001","time":1700000000000,"measurepoints":{"Power":{"value":5.5,"quality":9},"temp":41.2}}]}'
    )
    extra = (
        f"\n  MQTT channel {channel.channelId}: username {channel.username} password {password}\n"
        f"  try: mosquitto_pub -h {hosts['mqtt']} -p {ports.get('mqtt', 0)} -u '{channel.username}' -P '{password}' "
        f"-q 1 -t {topic} -m '{body}'"
    )
    base = f"http://{hosts['http']}:{ports['http']}"
    return (
        f"[bold]demo data ready[/bold]: organization {DEMO_ORG}, model inverter, product {DEMO_PRODUCT}, "
        f"devices inv001..inv003\n"
        f"  admin token: {data_dir / 'admin-token'}\n"
        f"  operator login: admin, password in {data_dir / 'admin-password'} (until changed)\n"
        f'  try: curl -H "Authorization: Bearer $(cat {data_dir / "admin-token"})" '
        f"{base}/api/v1/orgs/{DEMO_ORG}/products/{DEMO_PRODUCT}/devices\n"
        f"  API docs: {base}/api/docs" + extra
    )
