"""A server-sent events reader for the tests: httpx streaming in a thread, events parsed
as the EventSource spec says (fields, blank line ends an event, ``:`` comments)."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
from typing import Any

import httpx

from tests.conftest import HubProcess
from tests.e2e.mqtt_support import Provisioned


class SSE:
    def __init__(self, url: str, *, headers: dict[str, str] | None = None, **kw: Any):
        self.url = url
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None), **kw)
        self._headers = headers or {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(30), "the stream did not open"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self._headers) as r:
                self.response = r
                if r.status_code != 200:
                    r.read()
                self.opened.set()
                if r.status_code != 200:
                    return
                event: dict[str, Any] = {}
                for line in r.iter_lines():
                    if line == "":
                        if event:
                            self.events.put(event)
                        event = {}
                    elif line.startswith(":"):
                        self.events.put({"comment": line[1:].strip()})
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        event[name] = event[name] + "\n" + value if name in event else value
        except BaseException as e:  # closed from the test's thread, or a real failure
            self.error = e
            self.opened.set()
        finally:
            self.ended.set()

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status_code

    def next(self, timeout: float = 15, comments: bool = False) -> dict[str, Any]:
        """The next event (``comments``: comment lines too)."""
        while True:
            e = self.events.get(timeout=timeout)
            if comments or "comment" not in e:
                return e

    def records(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The next ``n`` record events' data (gap events fail the test)."""
        out = []
        while len(out) < n:
            e = self.next(timeout)
            if "data" not in e:
                continue  # retry: line
            assert e.get("event", "message") == "message", e
            data = json.loads(e["data"])
            assert int(e["id"]) == data["id"]
            out.append(data)
        return out

    def quiet(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        """The record events that arrive within ``seconds`` (expected: none)."""
        got = []
        try:
            while True:
                e = self.next(seconds)
                if "data" in e:
                    got.append(e)
        except queue.Empty:
            return got

    def close(self) -> None:
        """Close the connection, as a browser leaving the page does: shut down at once, so
        that the hub sees the end and the reader thread's blocked read returns (closing
        the client alone did neither until the next heartbeat; this waited 1 s for it)."""
        stream = self.response.extensions.get("network_stream") if self.response else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the hub
                pass
        self._client.close()
        self.ended.wait(5)


def stream_path(env: Provisioned, query: str = "") -> str:
    return f"/api/v1/orgs/{env.org}/channels/{env.channel_id}/logs/stream" + (
        f"?{query}" if query else ""
    )


def mqtt_publish(hub: HubProcess, env: Provisioned, payloads: list[bytes]) -> None:
    """Publish with Debian's mosquitto_pub, one message per line, one connection, QoS 1."""
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-u",
            env.username,
            "-P",
            env.password,
            "-i",
            "tail-test",
            "-q",
            "1",
            "-t",
            f"/sys/{env.pk}/integration/measurepoint/post",
            "-l",
        ],
        input=b"\n".join(payloads) + b"\n",
        check=True,
        timeout=120,
    )


def stored_log(api: httpx.Client, env: Provisioned, after: int = 0) -> list[dict[str, Any]]:
    """The channel's stored records with ids above ``after``, oldest first."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.get(f"/api/v1/orgs/{env.org}/channels/{env.channel_id}/logs", params=params)
        page.raise_for_status()
        body = page.json()
        items += [r for r in body["items"] if r["id"] > after]
        cursor = body["nextCursor"]
        if cursor is None or (body["items"] and body["items"][-1]["id"] <= after):
            break
    return sorted(items, key=lambda r: r["id"])
