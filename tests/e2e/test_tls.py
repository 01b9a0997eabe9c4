"""TLS with the operator's own certificate (``tls.cert_file``/``tls.key_file``), issued by a
CA made by trustme: clients that verify the chain and the host name connect to the MQTT
TLS and noti ports; clients that do not trust the CA are refused."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import trustme

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import mp_request, provision


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[HubProcess]:
    d = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = d / "server.pem", d / "server.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    h = HubProcess(
        d / "data", ["--set", f"tls.cert_file={cert_file}", "--set", f"tls.key_file={key_file}"]
    )
    h.start()
    yield h
    h.stop()


def _verified(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.mark.parametrize("listener", ["mqtt_tls", "noti"])
def test_the_configured_certificate_verifies(
    tls_hub: HubProcess, ca: trustme.CA, listener: str
) -> None:
    port = tls_hub.ports[listener]
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        _verified(ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
        assert "trustme" in str(issuer).lower()
    # no self-signed pair was made: the configured one is used
    assert not (tls_hub.data_dir / "tls").exists()


@pytest.mark.parametrize("listener", ["mqtt_tls", "noti"])
def test_a_client_without_the_ca_is_refused(tls_hub: HubProcess, listener: str) -> None:
    ctx = ssl.create_default_context()  # the system's roots only
    with (
        socket.create_connection(("127.0.0.1", tls_hub.ports[listener])) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def test_paho_over_verified_tls(tls_hub: HubProcess, ca: trustme.CA, tmp_path: Path) -> None:
    with tls_hub.client() as api:
        env = provision(api, devices=1)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-" + uuid.uuid4().hex[:6])
    c.username_pw_set(env.username, env.password)
    c.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
    replies: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()
    c.on_message = lambda _c, _u, m: replies.put(bytes(m.payload))
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect("127.0.0.1", tls_hub.mqtt_tls_port)
    c.loop_start()
    try:
        t = f"/sys/{env.pk}/integration/measurepoint/post"
        c.subscribe(t + "_reply", 1)
        assert subscribed.wait(10)
        info = c.publish(
            t, mp_request("tls1", [{"deviceKey": "dev0", "measurepoints": {"temp": 1.0}}]), 1
        )
        info.wait_for_publish(10)
        assert b'"code":200' in replies.get(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()
