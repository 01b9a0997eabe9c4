"""Operator accounts and the live log tail: what they cost, each beside its peer measured
in the same run.

1. Password hashing: scrypt (N=2^15, r=8, p=3) per hash, beside the salted SHA-256 of
   channel passwords; and a whole login (POST /api/v1/session) on a running hub.
2. The admin guard: GET /api/v1/orgs/{org} with a session cookie beside the same call
   with the admin token (interleaved, one keep-alive client each).
3. The live tail: records published with mosquitto_pub (one connection, QoS 1) and read
   from the SSE stream; the rate the stream delivers them beside the rate they are stored.

    .venv/bin/python bench/accounts.py [--calls 500] [--records 5000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ADMIN_TOKEN, HubProcess
from tests.e2e.mqtt_support import mp_request, provision
from tests.e2e.sse_support import SSE, mqtt_publish, stream_path

from headrace.state.common import hash_password
from headrace.state.users import hash_secret


def ms(values: list[float]) -> str:
    v = sorted(values)
    p99 = v[min(len(v) - 1, int(len(v) * 0.99))]
    return f"p50 {statistics.median(v) * 1000:8.3f} ms  p99 {p99 * 1000:8.3f} ms  (n={len(v)})"


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--records", type=int, default=5000)
    args = ap.parse_args()

    print("1. password hashing (in process)")
    print(f"  scrypt N=2^15 r=8 p=3      {ms(timed(lambda: hash_secret('a-password'), 10))}")
    print(f"  salted SHA-256 (channels)  {ms(timed(lambda: hash_password('a-password'), 1000))}")

    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(Path(tmp) / "data", ["--set", "log.level=warning"])
        hub.start()
        try:
            password = (hub.data_dir / "admin-password").read_text().strip()
            body = {"username": "admin", "password": password}
            with httpx.Client(base_url=hub.url, timeout=30) as c:
                logins = timed(lambda: c.post("/api/v1/session", json=body).raise_for_status(), 10)
            print(f"  login over HTTP            {ms(logins)}")

            api = hub.client()
            env = provision(api, devices=1)
            with httpx.Client(base_url=hub.url, timeout=30) as c:
                token = c.post("/api/v1/session", json=body).cookies["headrace_session"]
            # the cookie as a plain header: httpx's cookie jar costs the client ~1 ms a call
            session = httpx.Client(
                base_url=hub.url, timeout=30, headers={"Cookie": f"headrace_session={token}"}
            )
            path = f"/api/v1/orgs/{env.org}"
            by_token: list[float] = []
            by_session: list[float] = []
            for _ in range(args.calls):
                for client, out in ((api, by_token), (session, by_session)):
                    t = time.perf_counter()
                    client.get(path).raise_for_status()
                    out.append(time.perf_counter() - t)
            print("2. the admin guard: GET org (cached registry read)")
            print(f"  admin token                {ms(by_token)}")
            print(f"  session cookie             {ms(by_session)}")
            session.close()

            tail = SSE(
                hub.url + stream_path(env), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            total = args.records + 2  # + connect, disconnect
            got = 0
            done = threading.Event()
            last_at = [0.0]

            def read() -> None:
                nonlocal got
                while got < total:
                    e = tail.next(60)
                    if "data" in e:
                        assert e.get("event", "message") == "message", e
                        got += 1
                last_at[0] = time.perf_counter()
                done.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            payloads = [
                mp_request(
                    f"b{i}",
                    [
                        {
                            "deviceKey": "dev0",
                            "time": 1_700_000_000_000 + i,
                            "measurepoints": {"temp": 1.5},
                        }
                    ],
                )
                for i in range(args.records)
            ]
            t0 = time.perf_counter()
            mqtt_publish(hub, env, payloads)
            stored_at = time.perf_counter()
            assert done.wait(120), f"the tail delivered {got} of {total}"
            tail.close()
            print(f"3. live tail of {total} records (mosquitto_pub -l, QoS 1)")
            print(f"  stored (acked)             {args.records / (stored_at - t0):8.0f} records/s")
            print(
                f"  delivered on the SSE tail  {total / (last_at[0] - t0):8.0f} records/s"
                f"  (last record {1000 * (last_at[0] - stored_at):.0f} ms after the last ack)"
            )
            api.close()
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
