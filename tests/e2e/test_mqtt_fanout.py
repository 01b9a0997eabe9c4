"""A subscriber that never reads cannot make the hub hold every reply copy for it: it
gets no more copies once its socket is backed up (counted and logged), the requester is
answered as ever, and the hub's memory stays flat."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import provision

REQUESTS = 300
UNKNOWN = 4500  # unknown devices per request: a reply of ~0.45 MB listing each


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_subscriber_that_never_reads(hub: HubProcess, api: httpx.Client) -> None:
    env = provision(api, devices=1)
    reply_topic = f"/sys/{env.pk}/integration/measurepoint/post_reply"
    topic = reply_topic.removesuffix("_reply")
    # X subscribes to the channel's replies, then never reads again
    x = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x-" + uuid.uuid4().hex[:6])
    x.username_pw_set(env.username, env.password)
    subscribed = threading.Event()
    x.on_subscribe = lambda *_a: subscribed.set()
    x.connect("127.0.0.1", hub.mqtt_port, keepalive=0)
    x.subscribe(reply_topic, 1)
    deadline = time.monotonic() + 10
    while not subscribed.is_set() and time.monotonic() < deadline:
        x.loop(0.05)
    assert subscribed.is_set()
    # Y publishes without subscribing (as mosquitto_pub does): copies go to X
    y = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="y-" + uuid.uuid4().hex[:6])
    y.username_pw_set(env.username, env.password)
    y.max_inflight_messages_set(32)
    y.max_queued_messages_set(0)
    y.connect("127.0.0.1", hub.mqtt_port)
    y.loop_start()
    assert hub.proc is not None
    start = rss_mb(hub.proc.pid)
    items = [{"deviceKey": f"n{i}", "measurepoints": {"temp": 1.0}} for i in range(UNKNOWN)]
    try:
        infos = []
        for n in range(REQUESTS):
            body = {"id": f"r{n}", "version": "1.0", "method": "integration.measurepoint.post"}
            payload = json.dumps({**body, "params": items}).encode()
            infos.append(y.publish(topic, payload, 1))
        for info in infos:
            info.wait_for_publish(60)  # every request answered (PUBACK after it was refused)
            assert info.is_published()
        peak = rss_mb(hub.proc.pid)
    finally:
        y.disconnect()
        y.loop_stop()
        x.socket().close()
    assert peak - start < 100, f"hub RSS {start:.0f} -> {peak:.0f} MiB"
    assert "reply copies not sent to subscribers that do not read" in hub.log()
