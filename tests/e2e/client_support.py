"""Helpers for the client SDK / importer end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Provisioned


def all_samples(
    api: httpx.Client, org: str, pk: str, device: str, start: int = 0, end: int | None = None
) -> list[dict[str, Any]]:
    """Every stored sample of a device, paging through the query API with nextCursor."""
    out: list[dict[str, Any]] = []
    cursor = ""
    params: dict[str, Any] = {"start": start, "limit": 10000}
    if end is not None:
        params["end"] = end
    while True:
        if cursor:
            params["cursor"] = cursor
        r = api.get(
            f"/api/v1/orgs/{org}/products/{pk}/devices/{device}/measurepoints", params=params
        )
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["items"]
        cursor = body["nextCursor"]
        if not cursor:
            return out


def broker(hub: HubProcess, tls: bool = False) -> str:
    if tls:
        return f"mqtts://127.0.0.1:{hub.mqtt_tls_port}"
    return f"mqtt://127.0.0.1:{hub.mqtt_port}"


def ca_file(hub: HubProcess) -> str:
    return str(hub.data_dir / "tls" / "server-cert.pem")


def import_args(hub: HubProcess, env: Provisioned, file: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "headrace",
        "import",
        str(file),
        "--broker",
        broker(hub),
        "--username",
        env.username,
        "--password",
        env.password,
        "--product",
        env.pk,
        "--no-progress",
        *extra,
    ]


def run_import(
    hub: HubProcess, env: Provisioned, file: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        import_args(hub, env, file, *extra), capture_output=True, text=True, timeout=timeout
    )


def start_import(
    hub: HubProcess, env: Provisioned, file: Path, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            import_args(hub, env, file, *extra), stdout=f, stderr=f, preexec_fn=_default_sigint
        )


def _default_sigint() -> None:
    """The importer takes Ctrl-C as a person's: a test runner started in the background
    of a shell ignores SIGINT, and an ignored signal is inherited across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")
