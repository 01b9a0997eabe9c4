"""HTTP real-time integration benchmark: the whole hub vs a bare Litestar endpoint.

Two loads, each run against both servers in the same run:
- single-record posts: one record (POINTS measurepoints) per request;
- 100-record posts: RECORDS records per request.

Single-record posts are live data: each connection sends for its own LIVE_DEVICES devices,
every post's time later than the connection's earlier posts' (spliced into a pool of
pre-encoded bodies), so that nothing is a resend (before, the connections of a client
sent the same 200 bodies over and over: most writes were resends the store merged with
what it held). The 100-record posts keep that shape (DEVICES shared devices, resent).

The hub is a real ``headrace serve`` process (token auth, validation, one durable store
commit per request, group-committed, with ``store.synchronous=full``, online tracking).
The peer is a bare Litestar app on the same uvicorn/httptools/uvloop stack that only reads
and decodes the JSON body. Load comes from separate client processes, each keeping
CONNS keep-alive connections busy with a minimal HTTP/1.1 client (asyncio streams), so
that the client costs as little CPU as possible. Printed: requests/s, points/s,
latency p50/p99, the server's CPU time per request (steadier than the rate on a shared
machine), and the hub/bare ratios of both. Then file uploads (multipart, 100 MiB each,
sent by httpx from a file on disk): MB/s.

    .venv/bin/python bench/http_ingest.py [--clients 2] [--conns 16] [--seconds 10]
        [--uploads 5] [--single-only]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, post

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.procstat import cpu_seconds
from tests.conftest import HubProcess, free_port
from tests.e2e.http_support import get_token

POINTS = 10
RECORDS = 100
DEVICES = 100
LIVE_DEVICES = 10  # per connection, for the single-record posts
MiB = 1024 * 1024
MODEL = {
    "id": "bench",
    "measurepoints": [{"id": f"p{i}", "type": "double"} for i in range(POINTS)]
    + [{"id": "blob", "type": "file"}],
}


# -- the bare peer -------------------------------------------------------------------------


def bare_server(port: int) -> None:
    """A Litestar app that only reads and decodes the body, on the hub's server stack."""
    import uvicorn
    import uvloop

    @post("/connect-service/v2.1/integration", status_code=200)
    async def integrate(request: Request[Any, Any, Any]) -> Response[bytes]:
        msgspec.json.decode(await request.body())
        return Response(b'{"code":0,"msg":"OK","data":{}}', media_type="application/json")

    app = Litestar([integrate], logging_config=None)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        http="httptools",
    )
    uvloop.run(uvicorn.Server(config).serve())


# -- load clients --------------------------------------------------------------------------


_TIME0 = 1_600_000_000_000
_MARK = 9_999_999_999_999  # 13 digits, as every time the bench sends


def body_for(pk: str, records: int, seq: int, devices: list[str]) -> list[bytes]:
    """Request ``seq``'s body around its records' times: the parts between them, so that
    a pool of bodies sends ever later times (``timed``) without encoding JSON per post."""
    params = [
        {
            "productKey": pk,
            "deviceKey": devices[(seq * records + r) % len(devices)],
            "time": _MARK,
            "measurepoints": {f"p{i}": round(r * 0.5 + i, 3) for i in range(POINTS)},
        }
        for r in range(records)
    ]
    msg = {
        "id": str(seq),
        "version": "1.0",
        "method": "integration.measurepoint.post",
        "params": params,
    }
    return json.dumps(msg, separators=(",", ":")).encode().split(str(_MARK).encode())


def timed(parts: list[bytes], n: int) -> bytes:
    """The body of ``parts`` as the connection's ``n``-th post: record r at a time of its
    own, later than every earlier post's (10 ms apart)."""
    base = _TIME0 + n * (len(parts) - 1) * 10
    out = [parts[0]]
    for r, part in enumerate(parts[1:]):
        out.append(b"%d%b" % (base + r * 10, part))
    return b"".join(out)


