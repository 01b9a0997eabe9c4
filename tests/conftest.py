"""Shared fixtures: a real headrace hub in its own process, on loopback ports it picks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# the enos-subscribe SDK's generated protobuf code (protoc 2.x era) loads only with the
# pure-Python protobuf runtime; set before anything imports google.protobuf
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
# the hubs and CLI runs the tests start (hundreds) each import headrace afresh: with
# PYTHONDONTWRITEBYTECODE set (as on this machine and CI) none of them could cache its
# bytecode, and every start compiled all of src/headrace again (~0.5 s of ~2.5 s). The
# children write it (to the ignored __pycache__ folders); this process is unaffected
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    """A port nothing listens on right now (for clients that must fail to connect)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubProcess:
    """``headrace serve`` as a subprocess, every listener on a port the system picks.

    The hub writes the ports it bound to ``<data_dir>/ports.json`` once every listener is
    up (and ``/healthz`` answers 200 only then); the harness reads them from there, so no
    port is guessed. A restart asks for the same ports again, so that clients reconnect to
    the address they know.
    """

    PORTS = ("http", "mqtt", "mqtt_tls", "noti", "subscription", "subscription_tls")

    def __init__(self, data_dir: Path, extra: list[str] | None = None, *, https: bool = False):
        self.data_dir = data_dir
        self.scheme = "https" if https else "http"  # https: started with http.tls_enabled
        self.ports: dict[str, int] = {}
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-hub.log"

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def mqtt_port(self) -> int:
        return self.ports["mqtt"]

    @property
    def mqtt_tls_port(self) -> int:
        return self.ports["mqtt_tls"]

    @property
    def noti_port(self) -> int:
        return self.ports["noti"]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        # a restart binds the same ports again; one taken meanwhile by another process
        # makes the hub exit at start, and the next attempt waits for it to be free
        for attempt in range(20):
            if self._start_once():
                return
            time.sleep(0.25 * (attempt + 1))
        raise RuntimeError(f"hub could not bind its ports {self.ports}:\n{self.log()}")

    def _start_once(self) -> bool:
        ports_file = self.data_dir / "ports.json"
        ports_file.unlink(missing_ok=True)
        port_args: list[str] = []
        for name in self.PORTS:
            key = {"mqtt_tls": "mqtt.tls_port", "subscription_tls": "subscription.tls_port"}.get(
                name, f"{name}.port"
            )
            port_args += ["--set", f"{key}={self.ports.get(name, 0)}"]
        args = [
            sys.executable,
            "-m",
            "headrace",
            "serve",
            "--data-dir",
            str(self.data_dir),
            *port_args,
            "--set",
            f"admin.token={ADMIN_TOKEN}",
            "--set",
            "log.level=debug",
            *(["--set", "http.tls_enabled=true"] if self.scheme == "https" else []),
            *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
        with open(self.log_path, "ab") as log:
            mark = log.tell()
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.log_path.read_bytes()[mark:].decode(errors="replace")
                if self.ports and ("address already in use" in out or "cannot listen" in out):
                    self.proc = None
                    return False
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()}")
            if ports_file.exists():
                self.ports = json.loads(ports_file.read_text())
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"hub did not write ports.json:\n{self.log()}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5, verify=False).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"hub did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )


def running_hub(data_dir: Path, extra: list[str] | None = None) -> Iterator[HubProcess]:
    """A fixture's hub: started, yielded, stopped (``extra``: more ``serve`` arguments)."""
    h = HubProcess(data_dir, extra)
    h.start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="session")
def hub_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of a default hub that was started once and stopped: migrated, with its
    first operator (``admin``, its password file), its self-signed TLS pair. A fresh data
    dir costs each start ~0.7 s more (the operator's scrypt hash alone ~0.45 s); the
    first start itself is tested by the hubs made without it (the tests' own
    ``HubProcess``es: ``tests/e2e/test_cli.py``, ``test_harness.py``; ``test_accounts.py``'s
    ``shared_hub``)."""
    data = tmp_path_factory.mktemp("hub-template") / "data"
    h = HubProcess(data)
    h.start()
    assert h.stop() == 0, h.log()
    return data


def from_template(template: Path, data_dir: Path) -> Path:
    """``data_dir`` (which must not exist) as a copy of ``template`` (``hub_template``):
    a hub started on it starts like one restarted."""
    shutil.copytree(template, data_dir)
    return data_dir


@pytest.fixture
def hub(tmp_path: Path, hub_template: Path) -> Iterator[HubProcess]:
    """A hub of the test's own, on a data dir as a default hub leaves it (``hub_template``)."""
    yield from running_hub(from_template(hub_template, tmp_path / "data"))


@pytest.fixture
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with hub.client() as c:
        yield c


@pytest.fixture(scope="module")
def shared_hub(
    tmp_path_factory: pytest.TempPathFactory, hub_template: Path
) -> Iterator[HubProcess]:
    """One hub for a whole test module (tests must use their own org/product names), on a
    data dir as a default hub leaves it (``hub_template``)."""
    yield from running_hub(from_template(hub_template, tmp_path_factory.mktemp("hub") / "data"))


@pytest.fixture(scope="module")
def shared_api(shared_hub: HubProcess) -> Iterator[httpx.Client]:
    with shared_hub.client() as c:
        yield c
