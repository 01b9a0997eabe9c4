"""Helpers of the data subscription tests: jobs through the admin API, the enos-subscribe
SDK in a subprocess (``sdk_client.py``), and a blocking exchange with the SDK's own
protobuf classes for the refusals the SDK itself only logs."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import HubProcess

SDK_CLIENT = Path(__file__).with_name("sdk_client.py")


def create_job(api: httpx.Client, org: str, app_key: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "sub", "serviceAccounts": [app_key], **fields}
    r = api.post(f"/api/v1/orgs/{org}/subscriptions", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def job(api: httpx.Client, org: str, sub_id: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/orgs/{org}/subscriptions/{sub_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_members(api: httpx.Client, org: str, sub_id: str, group: str, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for g in job(api, org, sub_id).get("groups", []):
            if g["group"] == group and len(g["members"]) == n:
                return dict(g)
        time.sleep(0.05)
    raise AssertionError(f"group {group} never had {n} members: {job(api, org, sub_id)}")


def wait_committed(
    api: httpx.Client, org: str, sub_id: str, group: str, offsets: dict[int, int]
) -> None:
    """Until the group's committed offsets reach ``offsets`` (partition -> offset)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for g in job(api, org, sub_id).get("groups", []):
            if g["group"] == group:
                got = {p["partition"]: p["committed"] for p in g["partitions"]}
                if all(got.get(p, -1) >= o for p, o in offsets.items()):
                    return
        time.sleep(0.05)
    raise AssertionError(f"offsets {offsets} never committed: {job(api, org, sub_id)}")


class SDKClient:
    """One enos-subscribe client (``DataClient`` by default) in its own process."""

    def __init__(
        self,
        hub: HubProcess,
        app_key: str,
        secret: str,
        sub_id: str,
        group: str = "DefaultConsumerGroup",
        cls: str = "DataClient",
    ) -> None:
        self.log_path = hub.data_dir.parent / f"sdk-{sub_id}-{group}-{id(self):x}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(SDK_CLIENT),
                cls,
                str(hub.ports["subscription"]),
                app_key,
                secret,
                sub_id,
                group,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=str(Path(__file__).parents[2]),
        )
        self.values: queue.Queue[str] = queue.Queue()
        self.commits: list[list[list[Any]]] = []
        self.subscribed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.subscribed.wait(60), self.log()[-4000:]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            obj = json.loads(line)
            if "value" in obj:
                self.values.put(obj["value"])
            elif "commit" in obj:
                self.commits.append(obj["commit"])
            elif "subscribed" in obj:
                self.subscribed.set()

    def ask(self, n: int) -> None:
        """Let the client iterate ``n`` more times (committing what it returned before)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"next {n}\n".encode())
        self.proc.stdin.flush()

    def take(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        """``n`` values (decoded), asking for them first."""
        self.ask(n)
        return [json.loads(self.values.get(timeout=timeout)) for _ in range(n)]

    def more(self, timeout: float) -> list[str]:
        """Values that arrive within ``timeout`` seconds (after an ``ask``)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.values.get(timeout=left))
            except queue.Empty:
                return out

    def ready(self) -> list[str]:
        """The values that have arrived, without waiting."""
        out = []
        while True:
            try:
                out.append(self.values.get_nowait())
            except queue.Empty:
                return out

    def log(self) -> str:
        """The client's whole log (the SDK logs its refusals at INFO)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # a broken pipe to a killed process
                    pass
        self._log.close()


def gather(clients: list[SDKClient], n: int, timeout: float, quiet: float) -> list[list[str]]:
    """What each client gets (after an ``ask``) until together they have ``n`` values or
    ``timeout`` seconds pass, then for ``quiet`` seconds more: a value past the ``n``
    expected (one twice, one that must not come) is in the answer. (Waiting a fixed time
    instead cost the whole timeout every time.)"""
    got: list[list[str]] = [[] for _ in clients]
    end = time.monotonic() + timeout
    while sum(map(len, got)) < n and time.monotonic() < end:
        time.sleep(0.02)
        for out, c in zip(got, clients, strict=True):
            out += c.ready()
    end = time.monotonic() + quiet
    while time.monotonic() < end:
        time.sleep(0.02)
        for out, c in zip(got, clients, strict=True):
            out += c.ready()
    for out, c in zip(got, clients, strict=True):
        out += c.ready()
    return got


def points_of(value: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(assetId, time, points) of a time-series message value (points decoded)."""
    [item] = value["payload"]
    assert isinstance(item["points"], str)  # a JSON string, as EnOS sends it
    return item["assetId"], item["time"], json.loads(item["points"])
