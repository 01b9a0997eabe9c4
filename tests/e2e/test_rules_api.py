"""The rules API and ``headrace rule ...``: documents, checks and their error codes, what
survives a restart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, HubProcess
from tests.e2e.rules_support import make_org
from tests.e2e.test_cli import cli

KAFKA = {"type": "kafka", "bootstrap": "127.0.0.1:9"}


def test_crud_checks_and_restart(hub: HubProcess, api: httpx.Client) -> None:
    org = make_org(hub, api)
    base = f"/api/v1/orgs/{org.id}/rules"
    r = api.post(base, json={"name": "all", "sink": KAFKA, "ruleId": "r1"})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["ruleId"] == "r1" and doc["enabled"] is True and doc["orgId"] == org.id
    assert doc["sink"] == {
        "type": "kafka",
        "bootstrap": "127.0.0.1:9",
        "topic": None,
        "key": "{assetId}",
        "format": "enos",
        "compression": "lz4",
        "acks": "all",
        "tls": False,
        "caFile": None,
        "sasl": None,
    }
    assert api.post(base, json={"name": "x", "sink": KAFKA, "ruleId": "r1"}).status_code == 409
    bad = [
        ({"name": "x", "sink": {**KAFKA, "bootstrap": "nohost"}}, "sink.bootstrap"),
        ({"name": "x", "sink": {**KAFKA, "format": "headrace"}}, "sink.topic"),
        ({"name": "x", "sink": {**KAFKA, "topic": "t-{nope}"}}, "sink.topic"),
        ({"name": "x", "sink": {**KAFKA, "key": "{assetId"}}, "sink.key"),
        ({"name": "x", "sink": KAFKA, "select": {"kinds": ["online"]}}, "select.kinds"),
        ({"name": "x", "sink": KAFKA, "select": {"kinds": ["weather"]}}, "select.kinds"),
        ({"name": "x", "sink": {"type": "webhook", "url": "ftp://x"}}, "sink.url"),
        ({"name": "", "sink": KAFKA}, "name"),
    ]
    for body, field in bad:
        r = api.post(base, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field, (body, r.text)
    r = api.post(base, json={"name": "x", "sink": {"type": "smtp"}})
    assert r.status_code in (400, 422)
    assert api.post("/api/v1/orgs/nope/rules", json={"name": "x", "sink": KAFKA}).status_code == 404

    r = api.patch(f"{base}/r1", json={"select": {"sources": ["realtime"]}, "name": "live"})
    assert r.status_code == 200, r.text
    assert r.json()["select"]["sources"] == ["realtime"] and r.json()["name"] == "live"
    assert api.post(f"{base}/r1/pause").json()["enabled"] is False
    st = api.get(f"{base}/r1/stats").json()
    assert st["running"] is False and st["matched"] == 0 and st["deadLetters"] == 0
    r = api.post(f"{base}/r1/replay", json={})
    assert r.status_code == 422
    assert api.get(f"/api/v1/orgs/{org.id}/rules").json()["items"][0]["ruleId"] == "r1"
    # an organization with rules cannot be deleted
    assert api.delete(f"/api/v1/orgs/{org.id}").status_code == 409

    hub.restart()
    r = api.get(f"{base}/r1")
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["select"]["sources"] == ["realtime"]
    assert api.delete(f"{base}/r1").status_code == 204
    assert api.get(f"{base}/r1").status_code == 404
    assert api.get(f"{base}/r1/stats").status_code == 404


def test_rule_commands(hub: HubProcess, tmp_path: Path) -> None:
    with hub.client() as api:
        org = make_org(hub, api)
    common = ["--url", hub.url, "--token", ADMIN_TOKEN, "--org", org.id]
    script = tmp_path / "t.js"
    script.write_text("function transform(r) { return r.assetId; }")
    r = cli(
        "rule", "create", "cli hook", "--webhook", "http://127.0.0.1:9/h", "--secret", "s",
        "--kind", "measurepoint", "--point", "temp", "--transform", str(script), *common,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    rid = made["ruleId"]
    assert made["sink"]["secret"] == "s" and made["select"]["points"] == ["temp"]
    assert "transform(r)" in made["transform"]
    r = cli("rule", "create", "k", "--kafka", "127.0.0.1:9", "--format", "enos-point", *common)
    assert r.returncode == 1 and "topic" in r.stderr
    assert json.loads(cli("rule", "pause", rid, *common).stdout)["enabled"] is False
    assert json.loads(cli("rule", "resume", rid, *common).stdout)["enabled"] is True
    stats = json.loads(cli("rule", "stats", rid, *common).stdout)
    assert stats["ruleId"] == rid
    listed = json.loads(cli("rule", "list", *common).stdout)["items"]
    assert [x["ruleId"] for x in listed] == [rid]
    assert json.loads(cli("rule", "dead-letters", rid, *common).stdout)["items"] == []
    assert cli("rule", "delete", rid, *common).returncode == 0
    assert cli("rule", "get", rid, *common).returncode == 1
