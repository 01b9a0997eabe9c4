"""The web console in real Chromium against a real hub (docs/console.md).

An operator's journey through the pages (everything created in the browser), history
published with mosquitto_pub seen in the channel's log and the device's chart, a bad
payload found in the log by its code, files uploaded over the HTTP integration and
previewed, downloaded and deleted on the device page, a script edited and debugged, an
org viewer who can change nothing and see no other org, a phone-sized screen and the
keyboard, and every page without a console error.

The rule pages: a webhook rule made in the browser (a refused URL shown at its field
first) sends to an HTTP server in this process; data posted over the HTTP integration
moves the counters, a transform that throws dead-letters its record, pause holds delivery
and resume sends what waited, a replay sends again, an edit is checked at its field; an
org viewer sees the rules and their figures but no control.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, has_accounts, new_console
from tests.conftest import HubProcess, free_port
from tests.e2e.client_support import wait_for
from tests.e2e.http_support import MP, get_token, message
from tests.e2e.mqtt_support import Client
from tests.e2e.rules_support import make_org, realtime
from tests.e2e.test_rules_webhook import Receiver

# a 1x1 PNG
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
NOTES = b"inspection notes\nline 2: all good\n"


def pub(hub: HubProcess, user: str, password: str, topic: str, payload: str) -> None:
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-u",
            user,
            "-P",
            password,
            "-i",
            "console-" + uuid.uuid4().hex[:6],
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ],
        check=True,
        timeout=60,
    )


def secret(c: Console, name: str) -> str:
    """A value of the shown-once box by its name."""
    return c.page.locator(f".alert.secret dt:text-is('{name}') + dd code").first.inner_text()


def new_user(admin: httpx.Client, prefix: str, password: str, org: str | None = None) -> str:
    """A user made through the admin API: an org viewer of ``org``, else a platform
    admin; its name."""
    name = prefix + uuid.uuid4().hex[:6]
    role = {"role": "org-viewer", "orgId": org} if org else {"role": "platform-admin"}
    r = admin.post("/api/v1/users", json={"username": name, "password": password, "roles": [role]})
    assert r.status_code in (200, 201), r.text
    return name


def login_operator(c: Console, admin: httpx.Client) -> None:
    """As a platform admin: a user with a session when the hub has accounts, else the
    admin token."""
    if has_accounts(c.hub):
        c.login(new_user(admin, "op", "correct horse 42"), "correct horse 42")
    else:
        c.login_token()


def test_operator_journey(console: Console, admin: httpx.Client) -> None:
    c, page, hub = console, console.page, console.hub
    c.open("/login")
    expect(page.get_by_role("heading", name="Log in to headrace")).to_be_visible()
    c.shot("login")
    login_operator(c, admin)

    # -- organization ----------------------------------------------------------------------
    org_name = "Plant " + uuid.uuid4().hex[:4]
    page.get_by_label("Name", exact=True).fill(org_name)
    page.get_by_role("button", name="Create organization").click()
    expect(page.get_by_role("heading", name=org_name, level=1)).to_be_visible()
    org = page.url.rsplit("/", 1)[1]
    assert org.startswith("o"), page.url

    # -- a thing model, with a validation error shown at its field first -----------------------
    page.get_by_role("link", name="Create a model").click()
    page.get_by_label("Model id").fill("meter")
    rows = page.locator("table.measurepoints tr.spec-row")
    page.get_by_role("button", name="Add measurepoint").click()
    rows.nth(1).get_by_label("Id", exact=True).fill("mode")
    rows.nth(1).get_by_label("Type").select_option("enum")  # no enum map: refused
    page.get_by_role("button", name="Add measurepoint").click()
    rows.nth(2).get_by_label("Id", exact=True).fill("snapshot")
    rows.nth(2).get_by_label("Type").select_option("file")
    c.watch.expect(422, f"/orgs/{org}/models")  # the refused model
    page.get_by_role("button", name="Create model").click()
    more = rows.nth(1).locator("textarea[name=more]")
    expect(more).to_have_attribute("aria-invalid", "true")
    expect(rows.nth(1).locator(".field-error:not(:empty)")).to_contain_text("enum")
    c.shot("model-error")
    more.fill(json.dumps({"enum": {"0": "off", "1": "on"}}))
    page.get_by_role("button", name="Create model").click()
    expect(page.get_by_role("heading", name="Model meter")).to_be_visible()
    got = admin.get(f"/api/v1/orgs/{org}/models/meter").json()
    assert [m["id"] for m in got["measurepoints"]] == ["temp", "mode", "snapshot"]
    assert got["measurepoints"][1]["enum"] == {"0": "off", "1": "on"}

    # -- a product: its key and secret shown once --------------------------------------------
    c.route(f"/orgs/{org}/products")
    page.get_by_label("Name", exact=True).fill("Meter")
    page.get_by_role("button", name="Create product").click()
    expect(page.locator(".alert.secret")).to_contain_text("Product Meter created")
    pk = secret(c, "productKey")
    assert admin.get(f"/api/v1/orgs/{org}/products/{pk}").json()["productSecret"] == secret(
        c, "productSecret"
    )

    old_secret = secret(c, "productSecret")
    # its secret reset on its page: a new one, shown once
    c.route(f"/orgs/{org}/products/{pk}")
    page.get_by_role("button", name="Reset secret").click()
    page.get_by_role("dialog").get_by_role("button", name="Reset secret").click()
    expect(page.locator(".alert.secret")).to_contain_text("New product secret")
    new_secret = secret(c, "productSecret")
    assert new_secret != old_secret
    assert admin.get(f"/api/v1/orgs/{org}/products/{pk}").json()["productSecret"] == new_secret

    # -- devices: one by hand, two from a file (a refused file imports nothing) ------------
    c.route(f"/orgs/{org}/devices?product={pk}")
    page.get_by_label("Device key").fill("m1")
    page.get_by_role("button", name="Create device").click()
    expect(page.get_by_role("link", name="m1", exact=True)).to_be_visible()
    file_input = page.get_by_label("CSV or JSON file")
    file_input.set_input_files(
        files=[
            {
                "name": "bad.json",
                "mimeType": "application/json",
                "buffer": b'[{"deviceKey": "m9"}, {"deviceKey": "m1"}]',
            }
        ]
    )
    c.watch.expect(409, f"/products/{pk}/devices")  # the refused file (a duplicate key)
    page.get_by_role("button", name="Import devices").click()
    expect(page.locator(".field-error").filter(has_text="already exists")).to_contain_text(
        "device 2 of the file (m1)"
    )
    file_input.set_input_files(
        files=[
            {
                "name": "devices.csv",
                "mimeType": "text/csv",
                "buffer": b"deviceKey,name,group\nm2,Second,east\nm3,Third,west\n",
            }
        ]
    )
    page.get_by_role("button", name="Import devices").click()
    expect(page.locator("main .alert.ok")).to_contain_text("2 devices imported")
    keys = [
        d["deviceKey"]
        for d in admin.get(f"/api/v1/orgs/{org}/products/{pk}/devices").json()["items"]
    ]
    assert sorted(keys) == ["m1", "m2", "m3"]  # m9 of the refused file is not there
    page.get_by_label("Search").fill("west")
    expect(page.get_by_text("1 of 3 devices match")).to_be_visible()
    c.shot("devices")

    # -- a channel: its connection details ----------------------------------------------------
    c.route(f"/orgs/{org}/channels")
    page.get_by_label("Name", exact=True).fill("history import")
    page.locator("select[name=products]").select_option(pk)
    page.get_by_role("button", name="Create channel").click()
    expect(page.locator(".alert.secret")).to_contain_text("Channel history import created")
    user, password = secret(c, "username"), secret(c, "password")
    assert f"tcp://127.0.0.1:{hub.mqtt_port}" in page.locator(".alert.secret").inner_text()
    page.get_by_role("link", name="Open the channel and its message log").click()
    details = page.locator("section", has=page.get_by_role("heading", name="Connection details"))
    expect(details).to_contain_text(f"tcp://127.0.0.1:{hub.mqtt_port}")
    expect(details).to_contain_text(f"ssl://127.0.0.1:{hub.mqtt_tls_port}")
    expect(details).to_contain_text(user)

    # -- history over MQTT, seen live in the log -------------------------------------------
    page.get_by_role("button", name="Live tail").click()
    expect(page.locator(".live-info")).to_contain_text("live")
    t0 = int(time.time() * 1000) - 3_600_000
    items = [
        {
            "deviceKey": "m1",
            "time": t0 + i * 60_000,
            "measurepoints": {"temp": 20 + i % 7, "mode": i % 2},
        }
        for i in range(60)
    ]
    topic = f"/sys/{pk}/integration/measurepoint/post"
    request = {
        "id": "h1",
        "version": "1.0",
        "method": "integration.measurepoint.post",
        "params": items,
    }
    pub(hub, user, password, topic, json.dumps(request))
    log = page.locator("table.log-table tbody")
    expect(log.locator("tr.log-row.payload").filter(has_text="60 items")).to_contain_text(
        "code 200"
    )
    expect(log.locator("tr.log-row.connection").first).to_be_visible()
    # it came over the hub's event stream, not the polling fallback of a hub without one
    assert "every 2 s" not in page.locator(".log-status").inner_text()

    # -- a bad payload, found by its code ---------------------------------------------------
    bad = {
        **request,
        "id": "bad1",
        "params": [{"deviceKey": "m1", "time": t0, "measurepoints": {"temp": "hot"}}],
    }
    pub(hub, user, password, topic, json.dumps(bad))
    expect(log.locator("tr.log-row.error").filter(has_text="1204").first).to_be_visible()
    page.get_by_role("button", name="Stop live tail").click()
    page.get_by_label("Error code").fill("1204")
    # the hub filters by code (and device): the page asks for them and shows what came
    with page.expect_response(lambda r: "/logs?" in r.url and "code=1204" in r.url) as got:
        page.get_by_role("button", name="Apply filters").click()
    found = got.value.json()["items"]
    assert [r["kind"] for r in found] == ["error", "payload"], found
    errors = log.locator("tr.log-row")
    expect(errors).to_have_count(2)
    for text in errors.all_inner_texts():
        assert "1204" in text, text
    errors.first.get_by_role("button").click()
    detail = log.locator("tr.log-detail pre")
    expect(detail).to_contain_text('"requestId": "bad1"')
    expect(detail).to_contain_text("measurepoints.temp")
    errors.first.get_by_role("button").click()  # closed again
    # the payload record expands to the bytes mosquitto_pub sent
    errors.nth(1).get_by_role("button").click()
    received = log.locator("tr.log-detail pre.payload")
    expect(received).to_have_text(json.dumps(bad))
    expect(log.locator("tr.log-detail")).to_contain_text("Received payload (text,")
    c.shot("channel")
    # by device: the error names its item's device
    page.get_by_label("Device key").fill("m2")
    with page.expect_response(lambda r: "/logs?" in r.url and "device=m2" in r.url) as got:
        page.get_by_role("button", name="Apply filters").click()
    assert got.value.json()["items"] == []
    expect(page.locator(".log-status")).to_have_text("No records match the filters.")
    page.get_by_label("Device key").fill("m1")
    page.get_by_role("button", name="Apply filters").click()
    expect(errors.first).to_contain_text("code 1204")
    expect(errors).to_have_count(1)  # the error names m1; the payload record no device
    # by time: nothing before the records were written
    page.get_by_label("Device key").fill("")
    page.get_by_label("Error code").fill("")
    page.get_by_label("Until").fill("2020-01-01T00:00")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".log-status")).to_have_text("No records match the filters.")
    page.get_by_label("Until").fill("")
    page.get_by_role("checkbox", name="payload").uncheck()
    page.get_by_role("checkbox", name="connection").uncheck()
    page.get_by_role("button", name="Apply filters").click()
    expect(errors.first).to_contain_text("1204")
    assert all("error" in t for t in errors.all_inner_texts())

    # -- the device: latest values and the chart of the history ---------------------------------
    c.route(f"/orgs/{org}/products/{pk}/devices/m1")
    latest = page.locator("section", has=page.get_by_role("heading", name="Latest values"))
    expect(latest).to_contain_text("temp")
    chart = page.locator(".chart")
    expect(chart).to_have_attribute("data-mode", "raw")
    expect(chart).to_have_attribute("data-samples", "120")  # 60 of temp, 60 of mode
    expect(chart.locator("canvas")).to_be_visible()
    c.shot("device", top=page.get_by_role("heading", name="Latest values"))
    page.get_by_role("button", name="Table view").click()
    expect(page.locator(".chart-table")).to_contain_text("60 rows")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV").click()
    lines = Path(dl.value.path()).read_text().strip().splitlines()
    assert lines[0] == "time,iso,temp,mode" and len(lines) == 61, lines[:3]
    assert lines[1].split(",")[0] == str(t0) and lines[1].split(",")[2:] == ["20", "0"]
    page.locator("#chart-mode").select_option("agg")
    expect(chart).to_have_attribute("data-mode", "agg")
    page.get_by_role("button", name="Zoom in").click()
    expect(page.locator(".chart-info")).to_contain_text("buckets")

    # -- files: a service account made here uploads over the HTTP integration ----------------
    c.route(f"/orgs/{org}/service-accounts")
    page.get_by_label("Name", exact=True).fill("SCADA")
    page.get_by_role("button", name="Create service account").click()
    expect(page.locator(".alert.secret")).to_contain_text("Service account SCADA created")
    token = get_token(hub.url, secret(c, "appKey"), secret(c, "appSecret"))
    for name, data, point in [("notes.txt", NOTES, "snapshot"), ("pixel.png", PIXEL, "snapshot")]:
        body = message(
            MP, [{"productKey": pk, "deviceKey": "m1", "measurepoints": {point: f"local://{name}"}}]
        )
        r = httpx.post(
            hub.url + "/connect-service/v2.1/integration",
            params={"action": "postMeasurepoint", "orgId": org},
            files=[
                ("enos-message", (None, json.dumps(body).encode(), "application/json")),
                ("enos-file", (name, data, "application/octet-stream")),
            ],
            headers={"apim-accesstoken": token},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["code"] == 0, r.text
    c.route(f"/orgs/{org}/products/{pk}/devices/m1")
    files = page.locator("section", has=page.get_by_role("heading", name="Files"))
    notes = files.locator("tr[data-file='notes.txt']")
    notes.get_by_role("button", name="Preview").click()
    expect(notes.locator("pre.preview")).to_have_text(NOTES.decode())
    pixel = files.locator("tr[data-file='pixel.png']")
    pixel.get_by_role("button", name="Preview").click()
    img = pixel.locator("img.preview")
    expect(img).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 1", arg=img.element_handle()
    )
    c.shot("device-files", top=files)
    with page.expect_download() as dl:
        notes.get_by_text("Download", exact=True).click()
    assert dl.value.suggested_filename == "notes.txt"
    assert Path(dl.value.path()).read_bytes() == NOTES
    notes.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(files.locator("tr[data-file='notes.txt']")).to_have_count(0)
    expect(pixel).to_be_visible()
    listed = admin.get(f"/api/v1/orgs/{org}/products/{pk}/devices/m1/files").json()["items"]
    assert [f["originalFilename"] for f in listed] == ["pixel.png"]


BROKEN = "function rawDataToJsonStr(rawData) {\n  return JSON.stringify({;\n}\n"
GOOD = """function rawDataToJsonStr(rawData) {
  var b = rawData.map(function (x) { return x & 0xff; });
  return JSON.stringify({id: "1", version: "1.0", method: "integration.measurepoint.post",
    params: [{deviceKey: "s1", time: 1700000000000, measurepoints: {a: b[0] * 256 + b[1]}}]});
}
"""
THROWS = """function rawDataToJsonStr(rawData) {
  var n = rawData.length;
  throw new Error("bad frame of " + n + " bytes");
}
"""


def script_org(admin: httpx.Client) -> tuple[str, str]:
    org = admin.post("/api/v1/orgs", json={"name": "scripts " + uuid.uuid4().hex[:4]}).json()[
        "orgId"
    ]
    admin.post(
        f"/api/v1/orgs/{org}/models",
        json={"id": "raw", "measurepoints": [{"id": "a", "type": "int"}]},
    ).raise_for_status()
    p = admin.post(
        f"/api/v1/orgs/{org}/products",
        json={"name": "Raw", "modelId": "raw", "dataFormat": "custom"},
    ).json()
    admin.post(f"/api/v1/orgs/{org}/products/{p['productKey']}/devices", json={"deviceKey": "s1"})
    return org, p["productKey"]


def test_script_edit_and_debug(console: Console, admin: httpx.Client) -> None:
    c, page = console, console.page
    org, pk = script_org(admin)
    login_operator(c, admin)
    c.watch.expect(404, f"/products/{pk}/script")  # no script yet
    c.watch.expect(422, f"/products/{pk}/script")  # the broken one, refused
    c.route(f"/orgs/{org}/products/{pk}/script")
    expect(page.get_by_role("heading", name="No script yet")).to_be_visible()
    source = page.get_by_label("Script source")
    # a syntax error: refused with its line and column, shown at the line
    source.fill(BROKEN)
    page.get_by_role("button", name="Save script").click()
    expect(page.locator(".alert.error").first).to_contain_text("Line 2")
    expect(page.locator(".gutter .err")).to_have_text("2")
    assert admin.get(f"/api/v1/orgs/{org}/products/{pk}/script").status_code == 404
    # the highlighter colours keywords and strings
    expect(page.locator(".code-layer .tok-keyword").first).to_have_text("function")
    source.fill(GOOD)
    page.get_by_role("button", name="Save script").click()
    expect(page.get_by_role("heading", name="Current script: version 1")).to_be_visible()
    page.get_by_label("Script source").fill(
        GOOD.replace("b[0] * 256 + b[1]", "b[0] * 256 + b[1] + 1")
    )
    page.get_by_role("button", name="Save as new version").click()
    expect(page.get_by_role("heading", name="Current script: version 2")).to_be_visible()
    diff = page.locator("pre.diff")
    expect(diff.locator(".d-add")).to_contain_text("b[1] + 1")
    expect(diff.locator(".d-del")).to_contain_text("b[0] * 256 + b[1]}}")
    # debug run on hex: the output, the hub's answer, the duration
    page.get_by_label("Sample bytes").fill("01 17")
    page.get_by_role("button", name="Run on the editor's script").click()
    out = page.locator(".debug-out")
    expect(out.locator(".badge.ok")).to_have_text("ok")
    expect(out).to_contain_text('"a": 280')  # 0x0117 + 1
    expect(out).to_contain_text(" ms")
    c.shot("script", top=page.get_by_role("heading", name="Debug run"))
    # base64, and a script that throws: the error with its line
    page.get_by_label("Script source").fill(THROWS)
    page.get_by_label("Sample format").select_option("base64")
    page.get_by_label("Sample bytes").fill(base64.b64encode(b"\x01\x02\x03").decode())
    page.get_by_role("button", name="Run on the editor's script").click()
    expect(out.locator(".badge.err")).to_have_text("failed")
    expect(out).to_contain_text("bad frame of 3 bytes")
    expect(out).to_contain_text("Line 3")
    # rollback to version 1
    page.get_by_role("button", name="Roll back to 1").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("heading", name="Current script: version 1")).to_be_visible()
    assert admin.get(f"/api/v1/orgs/{org}/products/{pk}/script").json()["version"] == 1

    # binary data through the script: the channel's log expands to its bytes in hex
    ch = admin.post(f"/api/v1/orgs/{org}/channels", json={"name": "raw", "products": [pk]}).json()
    client = Client(c.hub, ch["username"], ch["password"])
    try:
        client.subscribe(f"/sys/{pk}/integration/#")
        client.publish(f"/sys/{pk}/integration/model/up_raw", bytes([1, 2, 0xFE, 0xFF, 0x41]))
        client.reply()
    finally:
        client.close()
    c.route(f"/orgs/{org}/channels/{ch['channelId']}")
    row = page.locator("tr.log-row.payload").first
    expect(row).to_contain_text("code 200")
    row.get_by_role("button").click()
    expect(page.locator("tr.log-detail")).to_contain_text("Received payload (binary, hex, 5 bytes)")
    expect(page.locator("tr.log-detail pre.payload")).to_have_text(
        "0000  01 02 fe ff 41" + " " * 34 + "  ....A"
    )
    c.shot("channel-payload", page.locator(".message-log"))


def populated_org(admin: httpx.Client) -> dict[str, str]:
    org = admin.post("/api/v1/orgs", json={"name": "viewer " + uuid.uuid4().hex[:4]}).json()[
        "orgId"
    ]
    admin.post(
        f"/api/v1/orgs/{org}/models",
        json={"id": "m", "measurepoints": [{"id": "temp", "type": "double"}]},
    ).raise_for_status()
    pk = admin.post(f"/api/v1/orgs/{org}/products", json={"name": "P", "modelId": "m"}).json()[
        "productKey"
    ]
    admin.post(
        f"/api/v1/orgs/{org}/products/{pk}/devices", json={"deviceKey": "d1"}
    ).raise_for_status()
    ch = admin.post(f"/api/v1/orgs/{org}/channels", json={"name": "c", "products": [pk]}).json()
    ent = admin.post(
        f"/api/v1/orgs/{org}/enterprises",
        json={"name": "e", "products": [pk], "eventTypes": ["device_online"]},
    ).json()
    admin.post(f"/api/v1/orgs/{org}/service-accounts", json={"name": "sa"}).raise_for_status()
    admin.put(f"/api/v1/orgs/{org}/products/{pk}/script", content=GOOD.encode()).raise_for_status()
    sink = {"type": "kafka", "bootstrap": f"127.0.0.1:{free_port()}", "topic": "t"}  # down
    rule = admin.post(f"/api/v1/orgs/{org}/rules", json={"name": "r", "sink": sink}).json()
    return {
        "org": org,
        "pk": pk,
        "ch": ch["channelId"],
        "ent": ent["enterpriseId"],
        "rule": rule["ruleId"],
    }


def test_org_viewer_changes_nothing_and_sees_no_other_org(
    console: Console, admin: httpx.Client
) -> None:
    if not has_accounts(console.hub):
        pytest.fail("this hub has no operator accounts (the session API answers 404)")
    c, page = console, console.page
    mine, other = populated_org(admin), populated_org(admin)
    org, pk = mine["org"], mine["pk"]
    c.login(new_user(admin, "viewer", "viewer pass 42", org), "viewer pass 42")
    # only its organization, and nothing to create
    expect(
        page.get_by_role("link", name=admin.get(f"/api/v1/orgs/{org}").json()["name"])
    ).to_be_visible()
    expect(page.get_by_text(other["org"])).to_have_count(0)
    expect(page.get_by_role("button", name="Create organization")).to_have_count(0)
    c.route(f"/orgs/{org}/models")
    expect(page.get_by_role("heading", name="Thing models")).to_be_visible()
    expect(page.get_by_role("link", name="New model")).to_have_count(0)
    c.route(f"/orgs/{org}/models/m")
    expect(page.get_by_text("Read only")).to_be_visible()
    expect(page.get_by_role("button", name="Save model")).to_have_count(0)
    expect(page.locator("table.measurepoints input[name=id]").first).to_be_disabled()
    for route, absent in [
        (f"/orgs/{org}/products", "Create product"),
        (f"/orgs/{org}/devices", "Create device"),
        (f"/orgs/{org}/channels", "Create channel"),
        (f"/orgs/{org}/channels/{mine['ch']}", "Reset password"),
        (f"/orgs/{org}/enterprises/{mine['ent']}", "Reset secret"),
        (f"/orgs/{org}/service-accounts", "Create service account"),
        (f"/orgs/{org}/products/{pk}/script", "Save as new version"),
        (f"/orgs/{org}/rules/{mine['rule']}", "Pause"),
    ]:
        c.route(route)
        expect(page.locator("main h1")).to_be_visible()
        expect(page.get_by_role("button", name=absent)).to_have_count(0)
    # the channel's details and log are readable
    c.route(f"/orgs/{org}/channels/{mine['ch']}")
    expect(page.get_by_text("Connection details")).to_be_visible()
    # another organization does not exist for this user
    c.watch.expect(404, f"/orgs/{other['org']}")
    c.route(f"/orgs/{other['org']}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    c.route(f"/orgs/{other['org']}/rules/{other['rule']}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    c.route(f"/orgs/{other['org']}/rules")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    # and the API refuses a write even when the page is bypassed (with the CSRF token)
    c.watch.expect(403, f"/orgs/{org}/models")
    status = page.evaluate(
        """async (org) => {
            const s = await (await fetch('/api/v1/session')).json();
            const r = await fetch(`/api/v1/orgs/${org}/models`, {method: 'POST',
                headers: {'content-type': 'application/json', 'x-csrf-token': s.csrfToken},
                body: JSON.stringify({id: 'x'})});
            return r.status;
        }""",
        org,
    )
    assert status == 403
    assert admin.get(f"/api/v1/orgs/{org}/models/x").status_code == 404


def test_every_page_without_console_errors(console: Console, admin: httpx.Client) -> None:
    c, page = console, console.page
    o = populated_org(admin)
    org, pk = o["org"], o["pk"]
    login_operator(c, admin)
    routes = [
        "/orgs",
        f"/orgs/{org}",
        f"/orgs/{org}/models",
        f"/orgs/{org}/models/m",
        f"/orgs/{org}/models/new",
        f"/orgs/{org}/products",
        f"/orgs/{org}/products/{pk}",
        f"/orgs/{org}/products/{pk}/script",
        f"/orgs/{org}/devices",
        f"/orgs/{org}/products/{pk}/devices/d1",
        f"/orgs/{org}/channels",
        f"/orgs/{org}/channels/{o['ch']}",
        f"/orgs/{org}/enterprises",
        f"/orgs/{org}/enterprises/{o['ent']}",
        f"/orgs/{org}/service-accounts",
        f"/orgs/{org}/rules",
        f"/orgs/{org}/rules/new",
        f"/orgs/{org}/rules/{o['rule']}",
    ]
    if has_accounts(c.hub):
        routes += ["/users", "/audit"]
    for route in routes:
        c.route(route)
        h1 = page.locator("main h1")
        expect(h1).to_be_visible()
        assert h1.inner_text() not in ("Not found", "Something went wrong"), route
        page.wait_for_load_state("networkidle")
        assert not page.locator("main .alert.error").count(), (
            route,
            page.locator("main").inner_text()[:500],
        )
        if route.endswith("/orgs"):
            c.shot("organizations")
        if route.endswith(f"/enterprises/{o['ent']}"):
            expect(page.locator(".figure-label").first).to_be_visible()
            c.shot("enterprise")
        if route == "/audit":
            c.shot("audit")


def test_phone_width_and_keyboard(
    browser: Any, console_hub: HubProcess, shots: Any, admin: httpx.Client
) -> None:
    c = new_console(
        browser,
        console_hub,
        shots,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    page = c.page
    try:
        o = populated_org(admin)
        c.open("/login")
        # the skip link is the first stop of the keyboard, and it shows when focused
        first = page.evaluate(
            "() => document.querySelector('a[href], button:not([hidden]), input, select, textarea').textContent"
        )
        assert first == "Skip to content"
        page.get_by_role("link", name="Skip to content").focus()
        assert page.evaluate("() => document.activeElement.getBoundingClientRect().left") >= 0
        # log in with the keyboard only: the first field has the focus
        if has_accounts(console_hub):
            name = new_user(admin, "kb", "keyboard pass 42")
            page.get_by_label("Username").focus()
            page.keyboard.type(name)
            page.keyboard.press("Tab")
            page.keyboard.type("keyboard pass 42")
            page.keyboard.press("Enter")
        else:
            page.get_by_text("Log in with the admin token instead").focus()
            page.keyboard.press("Enter")
            page.keyboard.press("Tab")
            page.keyboard.type("test-admin-token")
            page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Organizations", level=1)).to_be_visible()
        # the focused control is outlined
        page.get_by_role("button", name="Log out").focus()
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline
        # navigation folds behind the menu button; tables become one card per row
        nav = page.locator("#nav")
        expect(nav).to_be_hidden()
        menu = page.get_by_role("button", name="Menu")
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(nav.get_by_role("link", name="Organizations")).to_be_visible()
        nav.get_by_role("link", name="Organizations").click()
        expect(nav).to_be_hidden()
        c.route(f"/orgs/{o['org']}/channels/{o['ch']}")
        expect(page.get_by_text("Connection details")).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        thead = page.locator("table.log-table thead")
        assert thead.evaluate("e => getComputedStyle(e).display") == "none"
        c.shot("phone-channel")
        c.route(f"/orgs/{o['org']}/products/{o['pk']}/devices/d1")
        expect(page.locator(".chart")).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        for route in (f"/orgs/{o['org']}/rules", f"/orgs/{o['org']}/rules/{o['rule']}"):
            c.route(route)
            expect(page.locator(".figure, tr[data-rule]").first).to_be_visible()
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, route
        c.watch.check()
    finally:
        page.context.close()


def test_own_password_logout_and_login_again(console: Console, admin: httpx.Client) -> None:
    c, page = console, console.page
    if not has_accounts(c.hub):
        pytest.fail("this hub has no operator accounts (the session API answers 404)")
    name = new_user(admin, "pw", "first pass 42")
    c.login(name, "first pass 42")
    page.get_by_role("button", name="Password").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Current password").fill("first pass 42")
    dialog.get_by_label("New password").fill("second pass 42")
    dialog.get_by_role("button", name="Change password").click()
    expect(dialog).to_have_count(0)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to headrace")).to_be_visible()
    # the old password is refused, with the reason shown
    c.watch.expect(401, "/api/v1/session")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("first pass 42")
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="Wrong username or password")).to_be_visible()
    c.login(name, "second pass 42")
    expect(page.get_by_role("heading", name="Organizations", level=1)).to_be_visible()


def test_users_enterprise_channel_controls_and_audit(console: Console, admin: httpx.Client) -> None:
    c, page = console, console.page
    if not has_accounts(c.hub):
        pytest.fail("this hub has no operator accounts (the session API answers 404)")
    o = populated_org(admin)
    org, pk = o["org"], o["pk"]
    login_operator(c, admin)
    # a user with a generated password and a role in one organization
    c.route("/users")
    alice = "alice" + uuid.uuid4().hex[:4]
    page.get_by_label("Username").fill(alice)
    page.get_by_label("Roles").fill(f"org-viewer:{org}")
    page.get_by_role("button", name="Create user").click()
    expect(page.locator(".alert.secret")).to_contain_text(f"User {alice} created")
    generated = secret(c, "password")
    assert len(generated) >= 12
    assert admin.get(f"/api/v1/users/{alice}").json()["roles"] == [
        {"role": "org-viewer", "orgId": org}
    ]
    expect(page.locator("table").get_by_text(alice, exact=True)).to_be_visible()
    # an enterprise: its secret shown once
    c.route(f"/orgs/{org}/enterprises")
    page.get_by_label("Name", exact=True).fill("SCADA push")
    page.locator("select[name=products]").select_option(pk)
    page.get_by_label("IP allow-list").fill("127.0.0.1\n10.0.0.0/8")
    page.get_by_role("button", name="Create enterprise").click()
    expect(page.locator(".alert.secret")).to_contain_text("Enterprise SCADA push created")
    ent = secret(c, "enterprise_id")
    got = admin.get(f"/api/v1/orgs/{org}/enterprises/{ent}").json()
    assert got["products"] == [pk] and got["ipAllowList"] == ["127.0.0.1/32", "10.0.0.0/8"]
    assert got["eventTypes"] == ["device_online", "device_offline", "device_status_kv"]
    # a channel disabled, enabled, its password reset
    c.route(f"/orgs/{org}/channels/{o['ch']}")
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("button", name="Enable")).to_be_visible()
    assert admin.get(f"/api/v1/orgs/{org}/channels/{o['ch']}").json()["enabled"] is False
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("button", name="Disable")).to_be_visible()
    page.get_by_role("button", name="Reset password").click()
    page.get_by_role("dialog").get_by_role("button", name="Reset password").click()
    expect(page.locator(".alert.secret")).to_contain_text("New password")
    user, password = secret(c, "username"), secret(c, "password")
    pub(
        c.hub,
        user,
        password,
        f"/sys/{pk}/integration/measurepoint/post",
        '{"id":"1","version":"1.0","method":"integration.measurepoint.post","params":[]}',
    )
    # the audit log names the changes and who made them
    c.route("/audit")
    audit = page.locator("main table")
    expect(audit).to_contain_text("POST /users")
    expect(audit).to_contain_text("/reset-password")
    expect(audit.locator("tr").filter(has_text="/enterprises").first).to_contain_text("session")


# -- rules ---------------------------------------------------------------------------------

TRANSFORM = """function transform(record) {
  var t = record.content.measurepoints.temp;
  if (t > 100) throw new Error("too hot: " + t);
  return {device: record.deviceKey, temp: t};
}"""


def figure(c: Console, name: str) -> Any:
    return c.page.locator(f".figure[data-figure='{name}'] .figure-value")


def refresh(c: Console, heading: str) -> None:
    """Read the figures now (the page also does every 5 s)."""
    section = c.page.locator("section", has=c.page.get_by_role("heading", name=heading))
    section.get_by_role("button", name="Refresh").click()


def test_rule_pages(console: Console, admin: httpx.Client) -> None:
    c, page, hub = console, console.page, console.hub
    receiver = Receiver()
    http = httpx.Client(base_url=hub.url, timeout=30)
    try:
        org = make_org(hub, admin, devices=2)
        login_operator(c, admin)
        c.route(f"/orgs/{org.id}/rules")
        expect(page.get_by_role("heading", name="Rules", level=1)).to_be_visible()
        expect(page.get_by_text("No rules yet")).to_be_visible()
        page.get_by_role("link", name="New rule").click()

        # -- create: the hub's check is shown at the field ---------------------------------
        name = "hook " + uuid.uuid4().hex[:4]
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Sink", exact=True).select_option("webhook")
        page.get_by_label("URL").fill("ftp://nowhere")
        page.get_by_label("Kinds").select_option(["measurepoint"])  # not online/offline
        page.get_by_label("Transform (JavaScript, optional)").fill(TRANSFORM)
        c.watch.expect(422, f"/orgs/{org.id}/rules")
        page.get_by_role("button", name="Create rule").click()
        url_input = page.get_by_label("URL")
        expect(url_input).to_have_attribute("aria-invalid", "true")
        expect(page.locator(".field-error:not(:empty)")).to_contain_text("http")
        url_input.fill(receiver.url + "/hook")
        page.get_by_label("Messages per POST").fill("1")
        page.get_by_role("button", name="Create rule").click()
        expect(page.locator(".alert.secret")).to_contain_text(f"Rule {name} created")
        secret = page.locator(".alert.secret dt:text-is('signing secret') + dd code").inner_text()
        rules = admin.get(f"/api/v1/orgs/{org.id}/rules").json()["items"]
        assert [r["name"] for r in rules] == [name]
        rule = rules[0]
        assert rule["sink"] == {
            "type": "webhook",
            "url": receiver.url + "/hook",
            "format": "headrace",
            "timeout": 10.0,
            "batchSize": 1,
            "headers": {},
        }
        assert rule["transform"] == TRANSFORM and rule["enabled"] is True
        assert rule["select"]["kinds"] == ["measurepoint"]
        page.get_by_role("link", name="Open the rule").click()
        expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()

        # -- data moves the counters; the transform's throw is a dead letter ------------------
        t = int(time.time() * 1000)
        realtime(
            http,
            org,
            [
                {"deviceKey": "dev0", "time": t, "measurepoints": {"temp": 20.5}},
                {"deviceKey": "dev1", "time": t, "measurepoints": {"temp": 500.0}},
            ],
        )
        realtime(http, org, [{"deviceKey": "dev0", "time": t + 1, "measurepoints": {"temp": 21}}])
        got = wait_for(lambda: len(receiver.delivered()) >= 2 and receiver.delivered(), 30)
        bodies = [json.loads(b) for _, b in got]
        assert bodies == [[{"device": "dev0", "temp": 20.5}], [{"device": "dev0", "temp": 21}]]
        for headers, body in got:  # signed with the secret shown once
            want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["x-headrace-signature"] == want
        refresh(c, "Delivery")
        expect(figure(c, "Delivered")).to_have_text("2")
        expect(figure(c, "Matched")).to_have_text("3")
        expect(figure(c, "Dead-lettered")).to_have_text("1")
        refresh(c, "Dead letters")
        dead = page.locator("table:has(caption:text('Dead letters')) tbody tr")
        expect(dead).to_have_count(1)
        expect(dead.first).to_contain_text("too hot: 500")
        c.shot("rule", page.get_by_role("heading", name="Delivery"))

        # -- pause holds delivery, resume sends what waited ------------------------------------
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("button", name="Resume")).to_be_visible()
        expect(page.locator(".badge", has_text="paused")).to_be_visible()
        assert admin.get(f"/api/v1/orgs/{org.id}/rules/{rule['ruleId']}").json()["enabled"] is False
        realtime(http, org, [{"deviceKey": "dev1", "time": t + 2, "measurepoints": {"temp": 22}}])
        time.sleep(1.0)
        assert len(receiver.delivered()) == 2
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_role("button", name="Pause")).to_be_visible()
        wait_for(lambda: len(receiver.delivered()) == 3, 30)
        assert json.loads(receiver.delivered()[2][1]) == [{"device": "dev1", "temp": 22}]
        refresh(c, "Delivery")
        expect(figure(c, "Delivered")).to_have_text("3")

        # -- replay from position 0: everything the stream holds, again -------------------------
        page.get_by_label("Replay from").select_option("position")
        page.get_by_label("Stream position").fill("0")
        page.get_by_role("button", name="Replay").click()
        wait_for(lambda: len(receiver.delivered()) >= 6, 30)

        # -- the list: state and counters ----------------------------------------------------------
        c.route(f"/orgs/{org.id}/rules")
        row = page.locator(f"tr[data-rule='{rule['ruleId']}']")
        expect(row).to_contain_text("running")
        expect(row.locator("td[data-label='Delivered']")).to_have_text("6")
        expect(row.locator("td[data-label='Dead-lettered']")).to_have_text("2")
        expect(row.locator("td[data-label='Last error']")).to_contain_text("too hot")
        c.shot("rules")

        # -- edit: a refused change at its field, then a saved one ----------------------------------
        c.route(f"/orgs/{org.id}/rules/{rule['ruleId']}")
        edit = page.locator("section", has=page.get_by_role("heading", name="Edit"))
        edit.get_by_label("Messages per POST").fill("0")
        c.watch.expect(422, f"/rules/{rule['ruleId']}")
        edit.get_by_role("button", name="Save rule").click()
        expect(edit.get_by_label("Messages per POST")).to_have_attribute("aria-invalid", "true")
        edit.get_by_label("Messages per POST").fill("50")
        edit.get_by_label("Measurepoints").fill("temp")
        edit.get_by_role("button", name="Save rule").click()
        expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
        saved = admin.get(f"/api/v1/orgs/{org.id}/rules/{rule['ruleId']}").json()
        assert saved["sink"]["batchSize"] == 50 and saved["select"]["points"] == ["temp"]
        assert saved["transform"] == TRANSFORM

        # -- an org viewer reads, and changes nothing ------------------------------------------------
        if has_accounts(hub):
            viewer = new_user(admin, "rv", "viewer pass 42", org.id)
            v = new_console(page.context.browser, hub, c.shots)
            try:
                v.login(viewer, "viewer pass 42")
                v.route(f"/orgs/{org.id}/rules")
                expect(v.page.locator(f"tr[data-rule='{rule['ruleId']}']")).to_contain_text(name)
                expect(v.page.get_by_role("link", name="New rule")).to_have_count(0)
                v.route(f"/orgs/{org.id}/rules/{rule['ruleId']}")
                expect(figure(v, "Delivered")).to_be_visible()
                for absent in ("Pause", "Delete", "Replay", "Save rule"):
                    expect(v.page.get_by_role("button", name=absent)).to_have_count(0)
                v.watch.expect(403, "/pause")
                status = v.page.evaluate(
                    """async (p) => {
                        const s = await (await fetch('/api/v1/session')).json();
                        const r = await fetch(p, {method: 'POST',
                            headers: {'x-csrf-token': s.csrfToken}});
                        return r.status;
                    }""",
                    f"/api/v1/orgs/{org.id}/rules/{rule['ruleId']}/pause",
                )
                assert status == 403
                v.watch.check()
            finally:
                v.page.context.close()

        # -- delete -------------------------------------------------------------------------------
        page.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name="Rules", level=1)).to_be_visible()
        expect(page.get_by_text("No rules yet")).to_be_visible()
        assert admin.get(f"/api/v1/orgs/{org.id}/rules/{rule['ruleId']}").status_code == 404
    finally:
        http.close()
        receiver.close()
