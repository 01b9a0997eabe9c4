"""``headrace enterprise create|list|stats|delete`` against a real hub."""

from __future__ import annotations

import json

from tests.conftest import ADMIN_TOKEN, HubProcess
from tests.e2e.noti_support import Noti, tenant
from tests.e2e.test_cli import cli


def test_enterprise_commands(hub: HubProcess) -> None:
    with hub.client() as api:
        t = tenant(api)
    common = ["--url", hub.url, "--token", ADMIN_TOKEN, "--org", t.org]
    r = cli(
        "enterprise", "create", "CLI app", "--product", t.pk, "--event-type", "device_online",
        "--event-type", "attr_fault", "--id", "ent-cli", "--secret", "s3cret-cli",
        "--allow-ip", "127.0.0.0/8", "--history-events", *common,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["enterpriseId"] == "ent-cli" and created["enterpriseSecret"] == "s3cret-cli"
    assert created["eventTypes"] == ["device_online", "attr_fault"]
    assert created["historyEvents"] is True and created["ipAllowList"] == ["127.0.0.0/8"]
    r = cli("enterprise", "create", "defaults", "--product", t.pk, *common)
    generated = json.loads(r.stdout)
    assert len(generated["eventTypes"]) == 6 and len(generated["enterpriseSecret"]) == 32
    n = Noti(hub)
    try:
        n.login("ent-cli", "s3cret-cli")
        r = cli("enterprise", "stats", "ent-cli", *common)
        assert r.returncode == 0 and json.loads(r.stdout)["connections"] == 1
    finally:
        n.close()
    listed = json.loads(cli("enterprise", "list", *common).stdout)["items"]
    assert {e["enterpriseId"] for e in listed} == {"ent-cli", generated["enterpriseId"]}
    assert cli("enterprise", "delete", "ent-cli", *common).returncode == 0
    bad = cli("enterprise", "delete", "ent-cli", *common)
    assert bad.returncode == 1 and "not found" in bad.stderr
    bad = cli("enterprise", "create", "x", "--product", "nope", *common)
    assert bad.returncode == 1 and "products[0]" in bad.stderr
