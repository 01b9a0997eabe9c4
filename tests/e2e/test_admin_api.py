"""The admin API against a real hub process, through httpx."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import HubProcess

INVERTER = {
    "id": "inverter",
    "name": "Inverter",
    "attributes": [{"id": "mac", "type": "string"}],
    "measurepoints": [
        {"id": "Power", "type": "float", "withQuality": True},
        {"id": "temp", "type": "double"},
        {"id": "branchCurr", "type": "array", "items": "string"},
        {"id": "fan_fault", "type": "bool", "flag": "fault", "name": "Fan fault"},
    ],
    "events": [{"id": "overheat", "outputs": [{"id": "level", "type": "int"}]}],
}


def new_org(api: httpx.Client) -> str:
    r = api.post("/api/v1/orgs", json={"name": "Org " + uuid.uuid4().hex[:6]})
    assert r.status_code == 201, r.text
    return str(r.json()["orgId"])


def assert_error(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["status"] == status and err["code"] == code and err["message"]
    if field is not None:
        assert err["field"] == field
    return err


def test_auth_required(shared_hub: HubProcess) -> None:
    r = httpx.get(shared_hub.url + "/api/v1/orgs")
    assert_error(r, 401, "unauthorized")
    r = httpx.get(shared_hub.url + "/api/v1/orgs", headers={"Authorization": "Bearer wrong"})
    assert_error(r, 401, "unauthorized")
    r = httpx.get(shared_hub.url + "/api/v1/orgs", headers={"Authorization": "Basic abc"})
    assert_error(r, 401, "unauthorized")


def test_error_shape_is_pinned(shared_api: httpx.Client) -> None:
    assert_error(shared_api.get("/api/v1/orgs/nope"), 404, "not_found")
    assert_error(shared_api.get("/api/v1/no/such/route"), 404, "not_found")
    r = shared_api.post(
        "/api/v1/orgs", content=b"{bad", headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "bad_request")
    assert_error(
        shared_api.post("/api/v1/orgs", json={"name": "x", "bogus": 1}),
        422,
        "validation_failed",
        "bogus",
    )
    assert_error(shared_api.post("/api/v1/orgs", json={}), 422, "validation_failed", "name")
    big = {"name": "x" * (2 * 1024 * 1024)}
    assert_error(shared_api.post("/api/v1/orgs", json=big), 413, "payload_too_large")
    org = new_org(shared_api)
    assert_error(
        shared_api.post("/api/v1/orgs", json={"name": "again", "orgId": org}), 409, "conflict"
    )


def test_org_crud_and_paging(shared_api: httpx.Client) -> None:
    ids = sorted(new_org(shared_api) for _ in range(5))
    r = shared_api.patch(f"/api/v1/orgs/{ids[0]}", json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert shared_api.get(f"/api/v1/orgs/{ids[0]}").json()["name"] == "Renamed"
    seen: list[str] = []
    cursor = ""
    while True:
        page = shared_api.get("/api/v1/orgs", params={"limit": 2, "cursor": cursor}).json()
        seen += [o["orgId"] for o in page["items"]]
        if not page["nextCursor"]:
            break
        cursor = page["nextCursor"]
    assert set(ids) <= set(seen) and seen == sorted(seen) and len(seen) == len(set(seen))
    assert_error(shared_api.get("/api/v1/orgs", params={"limit": 0}), 422, "validation_failed")
    assert shared_api.delete(f"/api/v1/orgs/{ids[1]}").status_code == 204
    assert_error(shared_api.get(f"/api/v1/orgs/{ids[1]}"), 404, "not_found")


def test_model_product_device_lifecycle(shared_api: httpx.Client) -> None:
    org = new_org(shared_api)
    r = shared_api.post(f"/api/v1/orgs/{org}/models", json=INVERTER)
    assert r.status_code == 201, r.text
    assert r.json()["measurepoints"][0]["withQuality"] is True
    r = shared_api.post(f"/api/v1/orgs/{org}/products", json={"name": "Inv", "modelId": "inverter"})
    assert r.status_code == 201, r.text
    product = r.json()
    pk = product["productKey"]
    assert len(product["productSecret"]) >= 16
    # a product moving from another platform keeps its keys
    r = shared_api.post(
        f"/api/v1/orgs/{org}/products",
        json={
            "name": "Moved",
            "modelId": "inverter",
            "productKey": f"pk{org}",
            "productSecret": "s3cret-kept",
        },
    )
    assert r.json()["productKey"] == f"pk{org}" and r.json()["productSecret"] == "s3cret-kept"
    # single and bulk device creation
    r = shared_api.post(
        f"/api/v1/orgs/{org}/products/{pk}/devices", json={"deviceKey": "d1", "name": "one"}
    )
    assert r.status_code == 201 and r.json()["assetId"]
    asset = r.json()["assetId"]
    r = shared_api.post(
        f"/api/v1/orgs/{org}/products/{pk}/devices",
        json=[{"deviceKey": "d2"}, {"deviceKey": "d3", "assetId": "keptAsset" + org}],
    )
    assert r.status_code == 201, r.text
    assert [d["deviceKey"] for d in r.json()["items"]] == ["d2", "d3"]
    # bulk with one duplicate: nothing is created
    r = shared_api.post(
        f"/api/v1/orgs/{org}/products/{pk}/devices", json=[{"deviceKey": "d4"}, {"deviceKey": "d1"}]
    )
    assert_error(r, 409, "conflict", "[1].deviceKey")
    assert_error(shared_api.get(f"/api/v1/orgs/{org}/products/{pk}/devices/d4"), 404, "not_found")
    listed = shared_api.get(f"/api/v1/orgs/{org}/products/{pk}/devices").json()["items"]
    assert [d["deviceKey"] for d in listed] == ["d1", "d2", "d3"]
    assert shared_api.get(f"/api/v1/orgs/{org}/devices/{asset}").json()["deviceKey"] == "d1"
    r = shared_api.patch(f"/api/v1/orgs/{org}/products/{pk}/devices/d1", json={"group": "g1"})
    assert r.json()["group"] == "g1"
    # in-use objects cannot be deleted
    assert_error(shared_api.delete(f"/api/v1/orgs/{org}/models/inverter"), 409, "conflict")
    assert_error(shared_api.delete(f"/api/v1/orgs/{org}/products/{pk}"), 409, "conflict")
    assert_error(shared_api.delete(f"/api/v1/orgs/{org}"), 409, "conflict")
    for d in ("d1", "d2", "d3"):
        assert shared_api.delete(f"/api/v1/orgs/{org}/products/{pk}/devices/{d}").status_code == 204
    assert shared_api.delete(f"/api/v1/orgs/{org}/products/{pk}").status_code == 204
    assert shared_api.delete(f"/api/v1/orgs/{org}/products/pk{org}").status_code == 204
    assert shared_api.delete(f"/api/v1/orgs/{org}/models/inverter").status_code == 204
    assert shared_api.delete(f"/api/v1/orgs/{org}").status_code == 204


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"id": "m", "measurepoints": [{"id": "a", "type": "flot"}]}, "measurepoints[0].type"),
        ({"id": "m", "measurepoints": [{"id": "a", "type": "array"}]}, "measurepoints[0].items"),
        (
            {"id": "m", "measurepoints": [{"id": "a", "type": "int"}, {"id": "a", "type": "int"}]},
            "measurepoints[1].id",
        ),
        (
            {"id": "m", "attributes": [{"id": "a", "type": "int", "flag": "fault"}]},
            "attributes[0].flag",
        ),
        ({"id": "m", "measurepoints": [{"id": "x" * 129, "type": "int"}]}, "measurepoints[0].id"),
    ],
)
def test_invalid_models_refused_precisely(
    shared_api: httpx.Client, model: dict, field: str
) -> None:
    org = new_org(shared_api)
    assert_error(
        shared_api.post(f"/api/v1/orgs/{org}/models", json=model), 422, "validation_failed", field
    )
    assert shared_api.get(f"/api/v1/orgs/{org}/models").json()["items"] == []


def test_product_needs_existing_model(shared_api: httpx.Client) -> None:
    org = new_org(shared_api)
    r = shared_api.post(f"/api/v1/orgs/{org}/products", json={"name": "p", "modelId": "missing"})
    assert_error(r, 404, "not_found")
    assert shared_api.get(f"/api/v1/orgs/{org}/products").json()["items"] == []


def test_registry_survives_restart(hub: HubProcess) -> None:
    with hub.client() as api:
        org = new_org(api)
        api.post(f"/api/v1/orgs/{org}/models", json=INVERTER)
        pk = api.post(
            f"/api/v1/orgs/{org}/products", json={"name": "p", "modelId": "inverter"}
        ).json()["productKey"]
        api.post(f"/api/v1/orgs/{org}/products/{pk}/devices", json={"deviceKey": "d1"})
    hub.restart()
    with hub.client() as api:
        assert api.get(f"/api/v1/orgs/{org}/products/{pk}/devices/d1").status_code == 200
        assert api.get(f"/api/v1/orgs/{org}/models/inverter").json()["id"] == "inverter"


def test_openapi_published(shared_hub: HubProcess) -> None:
    r = httpx.get(shared_hub.url + "/api/docs/openapi.json")
    assert r.status_code == 200
    assert "/api/v1/orgs/{org_id}/products" in r.json()["paths"]
