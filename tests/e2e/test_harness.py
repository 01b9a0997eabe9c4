"""Listeners on ports the system picks: ports.json, readiness, and a harness that cannot
collide with a port someone else holds."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from headrace.app import Hub
from headrace.config import Settings
from tests.conftest import HubProcess
from tests.e2e.mqtt_support import provision

ALL_FREE = [
    "http.port=0",
    "mqtt.port=0",
    "mqtt.tls_port=0",
    "noti.port=0",
    "subscription.port=0",
    "subscription.tls_port=0",
]
LISTENERS = {"http", "mqtt", "mqtt_tls", "noti", "subscription", "subscription_tls"}


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_port_zero_binds_free_ports_and_writes_them(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data")
    hub.start()
    try:
        ports = json.loads((tmp_path / "data" / "ports.json").read_text())
        assert set(ports) == LISTENERS
        assert len(set(ports.values())) == len(LISTENERS) and all(p > 0 for p in ports.values())
        for port in ports.values():
            assert _connectable(port)
        # TLS really is TLS on the TLS ports
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for name in ("mqtt_tls", "noti", "subscription_tls"):
            with (
                socket.create_connection(("127.0.0.1", ports[name])) as raw,
                ctx.wrap_socket(raw) as tls,
            ):
                assert tls.version() is not None
        health = httpx.get(hub.url + "/healthz").json()
        assert health == {"status": "ok", "ports": ports}
        assert f"{ports['mqtt']}" in hub.log() and f"{ports['noti']}" in hub.log()
        # the channel view shows the ports bound, not the settings' 0
        with hub.client() as api:
            env = provision(api)
            ch = api.get(f"/api/v1/orgs/{env.org}/channels/{env.channel_id}")
            assert ch.json()["brokers"] == [
                f"tcp://127.0.0.1:{ports['mqtt']}",
                f"ssl://127.0.0.1:{ports['mqtt_tls']}",
            ]
    finally:
        assert hub.stop() == 0
    # a stopped hub leaves no ports.json pointing at nothing
    assert not (tmp_path / "data" / "ports.json").exists()


def test_harness_starts_hubs_while_ports_are_held(tmp_path: Path) -> None:
    """A client connection and a listener of someone else hold ports; every hub still
    starts (the old harness picked ports, closed them, and lost races like this)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    held = {listener.getsockname()[1], client.getsockname()[1]}
    hubs = [HubProcess(tmp_path / f"data{i}") for i in range(3)]
    try:
        # at once: each binds its ports while the others bind theirs, too
        with ThreadPoolExecutor(len(hubs)) as pool:
            list(pool.map(HubProcess.start, hubs))
        bound = [p for h in hubs for p in h.ports.values()]
        assert len(bound) == 3 * len(LISTENERS) and len(set(bound)) == len(bound)
        assert not held & set(bound)
        for h in hubs:
            assert httpx.get(h.url + "/healthz").status_code == 200
    finally:
        for h in hubs:
            h.stop()
        for s in (peer, client, listener):
            s.close()


def test_restart_keeps_the_ports(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data")
    hub.start()
    try:
        before = dict(hub.ports)
        hub.restart()
        assert hub.ports == before
        assert _connectable(hub.mqtt_port)
    finally:
        hub.stop()


def test_a_disabled_listener_binds_nothing(tmp_path: Path) -> None:
    hub = HubProcess(
        tmp_path / "data",
        [
            "--set",
            "noti.enabled=false",
            "--set",
            "mqtt.tls_enabled=false",
            "--set",
            "subscription.enabled=false",
            "--set",
            "subscription.tls_enabled=false",
        ],
    )
    hub.start()
    try:
        assert set(hub.ports) == {"http", "mqtt"}
        with hub.client() as api:
            env = provision(api)
            ch = api.get(f"/api/v1/orgs/{env.org}/channels/{env.channel_id}")
            assert ch.json()["brokers"] == [f"tcp://127.0.0.1:{hub.mqtt_port}"]
    finally:
        hub.stop()


# the routes' `data` bodies warn of Litestar 3.0 (the hub does not run with -W error)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_healthz_answers_503_until_every_listener_is_up(tmp_path: Path) -> None:
    """In process: the noti listener is held back until the test lets it start."""
    settings = Settings.load(None, [*ALL_FREE, f"data_dir={tmp_path / 'data'}"], environ={})
    hub = Hub(settings)
    hub.open()
    gate = asyncio.Event()
    start_noti = hub.noti.start

    async def held_back() -> None:
        await gate.wait()
        await start_noti()

    hub.noti.start = held_back  # type: ignore[method-assign]
    serving = asyncio.create_task(hub.serve())
    try:
        for _ in range(500):
            if "http" in hub.ports:
                break
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{hub.ports['http']}/healthz"
        async with httpx.AsyncClient() as c:
            r = await c.get(url)
            assert r.status_code == 503 and r.json() == {"status": "starting"}
            assert not (tmp_path / "data" / "ports.json").exists()
            gate.set()
            for _ in range(500):
                r = await c.get(url)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.01)
            assert r.status_code == 200
            ports = json.loads((tmp_path / "data" / "ports.json").read_text())
            assert set(ports) == LISTENERS
    finally:
        hub.request_stop()
        await asyncio.wait_for(serving, 30)
        hub.close()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        hub = HubProcess(tmp_path / "data", ["--set", f"mqtt.port={taken.getsockname()[1]}"])
        with pytest.raises(RuntimeError, match="address already in use"):
            hub.start()
    finally:
        taken.close()
