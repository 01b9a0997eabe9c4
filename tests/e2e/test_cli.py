"""The headrace command as an operator uses it: settings, registry commands, clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ADMIN_TOKEN, HubProcess


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_settings_lists_everything(tmp_path: Path) -> None:
    r = cli("settings", "--set", "http.port=9999", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "http.port" in r.stdout and "9999" in r.stdout and "--set" in r.stdout
    assert "HEADRACE_MQTT_TLS_PORT" in r.stdout
    bad = cli("settings", "--set", "nope=1", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown setting 'nope'" in bad.stderr


def test_registry_commands(hub: HubProcess, tmp_path: Path) -> None:
    common = ["--url", hub.url, "--token", ADMIN_TOKEN]
    r = cli("org", "create", "CLI org", "--id", "o-cli", *common)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["orgId"] == "o-cli"
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"id": "m1", "measurepoints": [{"id": "t", "type": "double"}]}))
    assert cli("model", "import", str(model), "--org", "o-cli", *common).returncode == 0
    r = cli("product", "create", "P", "--org", "o-cli", "--model", "m1", "--key", "cliPK", *common)
    assert json.loads(r.stdout)["productKey"] == "cliPK"
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps([{"deviceKey": "a"}, {"deviceKey": "b"}]))
    r = cli(
        "device",
        "create",
        "c",
        "--file",
        str(devices),
        "--org",
        "o-cli",
        "--product",
        "cliPK",
        *common,
    )
    assert r.returncode == 0, r.stderr
    listed = json.loads(
        cli("device", "list", "--org", "o-cli", "--product", "cliPK", *common).stdout
    )
    assert [d["deviceKey"] for d in listed["items"]] == ["a", "b", "c"]
    # errors are clear and exit non-zero
    dup = cli("device", "create", "a", "--org", "o-cli", "--product", "cliPK", *common)
    assert dup.returncode == 1 and "409" in dup.stderr and "already exists" in dup.stderr
    bad_model = tmp_path / "bad.json"
    bad_model.write_text(json.dumps({"id": "m2", "measurepoints": [{"id": "t", "type": "flot"}]}))
    r = cli("model", "import", str(bad_model), "--org", "o-cli", *common)
    assert r.returncode == 1 and "measurepoints[0].type" in r.stderr
    down = cli("org", "list", "--url", "http://127.0.0.1:1", "--token", "x")
    assert down.returncode == 1 and "cannot reach" in down.stderr


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    h = HubProcess(tmp_path / "data")
    h.start()
    with h.client() as api:
        assert api.post("/api/v1/orgs", json={"name": "x", "orgId": "o-stop"}).status_code == 201
    assert h.stop() == 0
    assert "stopping" in h.log()
    h.start()
    with h.client() as api:
        assert api.get("/api/v1/orgs/o-stop").status_code == 200
    h.stop()


def test_first_start_creates_admin_token(tmp_path: Path) -> None:
    h = HubProcess(tmp_path / "data")
    h.extra = ["--set", "admin.token="]
    h.start()
    token = (tmp_path / "data" / "admin-token").read_text().strip()
    assert len(token) >= 32
    assert (tmp_path / "data" / "admin-token").stat().st_mode & 0o777 == 0o600
    import httpx

    assert (
        httpx.get(h.url + "/api/v1/orgs", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert "admin-token" in h.log()
    h.stop()