def device_keys(slot: int) -> list[str]:
    """The LIVE_DEVICES devices of connection ``slot`` (live data: each device has one
    sender, and posts again within seconds); -1: the DEVICES devices every connection
    shares."""
    if slot < 0:
        return [f"dev{i}" for i in range(DEVICES)]
    return [f"dev{slot}-{i}" for i in range(LIVE_DEVICES)]


async def _conn_loop(
    port: int,
    path: str,
    token: str,
    bodies: list[list[bytes]],
    stop_at: float,
    lat: list[float],
    counts: list[int],
    resend_from: int | None,
) -> None:
    """Posts ``bodies`` round, each with later times; ``resend_from``: the pool's times
    start there and repeat each round instead (resends, the 100-record load's shape)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\napim-accesstoken: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(timed(b, 0))}\r\n\r\n"
        ).encode()
        for b in bodies
    ]
    i = 0
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        k = i % len(heads)
        n = i if resend_from is None else resend_from + k
        writer.write(heads[k] + timed(bodies[k], n))
        i += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        lat.append(time.perf_counter() - t0)
        if head.startswith(b"HTTP/1.1 200") and b'"code":0' in body:
            counts[0] += 1
        else:
            counts[1] += 1
    writer.close()


def client_main(
    client: int,
    port: int,
    path: str,
    token: str,
    pk: str,
    records: int,
    conns: int,
    seconds: float,
    start_at: float,
    out: Any,
) -> None:
    import uvloop

    # single records: live data, each connection its own devices; 100-record posts: the
    # load as it was (the client's connections post the same 200 bodies of the same
    # DEVICES devices round after round, each client its own range of times)
    live = records == 1
    pools = [
        [
            body_for(pk, records, seq, device_keys(client * conns + k if live else -1))
            for seq in range(200)
        ]
        for k in range(conns)
    ]
    resend_from = None if live else client * 100_000_000
    lat: list[float] = []
    counts = [0, 0]

    async def run() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _conn_loop(port, path, token, bodies, stop_at, lat, counts, resend_from)
                for bodies in pools
            )
        )

    uvloop.run(run())
    out.put((counts[0], counts[1], lat))


def load(
    port: int,
    token: str,
    pk: str,
    records: int,
    clients: int,
    conns: int,
    seconds: float,
    pid: int,
) -> dict[str, float]:
    path = "/connect-service/v2.1/integration?action=postMeasurepoint&orgId=" + pk.split("|")[-1]
    pk = pk.split("|")[0]
    q: Any = mp.Queue()
    start_at = time.time() + 1.0
    procs = [
        mp.Process(
            target=client_main,
            args=(c, port, path, token, pk, records, conns, seconds, start_at, q),
        )
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    cpu0 = cpu_seconds(pid)
    results = [q.get() for _ in procs]
    cpu = cpu_seconds(pid) - cpu0
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return {
        "rps": ok / seconds,
        "cpu_us": cpu / max(1, ok + failed) * 1e6,
        "pps": ok * records * POINTS / seconds,
        "failed": failed,
        "p50": statistics.median(lat) * 1000 if lat else 0.0,
        "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0,
    }


# -- setup and file uploads ----------------------------------------------------------------


def setup(hub: HubProcess, senders: int) -> tuple[str, str, str]:
    """An org with a product, DEVICES devices for each of ``senders`` connections and a
    service account: (org, pk, token)."""
    with hub.client() as api:
        org = api.post("/api/v1/orgs", json={"name": "bench"}).json()["orgId"]
        assert api.post(f"/api/v1/orgs/{org}/models", json=MODEL).status_code == 201
        pk = api.post(
            f"/api/v1/orgs/{org}/products", json={"name": "bench", "modelId": "bench"}
        ).json()["productKey"]
        r = api.post(
            f"/api/v1/orgs/{org}/products/{pk}/devices",
            json=[{"deviceKey": k} for slot in range(-1, senders) for k in device_keys(slot)],
        )
        assert r.status_code == 201, r.text
        sa = api.post(f"/api/v1/orgs/{org}/service-accounts", json={"name": "bench"}).json()
    return org, pk, get_token(hub.url, sa["appKey"], sa["appSecret"])


def upload_rate(hub: HubProcess, org: str, pk: str, token: str, count: int) -> float:
    path = Path(tempfile.mkdtemp()) / "big.bin"
    with open(path, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(MiB))
    total = 0.0
    with httpx.Client(base_url=hub.url, timeout=300) as c:
        for i in range(count):
            msg = {
                "id": str(i),
                "version": "1.0",
                "method": "integration.measurepoint.post",
                "params": [
                    {
                        "productKey": pk,
                        "deviceKey": f"dev{i}",
                        "measurepoints": {"blob": f"local://f{i}"},
                    }
                ],
            }
            # a distinct file each time (the store keeps one copy of equal content)
            with open(path, "r+b") as f:
                f.write(hashlib.sha256(str(i).encode()).digest())
            with open(path, "rb") as f:
                t0 = time.perf_counter()
                r = c.post(
                    "/connect-service/v2.1/integration",
                    params={"action": "postMeasurepoint", "orgId": org},
                    headers={"apim-accesstoken": token},
                    files=[
                        ("enos-message", (None, json.dumps(msg).encode(), "application/json")),
                        ("enos-file", (f"f{i}", f, "application/octet-stream")),
                    ],
                )
                total += time.perf_counter() - t0
            assert r.status_code == 200 and r.json()["code"] == 0, r.text
    path.unlink()
    return count * 100 * MiB / total / 1e6


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--conns", type=int, default=16, help="connections per client process")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per load")
    ap.add_argument("--uploads", type=int, default=5, help="100 MiB uploads (0: none)")
    ap.add_argument(
        "--single-only", action="store_true", help="only the single-record posts (no 100-record)"
    )
    ap.add_argument("--bare-server", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return

    data = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    hub = HubProcess(data / "data", ["--set", "log.level=warning"])
    hub.start()
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(
                    f"http://127.0.0.1:{bare_port}/connect-service/v2.1/integration", content=b"{}"
                )
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        org, pk, token = setup(hub, args.clients * args.conns)
        print(
            f"cpus={os.cpu_count()} clients={args.clients} conns/client={args.conns} "
            f"seconds={args.seconds} points/record={POINTS} store.synchronous=full"
        )
        print(
            f"{'load':<22}{'server':<8}{'req/s':>10}{'points/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'CPU us/req':>12}"
        )
        loads = [("single-record posts", 1), ("100-record posts", RECORDS)]
        for name, records in loads[:1] if args.single_only else loads:
            rows = {}
            assert hub.proc is not None
            for server, port, pid in (
                ("bare", bare_port, bare.pid),
                ("hub", hub.http_port, hub.proc.pid),
            ):
                r = load(
                    port, token, f"{pk}|{org}", records, args.clients, args.conns, args.seconds, pid
                )
                rows[server] = r
                print(
                    f"{name:<22}{server:<8}{r['rps']:>10.0f}{r['pps']:>12.0f}"
                    f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['cpu_us']:>12.1f}"
                    + (f"   failed={r['failed']:.0f}" if r["failed"] else "")
                )
            ratio = rows["hub"]["rps"] / rows["bare"]["rps"]
            cpu_ratio = rows["bare"]["cpu_us"] / rows["hub"]["cpu_us"]
            print(
                f"{name:<22}{'ratio':<8}{ratio:>10.0%}   (CPU per request: bare/hub {cpu_ratio:.0%})"
            )
        if args.uploads:
            rate = upload_rate(hub, org, pk, token, args.uploads)
            print(f"file upload (multipart, {args.uploads} x 100 MiB, one client): {rate:.0f} MB/s")
    finally:
        bare.terminate()
        bare.wait()
        hub.stop()


if __name__ == "__main__":
    main()
