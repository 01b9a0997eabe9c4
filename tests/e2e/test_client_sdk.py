"""The client SDK against a real hub: both logins, TLS, many requests in flight, and one
exception class per reply code."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from headrace.client import (
    ConnectError,
    DecodeFailed,
    DeviceNotFound,
    EmptyPayload,
    IntegrationClient,
    IntegrationReplyError,
    InvalidPayload,
    LoginRefused,
    MessageTooLarge,
    MethodMismatch,
    NoPermission,
    RateLimited,
    SubscribeRefused,
    UnknownMethod,
    ValidationError,
    reply_error,
)
from tests.conftest import HubProcess, free_port
from tests.e2e.client_support import all_samples, broker, ca_file
from tests.e2e.mqtt_support import Provisioned, provision

T0 = 1_650_000_000_000


@pytest.fixture(scope="module")
def env(shared_api: httpx.Client) -> Provisioned:
    return provision(shared_api, devices=4)


def channel_client(hub: HubProcess, env: Provisioned, **kw: object) -> IntegrationClient:
    return IntegrationClient(
        broker(hub),
        username=env.username,
        password=env.password,
        **kw,  # type: ignore[arg-type]
    )


async def test_post_every_kind_with_channel_login(
    shared_hub: HubProcess, shared_api: httpx.Client, env: Provisioned
) -> None:
    async with channel_client(shared_hub, env) as c:
        assert c.connected
        reply = await c.post_measurepoints(
            env.pk,
            [
                {
                    "deviceKey": "dev0",
                    "time": T0,
                    "measurepoints": {"temp": 20.5, "Power": {"value": 3.5, "quality": 9}},
                },
                {"deviceKey": "dev0", "time": T0 + 1, "measurepoints": {"temp": 21}},
            ],
        )
        assert reply["code"] == 200 and reply["message"] == "success"
        assert reply["id"].startswith(c._id_prefix)
        reply = await c.post_attributes(
            env.pk, [{"deviceKey": "dev0", "attributes": {"mac": "00:11", "capacity": 5}}]
        )
        assert reply["code"] == 200
        reply = await c.post_events(
            env.pk, [{"deviceKey": "dev0", "time": T0, "events": {"overheat": {"level": 3}}}]
        )
        assert reply["code"] == 200
    got = all_samples(shared_api, env.org, env.pk, "dev0", T0, T0 + 2)
    assert {"point": "temp", "time": T0, "value": 20.5} in got
    assert {"point": "Power", "time": T0, "value": 3.5, "quality": 9} in got
    assert {"point": "temp", "time": T0 + 1, "value": 21.0} in got
    attrs = shared_api.get(
        f"/api/v1/orgs/{env.org}/products/{env.pk}/devices/dev0/attributes"
    ).json()
    assert "00:11" in json.dumps(attrs)


@pytest.mark.parametrize("version", [4, 5])
async def test_signed_login_over_tls(
    shared_hub: HubProcess, shared_api: httpx.Client, env: Provisioned, version: int
) -> None:
    async with IntegrationClient(
        broker(shared_hub, tls=True),
        product_key=env.pk,
        product_secret=env.secret,
        ca_file=ca_file(shared_hub),
        version=version,
    ) as c:
        assert c.tls
        t = T0 + 100 + version
        reply = await c.post_measurepoints(
            env.pk, [{"deviceKey": "dev1", "time": t, "measurepoints": {"temp": 1.25}}]
        )
        assert reply["code"] == 200
    assert all_samples(shared_api, env.org, env.pk, "dev1", t, t + 1) == [
        {"point": "temp", "time": t, "value": 1.25}
    ]


async def test_many_requests_in_flight_matched_by_id(
    shared_hub: HubProcess, shared_api: httpx.Client, env: Provisioned
) -> None:
    """200 requests, 16 outstanding at a time, on two connections of the same channel
    (each also receives the other's replies, as from a broker); every caller gets the
    reply to its own request."""
    base = T0 + 10_000

    async def load(c: IntegrationClient, device: str) -> list[dict[str, object]]:
        return await asyncio.gather(
            *(
                c.post_measurepoints(
                    env.pk,
                    [
                        {
                            "deviceKey": device,
                            "time": base + i * 10 + j,
                            "measurepoints": {"temp": i},
                        }
                        for j in range(10)
                    ],
                )
                for i in range(100)
            )
        )

    async with (
        channel_client(shared_hub, env, max_inflight=16) as a,
        channel_client(shared_hub, env, max_inflight=16) as b,
    ):
        ra, rb = await asyncio.gather(load(a, "dev2"), load(b, "dev3"))
    for replies, client in ((ra, a), (rb, b)):
        ids = [r["id"] for r in replies]
        assert len(set(ids)) == 100
        assert all(isinstance(i, str) and i.startswith(client._id_prefix) for i in ids)
        # gather keeps call order: reply i answers request i
        assert [int(str(i).rsplit("-", 1)[1]) for i in ids] == sorted(
            int(str(i).rsplit("-", 1)[1]) for i in ids
        )
    for device in ("dev2", "dev3"):
        got = all_samples(shared_api, env.org, env.pk, device, base, base + 1000)
        assert len(got) == 1000


@pytest.mark.parametrize(
    ("items", "exc", "code"),
    [
        (
            [{"deviceKey": "ghost", "time": T0, "measurepoints": {"temp": 1}}],
            DeviceNotFound,
            1257,
        ),
        ([{"deviceKey": "dev0", "time": T0, "measurepoints": {"nope": 1}}], ValidationError, 1204),
        ([{"deviceKey": "dev0", "time": T0, "measurepoints": {"mode": 7}}], ValidationError, 1204),
        (
            [{"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": "hot"}}],
            ValidationError,
            1204,
        ),
        ([], EmptyPayload, 1251),
    ],
)
async def test_reply_codes_raise_their_exception(
    shared_hub: HubProcess, env: Provisioned, items: list[dict[str, object]], exc: type, code: int
) -> None:
    async with channel_client(shared_hub, env) as c:
        with pytest.raises(exc) as info:
            await c.post_measurepoints(env.pk, items)
    err = info.value
    assert isinstance(err, IntegrationReplyError)
    assert err.code == code and err.message
    assert err.reply["code"] == code
    if items:
        assert err.errors and err.errors[0]["index"] == 0 and err.errors[0]["code"] == code


async def test_item_errors_list_every_failing_item(
    shared_hub: HubProcess, env: Provisioned
) -> None:
    async with channel_client(shared_hub, env) as c:
        with pytest.raises(DeviceNotFound) as info:
            await c.post_measurepoints(
                env.pk,
                [
                    {"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1}},
                    {"deviceKey": "ghost", "time": T0, "measurepoints": {"temp": 1}},
                    {"deviceKey": "dev0", "time": T0, "measurepoints": {"mode": 9}},
                ],
            )
    assert [(e["index"], e["code"]) for e in info.value.errors] == [(1, 1257), (2, 1204)]
    assert info.value.errors[0]["deviceKey"] == "ghost"


@pytest.mark.parametrize(
    ("kind", "payload", "exc", "code"),
    [
        ("measurepoint", b"{not json", InvalidPayload, 1220),
        ("measurepoint", b"", EmptyPayload, 1251),
        (
            "measurepoint",
            b'{"id":"x","method":"integration.nope","params":[{}]}',
            UnknownMethod,
            1250,
        ),
        (
            "attribute",
            b'{"id":"x","method":"integration.measurepoint.post","params":[{"deviceKey":"dev0","measurepoints":{"temp":1}}]}',
            MethodMismatch,
            1260,
        ),
        ("raw", b"\x01\x02", DecodeFailed, 1202),  # a JSON product has no parsing script
    ],
)
async def test_hand_built_requests(
    shared_hub: HubProcess, env: Provisioned, kind: str, payload: bytes, exc: type, code: int
) -> None:
    async with channel_client(shared_hub, env) as c:
        with pytest.raises(exc) as info:
            await c.send_request(env.pk, kind, payload)
    assert info.value.code == code


async def test_too_large(shared_hub: HubProcess, env: Provisioned) -> None:
    big = [
        {"deviceKey": "dev0", "time": T0 + i, "measurepoints": {"temp": 1.5}} for i in range(12_000)
    ]
    async with channel_client(shared_hub, env) as c:
        with pytest.raises(MessageTooLarge) as info:
            await c.post_measurepoints(env.pk, big)
    assert info.value.code == 1008


async def test_product_outside_the_channel(shared_hub: HubProcess, env: Provisioned) -> None:
    async with channel_client(shared_hub, env) as c:
        with pytest.raises(SubscribeRefused) as info:
            await c.post_measurepoints(
                env.other_pk, [{"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1}}]
            )
        assert isinstance(info.value, NoPermission) and info.value.code == 1009
        # the connection is still good
        assert (
            await c.post_measurepoints(
                env.pk, [{"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1}}]
            )
        )["code"] == 200


async def test_rate_limited(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    slow = provision(shared_api, devices=1, rate_limit=2)
    async with channel_client(shared_hub, slow, max_inflight=10) as c:
        results = await asyncio.gather(
            *(
                c.post_measurepoints(
                    slow.pk, [{"deviceKey": "dev0", "time": T0 + i, "measurepoints": {"temp": 1}}]
                )
                for i in range(10)
            ),
            return_exceptions=True,
        )
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert limited and all(r.code == 1274 and r.retryable for r in limited)
    assert any(isinstance(r, dict) and r["code"] == 200 for r in results)


async def test_login_refused(shared_hub: HubProcess, env: Provisioned) -> None:
    with pytest.raises(LoginRefused) as info:
        await IntegrationClient(
            broker(shared_hub), username=env.username, password="wrong"
        ).connect()
    assert info.value.connack_code == 5
    with pytest.raises(LoginRefused):
        await IntegrationClient(
            broker(shared_hub), product_key=env.pk, product_secret="not-the-secret"
        ).connect()


async def test_unreachable_broker() -> None:
    c = IntegrationClient(f"mqtt://127.0.0.1:{free_port()}", username="u", password="p")
    with pytest.raises(ConnectError):
        await c.connect()


def test_reply_error_mapping() -> None:
    e = reply_error({"id": "1", "code": 1257, "message": "m", "data": {"errors": [{"index": 0}]}})
    assert type(e) is DeviceNotFound and e.errors == [{"index": 0}] and e.message == "m"
    e = reply_error({"id": "1", "code": 4242, "message": "new", "data": {}})
    assert type(e) is IntegrationReplyError and e.code == 4242


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        IntegrationClient(username="u")  # no password
    with pytest.raises(ValueError):
        IntegrationClient(username="u", password="p", product_key="pk", product_secret="s")
    with pytest.raises(ValueError):
        IntegrationClient("http://x", username="u", password="p")
