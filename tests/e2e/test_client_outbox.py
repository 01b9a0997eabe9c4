"""The Outbox against a real hub: it survives a SIGKILL while the link is down, drains
after reconnecting, deletes only what was stored, and sets refused records aside."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from headrace.client import IntegrationClient, Outbox
from tests.conftest import HubProcess
from tests.e2e.client_support import all_samples, broker, wait_for
from tests.e2e.mqtt_support import Provisioned, provision

T0 = 1_670_000_000_000

# A collector process: buffers records while the hub is down, trying to send meanwhile.
COLLECTOR = textwrap.dedent(
    """
    import asyncio, sys
    from headrace.client import IntegrationClient, Outbox

    path, url, user, password, pk, t0 = sys.argv[1:7]
    t0 = int(t0)

    async def main():
        outbox = Outbox(path)
        client = IntegrationClient(url, username=user, password=password, backoff_max=0.2)

        async def send():
            await client.connect(wait=True)
            await outbox.run(client)

        sender = asyncio.ensure_future(send())
        for i in range(30):
            outbox.extend(pk, [
                {"deviceKey": "dev%d" % (k % 2), "time": t0 + i * 10 + k,
                 "measurepoints": {"temp": i + k / 10}}
                for k in range(10)
            ])
        outbox.append(pk, {"deviceKey": "ghost", "time": t0, "measurepoints": {"temp": 1}})
        print("appended", len(outbox), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def expected(t0: int) -> dict[str, set[tuple[int, float]]]:
    out: dict[str, set[tuple[int, float]]] = {"dev0": set(), "dev1": set()}
    for i in range(30):
        for k in range(10):
            out[f"dev{k % 2}"].add((t0 + i * 10 + k, i + k / 10))
    return out


def stored(api: httpx.Client, env: Provisioned, t0: int) -> dict[str, set[tuple[int, float]]]:
    return {
        d: {(s["time"], s["value"]) for s in all_samples(api, env.org, env.pk, d, t0, t0 + 1000)}
        for d in ("dev0", "dev1")
    }


async def test_outbox_survives_kill_while_disconnected(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=2)
    path = tmp_path / "outbox.db"
    hub.stop()  # the link is down
    with open(tmp_path / "collector.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                COLLECTOR,
                str(path),
                broker(hub),
                env.username,
                env.password,
                env.pk,
                str(T0),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.split() == [b"appended", b"301"], (tmp_path / "collector.log").read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    # everything is still there after the kill
    outbox = Outbox(path)
    assert len(outbox) == 301
    await asyncio.to_thread(hub.start)
    async with IntegrationClient(broker(hub), username=env.username, password=env.password) as c:
        sent = await outbox.drain(c, batch=25, inflight=3)
    assert sent == 300
    assert len(outbox) == 0
    (bad,) = outbox.rejected()
    assert (bad.code, bad.item["deviceKey"], bad.product_key) == (1257, "ghost", env.pk)
    assert "ghost" in bad.message
    outbox.close()
    assert stored(api, env, T0) == expected(T0)


async def test_outbox_drains_after_reconnect(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=2)
    outbox = Outbox(tmp_path / "outbox.db", synchronous="normal")
    client = IntegrationClient(
        broker(hub), username=env.username, password=env.password, backoff_max=0.3
    )
    await client.connect()
    runner = asyncio.ensure_future(outbox.run(client, batch=20, inflight=2, poll=0.2))
    try:
        t1 = T0 + 100_000
        outbox.extend(
            env.pk,
            [
                {"deviceKey": "dev0", "time": t1 + i, "measurepoints": {"temp": i}}
                for i in range(50)
            ],
        )
        await asyncio.wait_for(_until_empty(outbox), 30)
        await asyncio.to_thread(hub.kill)
        # appended while the link is down: kept, not lost
        for i in range(10):
            outbox.extend(
                env.pk,
                [
                    {"deviceKey": "dev1", "time": t1 + i * 10 + k, "measurepoints": {"temp": k}}
                    for k in range(10)
                ],
            )
        await asyncio.sleep(0.5)
        assert len(outbox) == 100
        await asyncio.to_thread(hub.start)
        await asyncio.wait_for(_until_empty(outbox), 60)
        assert client.connects >= 2
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.close()
        outbox.close()
    assert len(all_samples(api, env.org, env.pk, "dev0", T0 + 100_000, T0 + 100_100)) == 50
    assert len(all_samples(api, env.org, env.pk, "dev1", T0 + 100_000, T0 + 100_100)) == 100


async def test_outbox_refused_records_set_aside(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=1)
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.extend(
            env.pk,
            [
                {"deviceKey": "dev0", "time": T0 + 1, "measurepoints": {"temp": 1}},
                {"deviceKey": "dev0", "time": T0 + 2, "measurepoints": {"mode": 9}},
                {"deviceKey": "dev0", "time": T0 + 3, "measurepoints": {"temp": 3}},
            ],
        )
        outbox.append(env.other_pk, {"deviceKey": "dev0", "time": T0, "measurepoints": {"temp": 1}})
        outbox.append(env.pk, {"deviceKey": "dev0", "attributes": {"mac": "aa"}}, kind="attribute")
        async with IntegrationClient(
            broker(hub), username=env.username, password=env.password
        ) as c:
            assert await outbox.drain(c) == 3
        assert len(outbox) == 0
        assert [(r.code, r.product_key, r.kind) for r in outbox.rejected()] == [
            (1204, env.pk, "measurepoint"),
            (1009, env.other_pk, "measurepoint"),
        ]
        assert outbox.clear_rejected() == 2
    got = all_samples(api, env.org, env.pk, "dev0", T0, T0 + 10)
    assert sorted(s["time"] for s in got) == [T0 + 1, T0 + 3]


async def _until_empty(outbox: Outbox) -> None:
    while len(outbox):
        await asyncio.sleep(0.05)


def test_wait_for_helper() -> None:
    assert wait_for(lambda: 3) == 3
