"""Web console benchmark in real Chromium (Debian's, driven by Playwright) on a real hub.

1. History chart: 500,000 samples of one point are stored over MQTT (paho, QoS 1); the
   device page reads them all raw (50 pages of the raw API) and renders them with uPlot.
   Measured in the browser with performance.now(): from the last page having arrived to
   the frame after uPlot drew (the chart's data-render-ms), against the 1 s target;
   printed beside the fetch time and the aggregated view (what auto mode shows zoomed out).
2. Live log: a publisher process sends invalid JSON at --rate requests/s (each is a payload
   and an error record: 2 records per request) while the channel page tails the log over
   server-sent events. Frame times are measured with requestAnimationFrame over the same
   window, and beside them the same page's frame times with the tail off (the peer).

    .venv/bin/python bench/console.py [--samples 500000] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import ADMIN_TOKEN, HubProcess

CHROMIUM = "/usr/bin/chromium"
BATCH = 2000
FRAMES_JS = """(ms) => new Promise((resolve) => {
  const out = []; let last = performance.now(); const end = last + ms;
  function tick(t) { out.push(t - last); last = t; if (t < end) requestAnimationFrame(tick); else resolve(out); }
  requestAnimationFrame(tick);
})"""


def provision(hub: HubProcess) -> dict[str, str]:
    with hub.client() as api:
        org = api.post("/api/v1/orgs", json={"name": "bench console"}).json()["orgId"]
        api.post(
            f"/api/v1/orgs/{org}/models",
            json={"id": "m", "measurepoints": [{"id": "temp", "type": "double"}]},
        ).raise_for_status()
        pk = api.post(f"/api/v1/orgs/{org}/products", json={"name": "P", "modelId": "m"}).json()[
            "productKey"
        ]
        api.post(f"/api/v1/orgs/{org}/products/{pk}/devices", json={"deviceKey": "d1"})
        ch = api.post(f"/api/v1/orgs/{org}/channels", json={"name": "c", "products": [pk]}).json()
    return {
        "org": org,
        "pk": pk,
        "ch": ch["channelId"],
        "user": ch["username"],
        "pw": ch["password"],
    }


def connect(hub: HubProcess, env: dict[str, str]) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="b-" + uuid.uuid4().hex[:6])
    c.username_pw_set(env["user"], env["pw"])
    c.max_inflight_messages_set(16)
    c.connect("127.0.0.1", hub.mqtt_port)
    c.loop_start()
    return c


def store_history(hub: HubProcess, env: dict[str, str], samples: int) -> float:
    c = connect(hub, env)
    t0 = int(time.time() * 1000) - samples * 1000
    topic = f"/sys/{env['pk']}/integration/measurepoint/post"
    started = time.perf_counter()
    infos = []
    for b in range(0, samples, BATCH):
        items = [
            {
                "deviceKey": "d1",
                "time": t0 + i * 1000,
                "measurepoints": {"temp": 20 + (i % 600) / 10},
            }
            for i in range(b, min(samples, b + BATCH))
        ]
        req = {
            "id": str(b),
            "version": "1.0",
            "method": "integration.measurepoint.post",
            "params": items,
        }
        infos.append(c.publish(topic, json.dumps(req), qos=1))
    for info in infos:
        info.wait_for_publish(timeout=300)
    took = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    return took


def publisher(port: int, env: dict[str, str], rate: int, seconds: float, sent: Any) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood-" + uuid.uuid4().hex[:6])
    c.username_pw_set(env["user"], env["pw"])
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = f"/sys/{env['pk']}/integration/measurepoint/post"
    n = 0
    start = time.perf_counter()
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate)
        while n < due:
            c.publish(topic, b'{"id": "x", "not json', qos=0)
            n += 1
        time.sleep(0.005)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    sent.value = n


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def frames_line(label: str, frames: list[float]) -> str:
    return (
        f"  {label:28s} frames {len(frames):4d}  p50 {statistics.median(frames):6.1f} ms"
        f"  p99 {pct(frames, 0.99):6.1f} ms  max {max(frames):6.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=500_000)
    ap.add_argument("--rate", type=int, default=500, help="requests/s; 2 log records each")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    hub = HubProcess(Path(tempfile.mkdtemp()) / "data", ["--set", "log.level=info"])
    hub.start()
    try:
        env = provision(hub)
        took = store_history(hub, env, args.samples)
        print(f"stored {args.samples} samples over MQTT in {took:.1f} s")
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
            page = b.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(300_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(hub.url + "/console/#/login")
            page.get_by_text("Log in with the admin token instead").click()
            page.get_by_label("Admin token").fill(ADMIN_TOKEN)
            page.get_by_role("button", name="Use admin token").click()
            page.get_by_role("heading", name="Organizations", level=1).wait_for()
            page.evaluate(
                "r => { location.hash = '#' + r; }",
                f"/orgs/{env['org']}/products/{env['pk']}/devices/d1",
            )
            chart = page.locator(".chart")
            page.locator(".chart[data-mode=agg]").wait_for()
            agg = (chart.get_attribute("data-samples"), chart.get_attribute("data-render-ms"))
            renders, fetches = [], []
            for _ in range(args.runs):
                page.locator("#chart-mode").select_option("agg")
                page.locator(".chart[data-mode=agg]").wait_for()
                page.locator("#chart-mode").select_option("raw")
                page.locator(f".chart[data-mode=raw][data-samples='{args.samples}']").wait_for()
                renders.append(float(chart.get_attribute("data-render-ms") or "nan"))
                fetches.append(float(chart.get_attribute("data-fetch-ms") or "nan"))
            print("history chart (uPlot), measured in Chromium with performance.now()")
            print(
                f"  raw {args.samples:,} samples: rendered {statistics.median(renders):7.1f} ms after"
                f" the data arrived (median of {args.runs}: {', '.join(f'{r:.0f}' for r in renders)})"
                f"   target < 1000 ms   -> {'OK' if statistics.median(renders) < 1000 else 'OVER'}"
            )
            print(
                f"  fetching them (50 raw pages of 10,000, JSON): median {statistics.median(fetches) / 1000:.1f} s"
            )
            print(f"  aggregated view (auto, zoomed out): {agg[0]} buckets rendered in {agg[1]} ms")

            # -- live log ---------------------------------------------------------------
            page.evaluate(
                "r => { location.hash = '#' + r; }", f"/orgs/{env['org']}/channels/{env['ch']}"
            )
            page.get_by_role("button", name="Live tail").wait_for()

            def flood(tail: bool) -> tuple[list[float], int]:
                sent = mp.Value("i", 0)
                proc = mp.Process(
                    target=publisher, args=(hub.mqtt_port, env, args.rate, args.seconds, sent)
                )
                proc.start()
                frames = page.evaluate(FRAMES_JS, args.seconds * 1000)
                proc.join()
                return frames, sent.value

            idle = page.evaluate(FRAMES_JS, args.seconds * 1000 / 2)
            loaded, _ = flood(False)  # the same load, the page not tailing
            page.get_by_role("button", name="Live tail").click()
            page.locator(".live-info").filter(has_text="live").wait_for()
            time.sleep(1)  # the stream is connected
            busy, sent = flood(True)
            time.sleep(1.5)
            live = page.locator(".live-info")
            info = live.inner_text()
            received = int(info.split("·")[1].split()[0]) if "received" in info else 0
            rows = page.locator("table.log-table tbody tr").count()
            gaps = live.get_attribute("data-gap") or "0"
            work = float(live.get_attribute("data-busy-ms") or "0")
            print(
                f"live log (SSE): {sent} requests in {args.seconds:.0f} s = "
                f"{2 * sent / args.seconds:,.0f} records/s sent; the page received {received}"
                f" ({received / args.seconds:,.0f}/s), {gaps} gap events, {rows} rows kept on screen;"
                f" the page's own work on them: {work / args.seconds:.0f} ms per second"
            )
            print(frames_line("tailing, under the load", busy))
            print(frames_line("tail off, same load (peer)", loaded))
            print(frames_line("tail off, no load", idle))
            if errors:
                print("page errors:", errors)
            b.close()
    finally:
        hub.stop()
    print("(shared 2-core machine: figures are noisy; compare with the peer of the same run)")


if __name__ == "__main__":
    main()
