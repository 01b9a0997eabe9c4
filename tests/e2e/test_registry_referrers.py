"""Registry objects an enterprise refers to cannot be deleted from under it."""

from __future__ import annotations

import uuid

import httpx


def test_product_and_org_of_an_enterprise_are_kept(shared_api: httpx.Client) -> None:
    api = shared_api
    org = api.post("/api/v1/orgs", json={"name": "refs " + uuid.uuid4().hex[:6]}).json()["orgId"]
    api.post(
        f"/api/v1/orgs/{org}/models",
        json={"id": "m", "measurepoints": [{"id": "t", "type": "int"}]},
    )
    pk = api.post(f"/api/v1/orgs/{org}/products", json={"name": "p", "modelId": "m"}).json()[
        "productKey"
    ]
    r = api.post(
        f"/api/v1/orgs/{org}/enterprises",
        json={"name": "e", "products": [pk], "eventTypes": ["device_status_kv"]},
    )
    assert r.status_code == 201, r.text
    eid = r.json()["enterpriseId"]
    r = api.delete(f"/api/v1/orgs/{org}/products/{pk}")
    assert r.status_code == 409 and eid in r.json()["error"]["message"]
    assert (
        api.delete(f"/api/v1/orgs/{org}/models/m").status_code == 409
    )  # still used by the product
    assert api.delete(f"/api/v1/orgs/{org}/enterprises/{eid}").status_code == 204
    assert api.delete(f"/api/v1/orgs/{org}/products/{pk}").status_code == 204
    assert api.delete(f"/api/v1/orgs/{org}/models/m").status_code == 204
    assert api.delete(f"/api/v1/orgs/{org}").status_code == 204
