"""Reconnect and resend: requests in flight when the hub dies are resent on the next
connection and answered; nothing is lost and nothing is stored twice."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from headrace.client import ConnectionLost, IntegrationClient, RequestTimeout
from tests.conftest import HubProcess
from tests.e2e.client_support import all_samples, broker
from tests.e2e.mqtt_support import provision

T0 = 1_660_000_000_000


async def test_requests_in_flight_survive_a_hub_kill(hub: HubProcess, api: httpx.Client) -> None:
    env = provision(api, devices=2)
    async with IntegrationClient(
        broker(hub),
        username=env.username,
        password=env.password,
        max_inflight=8,
        backoff_initial=0.05,
        backoff_max=0.5,
    ) as c:
        tasks = [
            asyncio.ensure_future(
                c.post_measurepoints(
                    env.pk,
                    [
                        {
                            "deviceKey": "dev0",
                            "time": T0 + i * 10 + j,
                            "measurepoints": {"temp": i + j},
                        }
                        for j in range(10)
                    ],
                )
            )
            for i in range(400)
        ]
        while sum(t.done() for t in tasks) < 40:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(hub.kill)  # SIGKILL: no goodbye, requests lost mid-way
        assert not all(t.done() for t in tasks)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(hub.start)
        replies = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert all(r["code"] == 200 for r in replies)
        assert c.connects >= 2
        assert c.pending == 0
    got = all_samples(api, env.org, env.pk, "dev0", T0, T0 + 4000)
    assert len(got) == 4000
    assert {(s["time"], s["value"]) for s in got} == {
        (T0 + i * 10 + j, float(i + j)) for i in range(400) for j in range(10)
    }


async def test_graceful_restart_answers_what_it_received(
    hub: HubProcess, api: httpx.Client
) -> None:
    env = provision(api, devices=1)
    async with IntegrationClient(
        broker(hub), username=env.username, password=env.password, backoff_max=0.5
    ) as c:
        tasks = [
            asyncio.ensure_future(
                c.post_measurepoints(
                    env.pk, [{"deviceKey": "dev0", "time": T0 + i, "measurepoints": {"temp": i}}]
                )
            )
            for i in range(200)
        ]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(hub.restart)
        replies = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert all(r["code"] == 200 for r in replies)
    assert len(all_samples(api, env.org, env.pk, "dev0", T0, T0 + 200)) == 200


async def test_without_reconnect_waiting_requests_fail(hub: HubProcess, api: httpx.Client) -> None:
    env = provision(api, devices=1)
    c = IntegrationClient(
        broker(hub), username=env.username, password=env.password, reconnect=False
    )
    await c.connect()
    try:
        tasks = [
            asyncio.ensure_future(
                c.post_measurepoints(
                    env.pk, [{"deviceKey": "dev0", "time": T0 + i, "measurepoints": {"temp": i}}]
                )
            )
            for i in range(300)
        ]
        await asyncio.sleep(0.02)
        await asyncio.to_thread(hub.kill)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        assert any(isinstance(r, ConnectionLost) for r in results)
        assert all(isinstance(r, ConnectionLost) or r["code"] == 200 for r in results)  # type: ignore[index]
    finally:
        await c.close()


async def test_request_timeout_while_the_hub_is_down(hub: HubProcess, api: httpx.Client) -> None:
    env = provision(api, devices=1)
    async with IntegrationClient(
        broker(hub),
        username=env.username,
        password=env.password,
        request_timeout=0.5,
        backoff_max=0.2,
    ) as c:
        await asyncio.to_thread(hub.kill)
        with pytest.raises(RequestTimeout):
            await c.post_measurepoints(
                env.pk, [{"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1}}]
            )
        await asyncio.to_thread(hub.start)
        reply = await c.post_measurepoints(
            env.pk, [{"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1}}]
        )
        assert reply["code"] == 200
