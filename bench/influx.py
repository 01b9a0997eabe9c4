"""An InfluxDB 1.x server for the benchmarks' peer figures (``influxd`` of the Debian
package ``influxdb``): its own config and data in a temp dir, on free loopback ports,
the WAL fsynced on every write (``wal-fsync-delay = "0s"``), so that an answered write
is as durable as a headrace reply with ``store.synchronous=full``.

Installs nothing: ``Influx.available()`` says whether ``influxd`` is on the PATH.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from tests.conftest import free_port

CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  trace-logging-enabled = false
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""


class Influx:
    def __init__(self, directory: Path):
        self.dir = directory
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("influxd") is not None

    @staticmethod
    def version() -> str:
        out = subprocess.run(["influxd", "version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.dir / "influxdb.conf"
        conf.write_text(CONFIG.format(d=self.dir, rpc=free_port(), http=self.port))
        log = open(self.dir / "influxd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["influxd", "run", "-config", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/ping")
                if c.getresponse().status == 204:
                    c.close()
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"influxd did not start; see {self.dir / 'influxd.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def query(
        self, q: str, db: str = "bench", conn: http.client.HTTPConnection | None = None
    ) -> Any:
        c = conn or self.conn()
        params = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"})
        c.request("POST", "/query?" + params)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"influx query {q!r}: {r.status} {body[:300]!r}")
        return json.loads(body)

    def write(
        self, body: bytes, db: str = "bench", conn: http.client.HTTPConnection | None = None
    ) -> None:
        c = conn or self.conn()
        c.request("POST", f"/write?db={db}&precision=ms", body=body)
        r = c.getresponse()
        data = r.read()
        if r.status != 204:
            raise RuntimeError(f"influx write: {r.status} {data[:300]!r}")

    def disk_bytes(self) -> int:
        total = 0
        for sub in ("data", "wal"):
            for p in (self.dir / sub).rglob("*"):
                if p.is_file():
                    total += p.stat().st_size
        return total


def lines(device: int, base: int, records: int, points: int, value: Any) -> bytes:
    """Line protocol of one request: ``records`` records of ``points`` fields of one device
    (tag), times ``base + r * 1000`` ms; ``value(r, i)`` gives the field values."""
    return "".join(
        f"m,device=dev{device} "
        + ",".join(f"p{i}={value(r, i)!r}" for i in range(points))
        + f" {base + r * 1000}\n"
        for r in range(records)
    ).encode()
