"""Data subscription benchmark: messages/s delivered to enos-subscribe SDK clients, beside
the outbound stream's own read rate for the same records (the limit).

A real ``headrace serve`` process. A time-series job (8 partitions) is created, then N
measurepoint records of 100 devices are ingested over MQTT as real-time integration
requests (10 records each) while no client is connected: the job keeps them. Then:

1. one SDK ``DataClient`` (its own process, the SDK as published: pure-Python protobuf,
   websocket-client) subscribes and iterates until it has N messages;
   messages/s = N / (subscribe -> last message);
2. four SDK clients subscribe in one group of a second job (with the same N) and
   iterate until together they have N;
3. a lean client (websocket-client with headrace's own codec, committing after every
   pull) on a third job: the server's delivery rate when the client costs little;
4. the limit: the hub is stopped, and the outbound stream of a copy of its database is
   read by ``headrace.stream.Stream.read`` with the job's filter, in this process, as
   the group readers read it (records/s, decode and filter included).

    .venv/bin/python bench/subscription.py [--records 100000]

The machine is shared (2 cores, other agents): compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ADMIN_TOKEN, HubProcess

DEVICES = 100
ORG = "bench"
PK = "bp"
MODEL = {"id": "m", "measurepoints": [{"id": "seq", "type": "int"}, {"id": "v", "type": "double"}]}


def setup(hub: HubProcess) -> dict[str, Any]:
    with httpx.Client(
        base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as api:
        api.post("/api/v1/orgs", json={"orgId": ORG, "name": "bench"}).raise_for_status()
        api.post(f"/api/v1/orgs/{ORG}/models", json=MODEL).raise_for_status()
        api.post(
            f"/api/v1/orgs/{ORG}/products", json={"name": "p", "modelId": "m", "productKey": PK}
        ).raise_for_status()
        api.post(
            f"/api/v1/orgs/{ORG}/products/{PK}/devices",
            json=[{"deviceKey": f"dev{i}"} for i in range(DEVICES)],
        ).raise_for_status()
        ch = api.post(f"/api/v1/orgs/{ORG}/channels", json={"name": "c", "products": [PK]}).json()
        sa = api.post(f"/api/v1/orgs/{ORG}/service-accounts", json={"name": "app"}).json()
        # one job per run, so that each starts with all N; "sub-hold" has no client and
        # keeps the records in the stream for the read-rate measurement
        for sub in ("sub-one", "sub-four", "sub-lean", "sub-hold"):
            api.post(
                f"/api/v1/orgs/{ORG}/subscriptions",
                json={
                    "name": sub,
                    "subId": sub,
                    "serviceAccounts": [sa["appKey"]],
                    "partitions": 8,
                },
            ).raise_for_status()
    return {
        "username": ch["username"],
        "password": ch["password"],
        "ak": sa["appKey"],
        "secret": sa["appSecret"],
    }


def ingest(hub: HubProcess, cfg: dict[str, Any], records: int) -> float:
    """Publish ``records`` records over MQTT (QoS 1, 32 in flight); returns records/s."""
    import paho.mqtt.client as mqtt

    topic = f"/sys/{PK}/integration/measurepoint/post"
    per = 10
    requests = records // per
    cond = threading.Condition()
    pending: set[str] = set()
    failed = 0

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        nonlocal failed
        reply = json.loads(msg.payload)
        with cond:
            pending.discard(reply["id"])
            failed += reply["code"] != 200
            cond.notify()

    connected = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-prod")
    c.username_pw_set(cfg["username"], cfg["password"])
    c.max_inflight_messages_set(32)
    c.max_queued_messages_set(0)
    c.on_message = on_message
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", hub.mqtt_port, keepalive=60)
    c.loop_start()
    connected.wait(10)
    c.subscribe(topic + "_reply", qos=0)
    time.sleep(0.3)
    base = int(time.time() * 1000) - 10_000_000
    t0 = time.perf_counter()
    for k in range(requests):
        with cond:
            while len(pending) >= 32:
                cond.wait(1)
            pending.add(f"r{k}")
        recs = [
            {
                "deviceKey": f"dev{(k * per + r) % DEVICES}",
                "time": base + k * per + r,
                "measurepoints": {"seq": k * per + r, "v": r * 0.5},
            }
            for r in range(per)
        ]
        body = {
            "id": f"r{k}",
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": recs,
            "isRealtimeIntegration": True,
        }
        c.publish(topic, json.dumps(body).encode(), qos=1)
    with cond:
        while pending and cond.wait(30):
            pass
    elapsed = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    if failed or pending:
        raise RuntimeError(f"ingest: {failed} failed, {len(pending)} unanswered")
    return requests * per / elapsed


def sdk_worker(
    port: int, cfg: dict[str, Any], sub: str, group: str, counter: Any, done: Any
) -> None:
    """One SDK client: iterate and count until the group has all messages."""
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    import logging

    from enos_subscribe import DataClient

    logging.getLogger().setLevel(logging.WARNING)
    client = DataClient(
        host="127.0.0.1",
        port=port,
        access_key=cfg["ak"],
        access_secret=cfg["secret"],
        auto_commit_interval_seconds=1,
    )
    client.subscribe(sub_id=sub, consumer_group=group)
    for n, _value in enumerate(client, 1):
        if n % 100 == 0:
            with counter.get_lock():
                counter.value += 100
        if done.is_set():
            break
    os._exit(0)


def consume(
    hub: HubProcess, cfg: dict[str, Any], sub: str, group: str, clients: int, expect: int
) -> float:
    counter = mp.Value("q", 0)
    done = mp.Event()
    t0 = time.perf_counter()
    procs = [
        mp.Process(
            target=sdk_worker,
            args=(hub.ports["subscription"], cfg, sub, group, counter, done),
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 600
    # each client reports by the hundred: the group is done within clients*100 of N
    while counter.value < expect - clients * 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    got = counter.value
    done.set()
    for p in procs:
        p.kill()
        p.join()
    if got < expect - clients * 100:
        raise RuntimeError(f"group {group}: {got} of {expect} messages")
    return got / elapsed


def lean_worker(port: int, cfg: dict[str, Any], sub: str, counter: Any, done: Any) -> None:
    """A minimal client (websocket-client and headrace's own codec, no SDK): what the
    server delivers when the client costs little."""
    import websocket

    from headrace.proto.subscription import wire

    ws = websocket.create_connection(f"ws://127.0.0.1:{port}", timeout=30)

    def call(cmd: int, msg: Any) -> wire.TransferPkg:
        ws.send(wire.TransferPkg(cmd, msg.encode()).encode(), websocket.ABNF.OPCODE_BINARY)
        return wire.TransferPkg.decode(ws.recv())

    sign = wire.subscription_sign(cfg["ak"], cfg["secret"], sub)
    assert (
        wire.AuthRsp.decode(call(wire.AUTH_REQ, wire.AuthReq(cfg["ak"], sub, sign, 0)).data).ack
        == 0
    )
    sub_req = wire.SubReq(0, "lean", sub, cfg["ak"], "g")
    assert wire.SubRsp.decode(call(wire.SUB_REQ, sub_req).data).ack == 0
    pull_id = 0
    last: dict[int, int] = {}
    while not done.is_set():
        pull_id += 1
        rsp = wire.PullRsp.decode(call(wire.PULL_REQ, wire.PullReq(pull_id)).data)
        for m in rsp.messages:
            last[m.partition] = m.offset
        if rsp.messages:
            with counter.get_lock():
                counter.value += len(rsp.messages)
            commits = wire.CommitDTO([wire.Commit(sub, p, o) for p, o in last.items()])
            ws.send(
                wire.TransferPkg(wire.COMMIT_REQ, commits.encode()).encode(),
                websocket.ABNF.OPCODE_BINARY,
            )
    os._exit(0)


def consume_lean(hub: HubProcess, cfg: dict[str, Any], sub: str, expect: int) -> float:
    counter = mp.Value("q", 0)
    done = mp.Event()
    t0 = time.perf_counter()
    p = mp.Process(target=lean_worker, args=(hub.ports["subscription"], cfg, sub, counter, done))
    p.start()
    deadline = time.monotonic() + 600
    while counter.value < expect and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    done.set()
    p.kill()
    p.join()
    return counter.value / elapsed


async def stream_rate(db_dir: Path) -> tuple[float, int]:
    """Read the job's records from the stream of a copy of the database, as a group
    reader does (Stream.read with the job's filter, 1000 at a time)."""
    from headrace.state.registry import Registry
    from headrace.store.sqlite.store import SQLiteStore
    from headrace.stream import Filter, Stream

    store = SQLiteStore(db_dir / "headrace.db", synchronous="normal", max_batch=512, readers=1)
    store.start()
    try:
        registry = Registry(store)
        registry.load()
        stream = Stream(store, registry)
        stream.load()
        flt = Filter(orgs=[ORG], sources=["realtime"], kinds=["measurepoint"])
        pos, n = stream.pruned, 0
        t0 = time.perf_counter()
        while True:
            records, upto = await stream.read(pos, 1000, flt)
            n += len(records)
            if upto <= pos:
                break
            pos = upto
        return n / (time.perf_counter() - t0), n
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(Path(tmp) / "data", extra=["--set", "log.level=warning"])
        hub.start()
        try:
            cfg = setup(hub)
            rate_in = ingest(hub, cfg, n)
            print(f"ingested {n} records over MQTT: {rate_in:,.0f} records/s")
            one = consume(hub, cfg, "sub-one", "g", 1, n)
            print(f"1 SDK client:            {one:,.0f} messages/s")
            four = consume(hub, cfg, "sub-four", "g", 4, n)
            print(f"4 SDK clients, 1 group:  {four:,.0f} messages/s")
            lean = consume_lean(hub, cfg, "sub-lean", n)
            print(f"1 lean client (no SDK):  {lean:,.0f} messages/s (the server's side)")
        finally:
            hub.stop()
        copy = Path(tmp) / "copy"
        shutil.copytree(hub.data_dir, copy, ignore=shutil.ignore_patterns("files", "tls"))
        limit, seen = asyncio.run(stream_rate(copy))
        print(
            f"limit: outbound stream read (job filter, in process): {limit:,.0f} records/s ({seen} records)"
        )
        print(
            f"ratios: 1 client {one / limit:.2f} of the stream read rate, "
            f"4 clients {four / limit:.2f} (4 vs 1: {four / one:.2f}x), "
            f"lean client {lean / limit:.2f}"
        )


if __name__ == "__main__":
    main()
