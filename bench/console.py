"""Web console benchmark in real Chromium (Debian's, driven by Playwright) on a real hub.

1. History chart: 500,000 samples of one point are stored over MQTT (paho, QoS 1); the
   device page reads them all raw (50 pages of the raw API) and renders them with uPlot.
   Measured in the browser with performance.now(): from the last page having arrived to
   the frame after uPlot drew (the chart's data-render-ms), against the 1 s target;
   printed beside the fetch time and the aggregated view (what auto mode shows zoomed out).
   Beside it, the reason for uPlot (``--peers``, on by default): the same number of
   samples drawn in a blank page of the same browser by uPlot and by Chart.js 4 (the
   console's devDependency, never served), with its LTTB decimation and without it:
   the time from the columns being there to the frame after the first draw (Chart.js
   needs an object per point: building them is counted), then a zoom to a tenth of the
   range redrawn. Medians of ``--runs``.
2. Live log: a publisher process sends invalid JSON at --rate requests/s (each is a payload
   and an error record: 2 records per request) while the channel page tails the log over
   server-sent events. Frame times are measured with requestAnimationFrame over the same
   window, and beside them the same page's frame times with the tail off (the peer).

    .venv/bin/python bench/console.py [--samples 500000] [--rate 500] [--seconds 10]
        [--runs 3] [--no-peers] [--peers-only]
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


# precise heap figures and gc() for the chart comparison
BROWSER_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--enable-precise-memory-info",
    "--js-flags=--expose-gc",
]
CONSOLE = Path(__file__).resolve().parent.parent / "src/headrace/console/node_modules"
PEER_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0">
<div id="u" style="width:1200px;height:400px"></div>
<div style="width:1200px;height:400px"><canvas id="c"></canvas></div></body></html>"""
# one run in the page: the columns first (as the console has them after the last page of
# the raw API), then each library draws them and a zoom to a tenth of the range
PEER_JS = """async ([lib, n, decimate]) => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const xs = new Float64Array(n), ys = new Float64Array(n);
  for (let i = 0; i < n; i++) { xs[i] = 1.7e9 + i * 10; ys[i] = 20 + 5 * Math.sin(i / 5000) + ((i * 7919) % 97) / 50; }
  await frame();
  const heap = () => { if (window.gc) gc(); return performance.memory ? performance.memory.usedJSHeapSize : 0; };
  const h0 = heap();
  const lo = xs[Math.floor(n * 0.45)], hi = xs[Math.floor(n * 0.55)];
  const t0 = performance.now();
  let zoom;
  if (lib === "uplot") {
    const el = document.getElementById("u"); el.replaceChildren();
    const u = new uPlot({width: 1200, height: 400, series: [{}, {stroke: "#1b4f8a"}]}, [xs, ys], el);
    await frame();
    const t1 = performance.now();
    u.setScale("x", {min: lo, max: hi});
    await frame();
    zoom = performance.now() - t1;
    const drawn = t1 - t0;
    const mem = heap() - h0;
    u.destroy();
    return {build: 0, drawn, zoom, mem};
  }
  const pts = new Array(n);
  for (let i = 0; i < n; i++) pts[i] = {x: xs[i], y: ys[i]};
  const tb = performance.now();
  const c = new Chart(document.getElementById("c"), {
    type: "line",
    data: {datasets: [{data: pts, borderColor: "#1b4f8a", borderWidth: 1, pointRadius: 0, indexAxis: "x"}]},
    options: {animation: false, parsing: false, normalized: true, spanGaps: true, responsive: false,
      scales: {x: {type: "linear"}},
      plugins: {decimation: {enabled: decimate, algorithm: "lttb", samples: 1200}, legend: {display: false}}},
  });
  await frame();
  const t1 = performance.now();
  c.options.scales.x.min = lo; c.options.scales.x.max = hi;
  c.update("none");
  await frame();
  zoom = performance.now() - t1;
  const mem = heap() - h0;
  c.destroy();
  return {build: tb - t0, drawn: t1 - t0, zoom, mem};
}"""


def chart_peers(b: Any, samples: int, runs: int) -> None:
    """uPlot beside Chart.js on the same samples, in a blank page of the same browser."""
    chartjs = CONSOLE / "chart.js/dist/chart.umd.min.js"
    if not chartjs.exists():
        print("  (Chart.js missing: bash scripts/setup.sh installs the console's devDependencies)")
        return
    page = b.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(600_000)
    page.set_content(PEER_PAGE)
    page.add_style_tag(path=str(CONSOLE / "uplot/dist/uPlot.min.css"))
    page.add_script_tag(path=str(CONSOLE / "uplot/dist/uPlot.iife.min.js"))
    page.add_script_tag(path=str(chartjs))
    version = page.evaluate("() => Chart.version")
    # the columns themselves (2 x 8 bytes a sample) are there before either library runs
    print(
        f"chart libraries on the same {samples:,} samples (blank page, same Chromium), median of {runs}"
    )
    for label, lib, dec in [
        ("uPlot (the console's)", "uplot", False),
        (f"Chart.js {version}, LTTB decimation", "chartjs", True),
        (f"Chart.js {version}, no decimation", "chartjs", False),
    ]:
        got = [page.evaluate(PEER_JS, [lib, samples, dec]) for _ in range(runs)]
        drawn = statistics.median(g["drawn"] for g in got)
        build = statistics.median(g["build"] for g in got)
        zoom = statistics.median(g["zoom"] for g in got)
        mem = statistics.median(g["mem"] for g in got) / 2**20
        extra = f" (of which {build:6.1f} ms building point objects)" if build else ""
        each = ", ".join(f"{g['drawn']:.0f}" for g in got)
        print(
            f"  {label:36s} first draw {drawn:7.1f} ms{extra:44s}  zoom redraw {zoom:7.1f} ms"
            f"  heap +{mem:5.1f} MiB   runs: {each}"
        )
    page.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=500_000)
    ap.add_argument("--rate", type=int, default=500, help="requests/s; 2 log records each")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-peers", action="store_true", help="skip uPlot vs Chart.js")
    ap.add_argument("--peers-only", action="store_true", help="only uPlot vs Chart.js")
    args = ap.parse_args()
    if args.peers_only:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            chart_peers(b, args.samples, args.runs)
            b.close()
        return
    hub = HubProcess(Path(tempfile.mkdtemp()) / "data", ["--set", "log.level=info"])
    hub.start()
    try:
        env = provision(hub)
        took = store_history(hub, env, args.samples)
        print(f"stored {args.samples} samples over MQTT in {took:.1f} s")
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
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
            if not args.no_peers:
                chart_peers(b, args.samples, args.runs)

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
