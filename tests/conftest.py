"""Shared fixtures: a real headrace hub in its own process, on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubProcess:
    """``headrace serve`` as a subprocess; restartable on the same data dir and ports."""

    def __init__(self, data_dir: Path, extra: list[str] | None = None):
        self.data_dir = data_dir
        self.http_port = free_port()
        self.mqtt_port = free_port()
        self.mqtt_tls_port = free_port()
        self.noti_port = free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-hub.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "headrace",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--set",
            f"http.port={self.http_port}",
            "--set",
            f"mqtt.port={self.mqtt_port}",
            "--set",
            f"mqtt.tls_port={self.mqtt_tls_port}",
            "--set",
            f"noti.port={self.noti_port}",
            "--set",
            f"admin.token={ADMIN_TOKEN}",
            "--set",
            "log.level=debug",
            *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"hub did not start:\n{self.log()}")

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


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    h = HubProcess(tmp_path / "data")
    h.start()
    yield h
    h.stop()


@pytest.fixture
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with hub.client() as c:
        yield c


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub for a whole test module (tests must use their own org/product names)."""
    h = HubProcess(tmp_path_factory.mktemp("hub") / "data")
    h.start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def shared_api(shared_hub: HubProcess) -> Iterator[httpx.Client]:
    with shared_hub.client() as c:
        yield c
