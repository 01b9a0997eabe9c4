"""A client is a channel's client id: another channel's client with the same id has its own
session and never takes over a connection it does not own."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Provisioned, provision


class Paho:
    def __init__(self, hub: HubProcess, env: Provisioned, client_id: str, *, clean: bool):
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.c.username_pw_set(env.username, env.password)
        self.connacks: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self.subacks: queue.Queue[Any] = queue.Queue()
        self.dropped = threading.Event()
        self.c.on_connect = lambda _c, _u, flags, rc, _p: self.connacks.put(
            (flags.session_present, rc)
        )
        self.c.on_subscribe = lambda *_a: self.subacks.put(True)
        self.c.on_disconnect = lambda *_a: self.dropped.set()
        self.c.reconnect_delay_set(30, 60)  # no quick reconnect hiding a takeover
        self.c.connect("127.0.0.1", hub.mqtt_port, keepalive=30)
        self.c.loop_start()
        present, rc = self.connacks.get(timeout=10)
        assert not rc.is_failure, rc
        self.session_present = present

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, 1)
        self.subacks.get(timeout=10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_same_client_id_in_two_channels(shared_hub: HubProcess, shared_api: httpx.Client) -> None:
    a, b = provision(shared_api, devices=1), provision(shared_api, devices=1)
    cid = "victim-" + str(time.monotonic_ns())
    # B leaves a persistent session with a subscription behind
    first = Paho(shared_hub, b, cid, clean=False)
    assert not first.session_present
    first.subscribe(f"/sys/{b.pk}/integration/measurepoint/post_reply")
    first.close()
    # A with the same client id: a new client of A's channel, nothing of B's
    intruder = Paho(shared_hub, a, cid, clean=False)
    assert not intruder.session_present
    # B comes back: its own session is still there, and A's live connection stays
    back = Paho(shared_hub, b, cid, clean=False)
    assert back.session_present
    time.sleep(0.5)
    assert not intruder.dropped.is_set() and not back.dropped.is_set()
    # the same channel and id still takes over, as MQTT says
    again = Paho(shared_hub, b, cid, clean=False)
    assert again.session_present
    assert back.dropped.wait(5)
    assert not intruder.dropped.is_set()
    for p in (intruder, again, back):
        p.close()
