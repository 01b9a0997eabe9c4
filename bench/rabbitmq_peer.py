"""RabbitMQ 3.10 as the peer of bench/noti_push.py: the same two measurements, same machine.

A private ``rabbitmq-server`` (Debian's package, ``/usr/lib/rabbitmq/bin``) is started in
a temporary directory on free ports (AMQP over TLS only, its own epmd port, node name,
cookie and database), and stopped at the end. Publisher and consumer are as lean as the
noti bench's client (AMQP frames made by hand or with pamqp over an asyncio TLS stream):
persistent messages (delivery_mode 2), publisher confirms for every batch of 10, one
consumer process acking every delivery (basic.qos prefetch as given), over TLS. Queues:
a durable classic queue and a quorum queue (which, like headrace, fsyncs a message
before it is delivered).

- ``throughput``: N messages published while no consumer is attached, then the consumer
  attaches and acks every delivery; messages/s = N / (consume -> last delivery).
- ``latency``: the consumer is attached; open-loop publisher processes send RATE
  messages/s between them (a batch of 10 when due, whatever the confirms), each message
  carrying its publish time; per message, delivery - publish: p50/p99.
"""

from __future__ import annotations

import asyncio
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


class _Lean:
    """An AMQP 0-9-1 connection as lean as the noti bench's client: pamqp frames over an
    asyncio TLS stream, channel 1 open."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = b""

    @classmethod
    async def open(cls, url: str, cafile: str) -> _Lean:
        from pamqp import commands as C
        from pamqp import frame
        from pamqp.header import ProtocolHeader

        port = int(url.rsplit(":", 1)[1].split("/")[0])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=_ssl(cafile), server_hostname="localhost", limit=1 << 22
        )
        self = cls(reader, writer)
        writer.write(frame.marshal(ProtocolHeader(), 0))
        await self.next_frame()  # Connection.Start
        writer.write(frame.marshal(C.Connection.StartOk(response="\0guest\0guest"), 0))
        tune = await self.next_frame()
        writer.write(frame.marshal(C.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0))
        writer.write(frame.marshal(C.Connection.Open(virtual_host="/"), 0))
        await self.next_frame()  # OpenOk
        writer.write(frame.marshal(C.Channel.Open(), 1))
        await self.next_frame()
        return self

    def frames(self) -> list[Any]:
        """The complete frames in the buffer."""
        from pamqp import frame

        out = []
        buf = self.buf
        while len(buf) >= 7:
            size = int.from_bytes(buf[3:7], "big") + 8
            if len(buf) < size:
                break
            out.append(frame.unmarshal(buf[:size])[2])
            buf = buf[size:]
        self.buf = buf
        return out

    async def read(self) -> list[Any]:
        chunk = await self.reader.read(1 << 18)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk
        return self.frames()

    async def next_frame(self) -> Any:
        from pamqp import frame

        while True:
            buf = self.buf
            if len(buf) >= 7:
                size = int.from_bytes(buf[3:7], "big") + 8
                if len(buf) >= size:
                    self.buf = buf[size:]
                    return frame.unmarshal(buf[:size])[2]
            chunk = await self.reader.read(1 << 18)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk


def _body(seq: int, t: float) -> bytes:
    """A message of fixed size (the time at a fixed width): one header frame for all."""
    return b'{"seq": "%010d", "t": %017.6f, "pad": "%s"}' % (seq, t, BODY_PAD.encode())


async def _publish(
    url: str, cafile: str, queue: str, n: int, rate: float, start_wall: float | None = None
) -> dict[str, Any]:
    """Publish ``n`` persistent messages in batches of 10 with publisher confirms.

    ``rate`` 0: closed loop, INFLIGHT batches awaiting their confirms (the fill).
    ``rate`` > 0 (messages/s): open loop, a batch sent when due from ``start_wall``
    whatever the confirms (at once when late); each message carries the wall time its
    batch was written. Frames are made by hand (pamqp for the fixed ones), so the
    publisher costs a few microseconds a message, not the ~200 of aiormq's."""
    from pamqp import commands as C
    from pamqp import frame
    from pamqp.header import ContentHeader

    conn = await _Lean.open(url, cafile)
    conn.writer.write(frame.marshal(C.Confirm.Select(), 1))
    await conn.next_frame()  # SelectOk
    method = frame.marshal(C.Basic.Publish(exchange="", routing_key=queue), 1)
    size = len(_body(0, 0.0))
    props = C.Basic.Properties(delivery_mode=2, content_type="application/json")
    head = method + frame.marshal(ContentHeader(0, size, props), 1)
    body_head = b"\x03\x00\x01" + size.to_bytes(4, "big")
    batches = (n + 9) // 10
    sent_at = [0.0] * batches
    left = [min(10, n - 10 * b) for b in range(batches)]
    done = bytearray(n + 1)
    low = 0  # every tag <= low is confirmed
    confirms: list[float] = []
    nacked = 0
    free = asyncio.Event()
    outstanding = 0
    finished = asyncio.Event()

    def confirm(tag: int) -> None:
        nonlocal outstanding
        if done[tag]:
            return
        done[tag] = 1
        b = (tag - 1) // 10
        left[b] -= 1
        if not left[b]:
            confirms.append(time.perf_counter() - sent_at[b])
            outstanding -= 1
            free.set()
            if len(confirms) == batches:
                finished.set()

    async def reader() -> None:
        nonlocal low, nacked
        while not finished.is_set():
            try:
                frames = await conn.read()
            except ConnectionError:
                finished.set()
                free.set()
                raise
            for fr in frames:
                if isinstance(fr, (C.Basic.Ack, C.Basic.Nack)):
                    if isinstance(fr, C.Basic.Nack):
                        nacked += 1
                    tag = fr.delivery_tag
                    if fr.multiple:
                        for t in range(low + 1, tag + 1):
                            confirm(t)
                        low = max(low, tag)
                    else:
                        confirm(tag)

    rtask = asyncio.ensure_future(reader())
    if start_wall is None:
        start_wall = time.time()
    perf0 = time.perf_counter() + (start_wall - time.time())
    late: list[float] = []
    first_sent = 0.0
    w = conn.writer
    for b in range(batches):
        if rate:
            due = perf0 + 10 * b / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, time.perf_counter() - due))
        else:
            while outstanding >= INFLIGHT and not rtask.done():
                free.clear()
                await free.wait()
        now = time.time()
        parts = []
        for i in range(left[b]):
            body = _body(10 * b + i, now)
            parts += (head, body_head, body, b"\xce")
        sent_at[b] = time.perf_counter()
        outstanding += 1
        w.write(b"".join(parts))
        await w.drain()
        if not first_sent:
            first_sent = now
    last_sent = time.time()
    await finished.wait()
    if rtask.done():
        rtask.result()  # the connection closed before every confirm came
    rtask.cancel()
    elapsed = time.perf_counter() - perf0
    w.close()
    confirms.sort()
    assert not nacked, f"{nacked} nacks"
    return {
        "elapsed": elapsed,
        "first_sent": first_sent,
        "last_sent": last_sent,
        "confirms": confirms,
        "late": late,
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

    conn = await _Lean.open(url, cafile)
    writer = conn.writer
    writer.write(frame.marshal(C.Basic.Qos(prefetch_count=prefetch), 1))
    await conn.next_frame()
    t_start = time.perf_counter()
    writer.write(frame.marshal(C.Basic.Consume(queue=queue), 1))
    await conn.next_frame()  # ConsumeOk
    out.put(("ready", time.time()))
    lat: list[float] = []
    count = 0
    tag = 0
    while count < expect:
        try:
            frames = await conn.read()
        except ConnectionError:
            break
        now = time.time()
        acks = []
        for fr in frames:
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


def _publisher_main(
    url: str, cafile: str, queue: str, n: int, rate: float, out: Any, go: Any = None
) -> None:
    start = None
    if go is not None:
        out.put(("ready", 0))
        start = go.get(timeout=60)
    out.put(_run(_publish(url, cafile, queue, n, rate, start)))


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
    q.get(timeout=900)
    p.join()
    fill = n / (time.perf_counter() - t0)
    cq: Any = mp.Queue()
    c = mp.Process(target=_consumer_main, args=(rmq.url, str(rmq.cafile), queue, prefetch, n, cq))
    c.start()
    assert cq.get(timeout=60)[0] == "ready"
    _kind, done = cq.get(timeout=900)
    c.join()
    assert done["count"] == n, done
    return {"rate": n / done["start_to_last"], "ingest": fill}


def latency(
    rmq: RabbitMQ, kind: str, rate: int, seconds: float, procs: int = 1
) -> dict[str, float]:
    """``procs`` open-loop publisher processes offering ``rate`` messages/s between them
    (evenly interleaved, each on its own connection) to one consumer."""
    queue = f"lat-{kind}"
    _run(_declare(rmq.url, str(rmq.cafile), queue, kind))
    n = int(rate * seconds)
    cq: Any = mp.Queue()
    c = mp.Process(target=_consumer_main, args=(rmq.url, str(rmq.cafile), queue, 1000, n, cq))
    c.start()
    assert cq.get(timeout=60)[0] == "ready"
    q: Any = mp.Queue()
    gos = [mp.Queue() for _ in range(procs)]
    ps = []
    per = n // procs // 10 * 10
    for i in range(procs):
        k = per if i < procs - 1 else n - per * (procs - 1)
        args = (rmq.url, str(rmq.cafile), queue, k, rate / procs, q, gos[i])
        p = mp.Process(target=_publisher_main, args=args)
        p.start()
        ps.append(p)
    for _ in range(procs):
        assert q.get(timeout=60)[0] == "ready"
    start = time.time() + 0.2
    for i, g in enumerate(gos):
        g.put(start + i * 10 / rate)
    pubs = [q.get(timeout=900) for _ in range(procs)]
    for p in ps:
        p.join()
    _kind, done = cq.get(timeout=900)
    c.join()
    lat = sorted(done["lat"])
    confirms = sorted(x for r in pubs for x in r["confirms"])
    late = sorted(x for r in pubs for x in r["late"])
    span = max(r["last_sent"] for r in pubs) - min(r["first_sent"] for r in pubs)
    return {
        "events": len(lat),
        "offered": (n - 10) / span if span > 0 else 0.0,
        "late_p99": _pct(late, 99),
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
        "max": lat[-1] * 1000,
        "confirm_p50": _pct(confirms, 50),
        "confirm_p99": _pct(confirms, 99),
    }
