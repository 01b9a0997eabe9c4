"""RabbitMQ 3.10 as the peer of bench/noti_push.py: the same two measurements, same machine.

A private ``rabbitmq-server`` (Debian's package, ``/usr/lib/rabbitmq/bin``) is started in
a temporary directory on free ports (AMQP over TLS only, its own epmd port, node name,
cookie and database), and stopped at the end. The publisher is aiormq (a lean asyncio
AMQP 0-9-1 client), the consumer as lean as the noti bench's (pamqp frames over an
asyncio TLS stream): persistent messages (delivery_mode 2), publisher confirms awaited in
batches of 10 (up to 32 batches in flight, as the MQTT producer keeps 32 requests), one consumer process acking every delivery (basic.qos prefetch as given),
over TLS. Queues: a durable classic queue and a quorum queue (which, like headrace,
fsyncs a message before it is delivered).

- ``throughput``: N messages published while no consumer is attached, then the consumer
  attaches and acks every delivery; messages/s = N / (consume -> last delivery).
- ``latency``: the consumer is attached; the publisher sends RATE messages/s (batches of
  10 confirmed together), each carrying its publish time; per message, delivery -
  publish: p50/p99.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
BODY_PAD = "x" * 120  # about the size of a device_status_kv event of the headrace run
INFLIGHT = 32  # batches of 10 awaiting their confirms (the MQTT producer's 32 requests)


def available() -> bool:
    return SERVER.exists() and shutil.which("erl") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RabbitMQ:
    """A private rabbitmq-server in ``root`` (a temporary directory)."""

    def __init__(self, root: Path) -> None:
        import trustme

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.cafile = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        self.port = _free_port()
        conf = root / "rabbitmq.conf"
        conf.write_text(
            "listeners.tcp = none\n"
            f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
            f"ssl_options.cacertfile = {self.cafile}\n"
            f"ssl_options.certfile = {root / 'cert.pem'}\n"
            f"ssl_options.keyfile = {root / 'key.pem'}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
            "loopback_users = none\n"
        )
        (root / "enabled_plugins").write_text("[].\n")
        self.node = f"headrace-bench-{os.getpid()}@localhost"
        self.env = {
            **os.environ,
            "HOME": str(root),  # the Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "ERL_EPMD_PORT": str(_free_port()),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(root / "pid"),
            "RABBITMQ_LOGS": "-",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"amqps://guest:guest@localhost:{self.port}/"

    def start(self, timeout: float = 120) -> None:
        self.log = open(self.root / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(SERVER)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.tail()}")
            if b"Server startup complete" in (self.root / "server.log").read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"rabbitmq-server did not start: {self.tail()}")

    def tail(self) -> str:
        return (self.root / "server.log").read_bytes()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc is None:
            return
        subprocess.run(
            [str(CTL), "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=60
        )
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()


# -- clients (each in its own process) ---------------------------------------------------------


def _ssl(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


async def _connect(url: str, cafile: str) -> Any:
    import aiormq

    return await aiormq.connect(url, context=_ssl(cafile))


async def _declare(url: str, cafile: str, queue: str, kind: str) -> None:
    conn = await _connect(url, cafile)
    ch = await conn.channel()
    await ch.queue_declare(queue, durable=True, arguments={"x-queue-type": kind})
    await conn.close()


async def _publish(url: str, cafile: str, queue: str, n: int, rate: float) -> dict[str, float]:
    import aiormq
    from pamqp.commands import Basic

    conn = await _connect(url, cafile)
    ch = await conn.channel(publisher_confirms=True)
    props = aiormq.spec.Basic.Properties(delivery_mode=2, content_type="application/json")
    start = time.perf_counter()
    confirms: list[float] = []
    window = asyncio.Semaphore(INFLIGHT)

    async def batch(k: int, now: float) -> None:
        t0 = time.perf_counter()
        try:
            confirmed = await asyncio.gather(
                *(
                    ch.basic_publish(
                        json.dumps({"seq": k + i, "t": now, "pad": BODY_PAD}).encode(),
                        routing_key=queue,
                        properties=props,
                        wait=False,
                    )
                    for i in range(min(10, n - k))
                )
            )
            for f in confirmed:
                assert isinstance(f, Basic.Ack), f
            confirms.append(time.perf_counter() - t0)
        finally:
            window.release()

    tasks = []
    for k in range(0, n, 10):
        if rate:
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await window.acquire()
        tasks.append(asyncio.ensure_future(batch(k, time.time())))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await conn.close()
    confirms.sort()
    return {
        "elapsed": elapsed,
        "confirm_p50": confirms[len(confirms) // 2] * 1000,
        "confirm_p99": confirms[min(len(confirms) - 1, len(confirms) * 99 // 100)] * 1000,
    }


async def _consume_lean(
    url: str, cafile: str, queue: str, prefetch: int, expect: int, out: Any
) -> None:
    """The consumer as lean as the noti bench's: AMQP frames with pamqp over an asyncio
    TLS stream, every delivery acked (one basic.ack each, those of one read written
    together), no task or message object per delivery."""
    from pamqp import commands as C
    from pamqp import frame
    from pamqp.body import ContentBody
    from pamqp.header import ContentHeader, ProtocolHeader

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_ssl(cafile), server_hostname="localhost", limit=1 << 22
    )
    buf = b""

    async def next_frame() -> Any:
        nonlocal buf
        while True:
            if len(buf) >= 7:
                size = int.from_bytes(buf[3:7], "big") + 8
                if len(buf) >= size:
                    _n, _ch, fr = frame.unmarshal(buf[:size])
                    buf = buf[size:]
                    return fr
            chunk = await reader.read(1 << 18)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk

    writer.write(frame.marshal(ProtocolHeader(), 0))
    await next_frame()  # Connection.Start
    writer.write(frame.marshal(C.Connection.StartOk(response="\0guest\0guest"), 0))
    tune = await next_frame()
    writer.write(frame.marshal(C.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0))
    writer.write(frame.marshal(C.Connection.Open(virtual_host="/"), 0))
    await next_frame()  # OpenOk
    writer.write(frame.marshal(C.Channel.Open(), 1))
    await next_frame()
    writer.write(frame.marshal(C.Basic.Qos(prefetch_count=prefetch), 1))
    await next_frame()
    t_start = time.perf_counter()
    writer.write(frame.marshal(C.Basic.Consume(queue=queue), 1))
    await next_frame()  # ConsumeOk
    out.put(("ready", time.time()))
    lat: list[float] = []
    count = 0
    tag = 0
    while count < expect:
        chunk = await reader.read(1 << 18)
        if not chunk:
            break
        now = time.time()
        buf += chunk
        acks = []
        while len(buf) >= 7:
            size = int.from_bytes(buf[3:7], "big") + 8
            if len(buf) < size:
                break
            _n, _ch, fr = frame.unmarshal(buf[:size])
            buf = buf[size:]
            if isinstance(fr, C.Basic.Deliver):
                tag = fr.delivery_tag
            elif isinstance(fr, ContentBody):
                body = fr.value
                i = body.find(b'"t": ')
                if i >= 0:
                    j = body.index(b",", i)
                    lat.append(now - float(body[i + 5 : j]))
                acks.append(frame.marshal(C.Basic.Ack(delivery_tag=tag), 1))
                count += 1
            elif not isinstance(fr, ContentHeader):
                pass
        if acks:
            writer.write(b"".join(acks))
            await writer.drain()
    t_last = time.perf_counter()
    out.put(("done", {"count": count, "start_to_last": t_last - t_start, "lat": lat}))
    await asyncio.sleep(0.5)
    writer.close()


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _publisher_main(url: str, cafile: str, queue: str, n: int, rate: float, out: Any) -> None:
    out.put(_run(_publish(url, cafile, queue, n, rate)))


def _consumer_main(url: str, cafile: str, queue: str, prefetch: int, expect: int, out: Any) -> None:
    _run(_consume_lean(url, cafile, queue, prefetch, expect, out))


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


def throughput(rmq: RabbitMQ, kind: str, n: int, prefetch: int = 1000) -> dict[str, float]:
    queue = f"tp-{kind}"
    _run(_declare(rmq.url, str(rmq.cafile), queue, kind))
    q: Any = mp.Queue()
    t0 = time.perf_counter()
    p = mp.Process(target=_publisher_main, args=(rmq.url, str(rmq.cafile), queue, n, 0, q))
    p.start()
    pub = q.get(timeout=900)
    p.join()
    fill = n / (time.perf_counter() - t0)
    cq: Any = mp.Queue()
    c = mp.Process(target=_consumer_main, args=(rmq.url, str(rmq.cafile), queue, prefetch, n, cq))
    c.start()
    assert cq.get(timeout=60)[0] == "ready"
    _kind, done = cq.get(timeout=900)
    c.join()
    assert done["count"] == n, done
    return {"rate": n / done["start_to_last"], "ingest": fill, **pub}


def latency(rmq: RabbitMQ, kind: str, rate: int, seconds: float) -> dict[str, float]:
    queue = f"lat-{kind}"
    _run(_declare(rmq.url, str(rmq.cafile), queue, kind))
    n = int(rate * seconds)
    cq: Any = mp.Queue()
    c = mp.Process(target=_consumer_main, args=(rmq.url, str(rmq.cafile), queue, 1000, n, cq))
    c.start()
    assert cq.get(timeout=60)[0] == "ready"
    q: Any = mp.Queue()
    p = mp.Process(target=_publisher_main, args=(rmq.url, str(rmq.cafile), queue, n, rate, q))
    p.start()
    pub = q.get(timeout=900)
    p.join()
    _kind, done = cq.get(timeout=900)
    c.join()
    lat = sorted(done["lat"])
    return {
        "events": len(lat),
        "offered": n / pub["elapsed"],
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
        "max": lat[-1] * 1000,
        "confirm_p50": pub["confirm_p50"],
        "confirm_p99": pub["confirm_p99"],
    }
