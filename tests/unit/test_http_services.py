"""Service accounts/tokens and the online tracker against a real SQLite store, with a
controllable clock (no servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headrace.errors import TokenRefused, TokenRejected
from headrace.model.types import ThingModel, TypeSpec
from headrace.proto.enos import token_encryption as signature
from headrace.state.accounts import AccountCreate, Accounts, AccountUpdate
from headrace.state.online import OnlineTracker
from headrace.state.registry import DeviceCreate, DeviceEntry, OrgCreate, ProductCreate, Registry
from headrace.store.sqlite.store import SQLiteStore


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class World:
    store: SQLiteStore
    registry: Registry
    clock: Clock
    org: str
    product: str
    devices: list[DeviceEntry]
    path: Path

    def reopen(self) -> World:
        self.store.close()
        store = SQLiteStore(self.path)
        store.start()
        reg = Registry(store)
        reg.load()
        devs = [reg.by_asset[e.device.assetId] for e in self.devices]
        return World(store, reg, self.clock, self.org, self.product, devs, self.path)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.start()
    reg = Registry(store)
    reg.load()
    org = (await reg.create_org(OrgCreate(name="A"))).orgId
    await reg.create_model(org, ThingModel(id="m", measurepoints=[TypeSpec(id="t", type="double")]))
    pk = (
        await reg.create_product(org, ProductCreate(name="P", modelId="m", inactivityTimeout=10))
    ).productKey
    await reg.create_devices(org, pk, [DeviceCreate(deviceKey=f"d{i}") for i in range(3)])
    devices = [reg.devices[(pk, f"d{i}")] for i in range(3)]
    w = World(store, reg, Clock(), org, pk, devices, tmp_path / "db.sqlite")
    yield w
    w.store.close()


def body(acc_key: str, secret: str, ts_ms: int, **extra: Any) -> dict[str, Any]:
    return {
        "appKey": acc_key,
        "encryption": signature(acc_key, str(ts_ms), secret),
        "timestamp": ts_ms,
        **extra,
    }


def _ms(clock: Clock) -> int:
    return int(clock.t * 1000)


# -- tokens ------------------------------------------------------------------------------


async def test_token_lifecycle(world: World) -> None:
    c = world.clock
    accounts = Accounts(world.store, world.registry, ttl=7200, skew=300, clock=c)
    acc, secret = await accounts.create(world.org, AccountCreate(name="scada"))
    token, expire = await accounts.get_token(body(acc.appKey, secret, _ms(c)))
    assert expire == 7200
    assert accounts.authenticate(token).appKey == acc.appKey
    c.t += 100
    # the same token while valid, with the time it has left; timestamp as a string works
    again, left = await accounts.get_token(
        {**body(acc.appKey, secret, _ms(c)), "timestamp": str(_ms(c))}
    )
    assert again == token and left == 7100
    # refresh gives a new token; the old one stops working
    c.t += 1
    fresh, left = await accounts.refresh_token(body(acc.appKey, secret, _ms(c), accessToken=token))
    assert fresh != token and left == 7200
    with pytest.raises(TokenRejected):
        accounts.authenticate(token)
    # expiry
    c.t += 7201
    with pytest.raises(TokenRejected) as e:
        accounts.authenticate(fresh)
    assert e.value.expired
    with pytest.raises(TokenRefused) as te:
        await accounts.refresh_token(body(acc.appKey, secret, _ms(c), accessToken=fresh))
    assert te.value.token_status == 1203
    newest, _ = await accounts.get_token(body(acc.appKey, secret, _ms(c) + 1))
    assert newest not in (token, fresh)


async def test_token_errors(world: World) -> None:
    c = world.clock
    accounts = Accounts(world.store, world.registry, ttl=7200, skew=300, clock=c)
    acc, secret = await accounts.create(world.org, AccountCreate(name="scada"))
    now = _ms(c)

    async def status(b: Any, refresh: bool = False) -> int:
        try:
            if refresh:
                await accounts.refresh_token(b)
            else:
                await accounts.get_token(b)
        except TokenRefused as e:
            return e.token_status
        return 0

    assert await status([1]) == 1004
    assert await status({"appKey": acc.appKey, "timestamp": now}) == 1202
    assert await status({**body(acc.appKey, secret, now), "timestamp": "soon"}) == 1004
    assert await status({**body(acc.appKey, secret, now), "timestamp": 1.5}) == 1004
    assert await status(body("nobody", secret, now)) == 1002
    assert await status(body(acc.appKey, "wrong", now)) == 1003
    assert await status(body(acc.appKey, secret, now - 301_000)) == 1003
    assert await status(body(acc.appKey, secret, now + 301_000)) == 1003
    ok = body(acc.appKey, secret, now - 299_000)
    assert await status(ok) == 0
    assert await status(ok) == 1001  # replayed
    b = body(acc.appKey, secret, now + 1)
    b["encryption"] = b["encryption"].upper()  # hex compared case-insensitively
    assert await status(b) == 0
    assert await status(body(acc.appKey, secret, now + 2), refresh=True) == 1202
    assert await status(body(acc.appKey, secret, now + 3, accessToken="nope"), refresh=True) == 1204
    await accounts.update(world.org, acc.appKey, AccountUpdate(enabled=False))
    assert await status(body(acc.appKey, secret, now + 4)) == 1002


async def test_tokens_and_replay_memory_survive_restart(world: World) -> None:
    c = world.clock
    accounts = Accounts(world.store, world.registry, clock=c)
    acc, secret = await accounts.create(world.org, AccountCreate(name="scada"))
    b = body(acc.appKey, secret, _ms(c))
    token, _ = await accounts.get_token(b)
    w2 = world.reopen()
    accounts2 = Accounts(w2.store, w2.registry, clock=c)
    accounts2.load()
    assert accounts2.authenticate(token).appKey == acc.appKey
    with pytest.raises(TokenRefused) as e:
        await accounts2.get_token(b)
    assert e.value.token_status == 1001
    again, _ = await accounts2.get_token(body(acc.appKey, secret, _ms(c) + 5))
    assert again == token
    # pruning forgets used encryptions once their timestamps fall out of the window
    c.t += 601
    await accounts2.prune()
    assert b["encryption"] not in accounts2.nonces
    w2.store.close()
    world.store = SQLiteStore(world.path)
    world.store.start()


async def test_rotate_and_disable_revoke(world: World) -> None:
    c = world.clock
    accounts = Accounts(world.store, world.registry, clock=c)
    acc, secret = await accounts.create(world.org, AccountCreate(name="scada", appKey="mykey"))
    assert acc.appKey == "mykey"
    token, _ = await accounts.get_token(body(acc.appKey, secret, _ms(c)))
    _acc2, secret2 = await accounts.rotate_secret(world.org, acc.appKey)
    assert secret2 != secret
    with pytest.raises(TokenRejected):
        accounts.authenticate(token)
    with pytest.raises(TokenRefused):
        await accounts.get_token(body(acc.appKey, secret, _ms(c) + 1))
    token2, _ = await accounts.get_token(body(acc.appKey, secret2, _ms(c) + 2))
    await accounts.update(world.org, acc.appKey, AccountUpdate(enabled=False))
    with pytest.raises(TokenRejected):
        accounts.authenticate(token2)
    from headrace.errors import Conflict, NotFound

    with pytest.raises(Conflict):
        await accounts.create(world.org, AccountCreate(name="x", appKey="mykey"))
    with pytest.raises(NotFound):
        accounts.account("other-org", "mykey")


# -- online tracker ----------------------------------------------------------------------


async def test_online_offline_and_listeners(world: World) -> None:
    c = world.clock
    tracker = OnlineTracker(world.registry, world.store, clock=c)
    events: list[tuple[str, bool, int, str]] = []
    tracker.listeners.append(lambda e, on, ts, ip: events.append((e.device.deviceKey, on, ts, ip)))

    async def async_listener(e: DeviceEntry, on: bool, ts: int, ip: str) -> None:
        events.append(("async:" + e.device.deviceKey, on, ts, ip))

    tracker.listeners.append(async_listener)
    d0, d1, _ = world.devices
    t0 = _ms(c)
    await tracker.seen([d0, d1], "10.0.0.1")
    assert tracker.is_online(d0) and tracker.is_online(d1)
    assert events == [
        ("d0", True, t0, "10.0.0.1"),
        ("async:d0", True, t0, "10.0.0.1"),
        ("d1", True, t0, "10.0.0.1"),
        ("async:d1", True, t0, "10.0.0.1"),
    ]
    events.clear()
    c.t += 6
    await tracker.seen([d0], "10.0.0.2")  # already online: no event
    assert events == []
    c.t += 5  # d1 quiet for 11 s (> 10), d0 for 5 s
    assert await tracker.sweep() == 1
    assert events == [
        ("d1", False, t0 + 10_000, "10.0.0.1"),
        ("async:d1", False, t0 + 10_000, "10.0.0.1"),
    ]
    assert tracker.is_online(d0) and not tracker.is_online(d1)
    c.t += 6
    assert await tracker.sweep() == 1  # d0 now
    st = tracker.state(d0)
    assert (
        st is not None and not st.online and st.since == t0 + 6_000 + 10_000 and st.ip == "10.0.0.2"
    )
    changes = await tracker.changes(d0, 0, _ms(c) + 1, 100)
    assert [(ch.online, ch.ts) for ch in changes] == [(True, t0), (False, t0 + 16_000)]
    # paging and time windows
    first = await tracker.changes(d0, 0, _ms(c) + 1, 1)
    rest = await tracker.changes(d0, 0, _ms(c) + 1, 100, after=first[0].id)
    assert [ch.online for ch in first + rest] == [True, False]
    assert [ch.online for ch in await tracker.changes(d0, t0 + 1, _ms(c) + 1, 100)] == [False]
    assert [ch.online for ch in await tracker.changes(d0, t0, t0 + 1, 100)] == [True]
    states = await tracker.states(world.org, "", 100)
    assert {s.deviceKey: s.online for s in states} == {"d0": False, "d1": False}
    assert await tracker.states(world.org, "", 100, online=True) == []


async def test_listener_errors_do_not_break_tracking(world: World) -> None:
    tracker = OnlineTracker(world.registry, world.store, clock=world.clock)

    def broken(*_: Any) -> None:
        raise RuntimeError("boom")

    tracker.listeners.append(broken)
    await tracker.seen([world.devices[0]], "")
    assert tracker.is_online(world.devices[0])


async def test_explicit_reports(world: World) -> None:
    tracker = OnlineTracker(world.registry, world.store, clock=world.clock)
    d = world.devices[2]
    assert not await tracker.report(d, False)  # unknown is offline already
    assert await tracker.report(d, True, "1.2.3.4")
    assert not await tracker.report(d, True)
    assert await tracker.report(d, False)
    assert not tracker.is_online(d)


async def test_state_survives_restart_with_checkpoint(world: World) -> None:
    c = world.clock
    tracker = OnlineTracker(world.registry, world.store, clock=c)
    d0, d1, _ = world.devices
    t0 = _ms(c)
    await tracker.seen([d0, d1], "ip")
    c.t += 8
    await tracker.seen([d0], "ip")
    assert await tracker.checkpoint() == 1  # d0's newer last-seen saved
    w2 = world.reopen()
    t2 = OnlineTracker(w2.registry, w2.store, clock=c)
    t2.load()
    d0b, d1b, _ = w2.devices
    assert t2.is_online(d0b) and t2.is_online(d1b)
    c.t += 3  # d1 quiet since t0 (11 s), d0 since t0+8 (3 s)
    assert await t2.sweep() == 1
    st = t2.state(d1b)
    assert st is not None and not st.online and st.since == t0 + 10_000
    assert t2.is_online(d0b)
    w2.store.close()
    world.store = SQLiteStore(world.path)
    world.store.start()


async def test_deleted_device_is_dropped(world: World) -> None:
    c = world.clock
    tracker = OnlineTracker(world.registry, world.store, clock=c)
    d = world.devices[0]
    await tracker.seen([d], "")
    await world.registry.delete_device(world.org, world.product, "d0")
    c.t += 20
    assert await tracker.sweep() == 0
    assert tracker.state(d) is None
