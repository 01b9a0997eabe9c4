"""Raw data through a parsing script vs the same data as JSON, same hub, same run.

Each message is one record of 5 measurepoints: as 20 raw bytes on the up_raw topic
(decoded by a realistic script in the QuickJS sandbox) or as the equivalent JSON request
on the measurepoint topic, live data (each client its own 50 devices, a device's times
one second apart and never repeated). Client processes (paho-mqtt) publish at QoS 1 with many
messages in flight and wait for every reply. Prints messages/s for both paths and the
ratio (target: raw >= 60% of JSON), and the CPU time per message of the hub with its
script workers (steadier than the rate on a shared machine).

    .venv/bin/python bench/raw_scripts.py [--clients 2] [--inflight 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.procstat import cpu_seconds
from tests.conftest import ADMIN_TOKEN, HubProcess

DEVICES = 50  # per client
MAX_CLIENTS = 5  # a device's number is one byte of the frame
POOL = 40_000  # messages per client, sent in turn (more than a run sends: no resends)


SCRIPT = """
function rawDataToJsonStr(rawData) {
  var b = [];
  for (var i = 0; i < rawData.length; i++) b.push(rawData[i] & 0xff);
  function u32(i) { return ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]; }
  var t = 1600000000000 + u32(0) * 1000;
  return JSON.stringify({id: "" + u32(0), version: "1.0", method: "integration.measurepoint.post",
    params: [{deviceKey: "dev" + b[4], time: t, measurepoints: {
      voltage: ((b[5] << 8) | b[6]) / 10, current: ((b[7] << 8) | b[8]) / 100,
      power: u32(9) / 1000, temp: (b[13] << 24 >> 24) + b[14] / 100, status: b[15] }}]});
}
"""


def frame(seq: int) -> bytes:
    """Message ``seq``: client ``seq // 1_000_000`` sends for devices of its own (live
    data: each device has one sender, its times one second apart, never repeated)."""
    dev = (seq // 1_000_000) * DEVICES + seq % DEVICES
    return (
        seq.to_bytes(4, "big")
        + bytes([dev])
        + (2301).to_bytes(2, "big")
        + (1234).to_bytes(2, "big")
        + (2840000).to_bytes(4, "big")
        + bytes([0xFE, 50, 1])
        + b"\x00\x00\x00\x00"
    )


def as_json(seq: int) -> bytes:
    b = frame(seq)
    return json.dumps(
        {
            "id": str(seq),
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": [
                {
                    "deviceKey": f"dev{b[4]}",
                    "time": 1_600_000_000_000 + seq * 1000,
                    "measurepoints": {
                        "voltage": 230.1,
                        "current": 12.34,
                        "power": 2840.0,
                        "temp": -2 + 0.5,
                        "status": 1,
                    },
                }
            ],
        }
    ).encode()


def client_main(
    kind: str,
    client: int,
    port: int,
    pk: str,
    user: str,
    pw: str,
    seconds: float,
    inflight: int,
    out: mp.Queue,
) -> None:
    import paho.mqtt.client as mqtt

    topic = f"/sys/{pk}/integration/" + ("model/up_raw" if kind == "raw" else "measurepoint/post")
    window = threading.Semaphore(inflight)
    replies = 0
    lock = threading.Lock()

    def on_message(_c, _u, _m):  # type: ignore[no-untyped-def]
        nonlocal replies
        with lock:
            replies += 1
        window.release()

    connected = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-bench-{kind}-{client}")
    c.username_pw_set(user, pw)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    c.on_message = on_message
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    connected.wait(10)
    c.subscribe(topic + "_reply", qos=0)
    time.sleep(0.3)
    make = frame if kind == "raw" else as_json
    messages = [make(client * 1_000_000 + i) for i in range(POOL)]
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        window.acquire()
        c.publish(topic, messages[sent % len(messages)], qos=1)
        sent += 1
    for _ in range(inflight):
        window.acquire(timeout=10)
    elapsed = time.perf_counter() - start
    c.loop_stop()
    c.disconnect()
    out.put({"replies": replies, "elapsed": elapsed})


def setup(hub: HubProcess) -> tuple[str, str, str, str]:
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        api.post("/api/v1/orgs", json={"orgId": "rawbench", "name": "raw bench"}).raise_for_status()
        points = [{"id": p, "type": "double"} for p in ("voltage", "current", "power", "temp")]
        points.append({"id": "status", "type": "int"})
        api.post(
            "/api/v1/orgs/rawbench/models", json={"id": "meter", "measurepoints": points}
        ).raise_for_status()
        keys = {}
        for fmt in ("custom", "json"):
            p = api.post(
                "/api/v1/orgs/rawbench/products",
                json={
                    "name": fmt,
                    "modelId": "meter",
                    "dataFormat": fmt,
                    "productKey": f"bench{fmt}",
                },
            )
            p.raise_for_status()
            pk = p.json()["productKey"]
            api.post(
                f"/api/v1/orgs/rawbench/products/{pk}/devices",
                json=[{"deviceKey": f"dev{i}"} for i in range(DEVICES * MAX_CLIENTS)],
            ).raise_for_status()
            keys[fmt] = pk
        api.put(
            f"/api/v1/orgs/rawbench/products/{keys['custom']}/script", content=SCRIPT
        ).raise_for_status()
        ch = api.post(
            "/api/v1/orgs/rawbench/channels", json={"name": "b", "products": list(keys.values())}
        ).json()
    return keys["custom"], keys["json"], ch["username"], ch["password"]


def run(
    kind: str, hub: HubProcess, pk: str, user: str, pw: str, args: argparse.Namespace
) -> tuple[float, float]:
    """(messages/s, CPU microseconds per message of the hub and its script workers)."""
    out: mp.Queue = mp.Queue()
    procs = [
        mp.Process(
            target=client_main,
            args=(kind, i, hub.mqtt_port, pk, user, pw, args.seconds, args.inflight, out),
        )
        for i in range(args.clients)
    ]
    assert hub.proc is not None
    cpu0 = cpu_seconds(hub.proc.pid)
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 60) for _ in procs]
    cpu = cpu_seconds(hub.proc.pid) - cpu0
    for p in procs:
        p.join()
    replies = sum(r["replies"] for r in results)
    return replies / max(r["elapsed"] for r in results), cpu / max(1, replies) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--inflight", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if args.clients > MAX_CLIENTS:
        raise SystemExit(f"--clients must be <= {MAX_CLIENTS}")
    with tempfile.TemporaryDirectory() as d:
        hub = HubProcess(Path(d) / "data", extra=["--set", "log.level=warning"])
        hub.start()
        try:
            raw_pk, json_pk, user, pw = setup(hub)
            json_rate, json_cpu = run("json", hub, json_pk, user, pw, args)
            raw_rate, raw_cpu = run("raw", hub, raw_pk, user, pw, args)
        finally:
            hub.stop()
    print(
        f"clients={args.clients} inflight={args.inflight} QoS1, 1 record x 5 measurepoints per message"
    )
    print(f"JSON path: {json_rate:10,.0f} messages/s   {json_cpu:6.1f} us CPU/message")
    print(
        f"raw path:  {raw_rate:10,.0f} messages/s   {raw_cpu:6.1f} us CPU/message"
        " (20 bytes -> rawDataToJsonStr in QuickJS -> same pipeline)"
    )
    print(
        f"raw/JSON: {raw_rate / json_rate:.0%} (rate), {json_cpu / raw_cpu:.0%} (CPU per message)"
        "   (target >= 60%)"
    )


if __name__ == "__main__":
    main()
