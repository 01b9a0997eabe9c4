// The history chart of a device (uPlot): any numeric points over any range. Zoomed out
// it reads aggregates (one avg per bucket, about one bucket per pixel); zoomed in far
// enough that the range holds few samples it reads the raw samples. Drag to zoom, the
// wheel zooms around the pointer, buttons and arrow keys pan; a table view of what is
// loaded exports to CSV.
//
// Each render records its figures on the chart element (data-samples, data-mode,
// data-fetch-ms, data-render-ms: from the data having arrived to the frame after uPlot
// drew it), which bench/console.py reads.

import uPlot from "/console/vendor/uPlot.esm.js";
import * as api from "./api.js";
import { h, fmtTime, saveBlob, errorText, fill } from "./ui.js";

export const NUMERIC = new Set(["int", "float", "double", "timestamp", "enum", "bool"]);
const RAW_AUTO_MAX = 20000; // auto mode reads raw samples up to this many in the range
const RAW_MAX = 1_000_000; // raw mode reads at most this many
const PAGE = 10000; // the raw API's largest page
const COLORS = ["#1d4e89", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

// merge per-point sorted series [{t: [], v: []}] into uPlot's aligned columns
export function align(series) {
  if (series.length === 1) return [series[0].t, series[0].v];
  const idx = new Array(series.length).fill(0);
  const xs = [];
  const ys = series.map(() => []);
  for (;;) {
    let min = Infinity;
    for (let i = 0; i < series.length; i++) if (idx[i] < series[i].t.length && series[i].t[idx[i]] < min) min = series[i].t[idx[i]];
    if (min === Infinity) break;
    xs.push(min);
    for (let i = 0; i < series.length; i++) {
      if (idx[i] < series[i].t.length && series[i].t[idx[i]] === min) ys[i].push(series[i].v[idx[i]++]);
      else ys[i].push(null);
    }
  }
  return [xs, ...ys];
}

function num(v) {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number") return v;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export function historyChart({ basePath, points, range }) {
  const state = {
    points: points.slice(0, 3), // chosen
    start: range.start,
    end: range.end,
    home: { ...range },
    mode: "auto", // auto | raw | agg
    data: null, // [xs, ...ys] as loaded
    loadedMode: "",
    interval: 0,
    seq: 0,
  };
  let plot = null;
  const chartBox = h("div", { class: "chart", tabindex: "0", role: "img", "aria-label": "History chart. Drag to zoom; arrow keys pan; + and - zoom." });
  const info = h("p", { class: "muted chart-info", "aria-live": "polite" });
  const tableBox = h("div", { class: "chart-table", hidden: true });
  const tableBtn = h("button", { type: "button", "aria-pressed": "false" }, "Table view");
  const csvBtn = h("button", { type: "button" }, "Export CSV");

  const pointBoxes = h(
    "fieldset",
    { class: "points" },
    h("legend", {}, "Points"),
    points.length
      ? points.map((p) => {
          const id = `pt-${p}`;
          return h("span", { class: "check" }, h("input", { type: "checkbox", id, value: p, checked: state.points.includes(p), onchange: () => {
            state.points = [...pointBoxes.querySelectorAll("input:checked")].map((x) => x.value);
            load();
          } }), h("label", { for: id }, p));
        })
      : h("span", { class: "muted" }, "This model has no numeric measurepoints."),
  );
  const modeSel = h(
    "select",
    { id: "chart-mode", onchange: (ev) => { state.mode = ev.target.value; load(); } },
    h("option", { value: "auto" }, "auto (aggregates zoomed out, raw zoomed in)"),
    h("option", { value: "raw" }, "raw samples"),
    h("option", { value: "agg" }, "aggregates (avg per bucket)"),
  );
  const fromIn = h("input", { type: "datetime-local", id: "chart-from" });
  const toIn = h("input", { type: "datetime-local", id: "chart-to" });
  const localValue = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const showRange = () => {
    fromIn.value = localValue(state.start);
    toIn.value = localValue(state.end);
  };
  const presets = [
    ["1 h", 3600e3],
    ["24 h", 86400e3],
    ["7 d", 7 * 86400e3],
    ["30 d", 30 * 86400e3],
  ];
  const controls = h(
    "div",
    { class: "chart-controls" },
    pointBoxes,
    h(
      "div",
      { class: "toolbar" },
      h("span", { class: "field" }, h("label", { for: "chart-from" }, "From"), fromIn),
      h("span", { class: "field" }, h("label", { for: "chart-to" }, "Until"), toIn),
      h("button", { type: "button", onclick: () => { const s = new Date(fromIn.value).getTime(), e = new Date(toIn.value).getTime(); if (e > s) zoomTo(s, e); else info.textContent = "The end must be after the start."; } }, "Show range"),
      h("span", { class: "field" }, h("label", { for: "chart-mode" }, "Samples"), modeSel),
    ),
    h(
      "div",
      { class: "toolbar" },
      presets.map(([label, span]) => h("button", { type: "button", class: "small", onclick: () => zoomTo(Date.now() - span, Date.now()) }, `Last ${label}`)),
      h("button", { type: "button", class: "small", onclick: () => zoomTo(state.home.start, state.home.end), title: "The whole range of the data" }, "All data"),
      h("button", { type: "button", class: "small", "aria-label": "Pan left", onclick: () => pan(-0.25) }, "←"),
      h("button", { type: "button", class: "small", "aria-label": "Pan right", onclick: () => pan(0.25) }, "→"),
      h("button", { type: "button", class: "small", "aria-label": "Zoom in", onclick: () => zoom(0.5) }, "+"),
      h("button", { type: "button", class: "small", "aria-label": "Zoom out", onclick: () => zoom(2) }, "−"),
      tableBtn,
      csvBtn,
    ),
  );
  const el = h("div", { class: "history" }, controls, chartBox, info, tableBox);

  function zoomTo(s, e) {
    state.start = Math.floor(s);
    state.end = Math.max(Math.ceil(e), state.start + 1);
    load();
  }
  function pan(f) {
    const w = state.end - state.start;
    zoomTo(state.start + w * f, state.end + w * f);
  }
  function zoom(f, at = 0.5) {
    const w = state.end - state.start;
    const c = state.start + w * at;
    zoomTo(c - w * f * at, c + w * f * (1 - at));
  }
  chartBox.addEventListener("keydown", (ev) => {
    const k = { ArrowLeft: () => pan(-0.25), ArrowRight: () => pan(0.25), "+": () => zoom(0.5), "=": () => zoom(0.5), "-": () => zoom(2) }[ev.key];
    if (k) {
      ev.preventDefault();
      k();
    }
  });
  let wheelTimer = 0;
  let wheelFactor = 1;
  let wheelAt = 0.5;
  chartBox.addEventListener(
    "wheel",
    (ev) => {
      if (!plot) return;
      ev.preventDefault();
      const rect = plot.over.getBoundingClientRect();
      wheelAt = Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
      wheelFactor *= ev.deltaY < 0 ? 0.8 : 1.25;
      // the scale follows at once; the data for the new range loads when the wheel rests
      const w = (state.end - state.start) * wheelFactor;
      const c = state.start + (state.end - state.start) * wheelAt;
      plot.setScale("x", { min: c - w * wheelAt, max: c + w * (1 - wheelAt) });
      clearTimeout(wheelTimer);
      wheelTimer = setTimeout(() => {
        const f = wheelFactor;
        wheelFactor = 1;
        zoom(f, wheelAt);
      }, 250);
    },
    { passive: false },
  );

  async function fetchRaw(seq) {
    const series = new Map(state.points.map((p) => [p, { t: [], v: [] }]));
    let cursor = "";
    let n = 0;
    for (;;) {
      const page = await api.get(basePath + "/measurepoints", { points: state.points.join(","), start: state.start, end: state.end, limit: PAGE, cursor });
      if (seq !== state.seq) return null;
      for (const it of page.items) {
        const s = series.get(it.point);
        s.t.push(it.time);
        s.v.push(num(it.value));
      }
      n += page.items.length;
      info.textContent = `Loading raw samples… ${n}`;
      if (!page.nextCursor || n >= RAW_MAX) break;
      cursor = page.nextCursor;
    }
    return { series: [...series.values()], samples: n };
  }

  async function fetchAgg(interval, fn, seq) {
    const r = await api.get(basePath + "/measurepoints/aggregate", { points: state.points.join(","), start: state.start, end: state.end, interval, fn });
    if (seq !== state.seq) return null;
    const series = state.points.map((p) => {
      const rows = r.points[p] || [];
      return { t: rows.map((x) => x.time), v: rows.map((x) => num(x.value)) };
    });
    return { series, total: 0 };
  }

  async function load() {
    const seq = ++state.seq;
    showRange();
    if (!state.points.length) {
      destroy();
      fill(chartBox, h("p", { class: "empty" }, "Choose a point to chart."));
      info.textContent = "";
      return;
    }
    const t0 = performance.now();
    const width = Math.max(200, chartBox.clientWidth || 800);
    const span = state.end - state.start;
    try {
      let mode = state.mode;
      let total = null;
      if (mode === "auto") {
        // how many samples are in the range: the sum of a coarse count aggregate
        const counts = await fetchAgg(Math.max(1, Math.ceil(span / 200)), "count", seq);
        if (!counts) return;
        total = counts.series.reduce((a, s) => a + s.v.reduce((x, y) => x + (y || 0), 0), 0);
        mode = total <= RAW_AUTO_MAX ? "raw" : "agg";
      }
      let got;
      let interval = 0;
      if (mode === "raw") got = await fetchRaw(seq);
      else {
        interval = Math.max(1, Math.ceil(span / width));
        got = await fetchAgg(interval, "avg", seq);
      }
      if (!got) return;
      const arrived = performance.now();
      const data = align(got.series);
      state.data = data;
      state.loadedMode = mode;
      state.interval = interval;
      const samples = got.series.reduce((a, s) => a + s.t.length, 0);
      draw(data, () => {
        const rendered = performance.now();
        chartBox.dataset.samples = String(samples);
        chartBox.dataset.mode = mode;
        chartBox.dataset.fetchMs = (arrived - t0).toFixed(1);
        chartBox.dataset.renderMs = (rendered - arrived).toFixed(1);
        chartBox.dataset.seq = String(seq);
        const what = mode === "raw" ? `${samples.toLocaleString("en")} raw samples` : `${samples.toLocaleString("en")} buckets of ${fmtSpan(interval)} (avg)${total !== null ? ` over ${total.toLocaleString("en")} samples` : ""}`;
        info.textContent = samples ? `${what}; drawn in ${(rendered - arrived).toFixed(0)} ms.` : "No samples in this range.";
        if (!tableBox.hidden) renderTable();
      });
    } catch (e) {
      if (seq === state.seq) info.textContent = "The history could not be read: " + errorText(e);
    }
  }

  function destroy() {
    if (plot) plot.destroy();
    plot = null;
  }

  function draw(data, done) {
    const width = Math.max(200, chartBox.clientWidth || 800);
    const height = Math.min(360, Math.max(220, Math.round(width * 0.45)));
    const opts = {
      width,
      height,
      ms: 1,
      scales: { x: { time: true, min: state.start, max: state.end, auto: false } },
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      series: [{ value: (u, v) => (v === null ? "—" : fmtTime(v)) }, ...state.points.map((p, i) => ({ label: p, stroke: COLORS[i % COLORS.length], width: 1.25, spanGaps: true, points: { show: false } }))],
      axes: [{}, { size: 60 }],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 4) return;
            const s = u.posToVal(u.select.left, "x");
            const e = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            zoomTo(s, e);
          },
        ],
      },
    };
    let first = true;
    opts.hooks.draw = [
      () => {
        if (!first) return;
        first = false;
        requestAnimationFrame(done);
      },
    ];
    destroy();
    fill(chartBox);
    plot = new uPlot(opts, data, chartBox);
  }

  function renderTable() {
    const d = state.data;
    if (!d || !d[0].length) {
      fill(tableBox, h("p", { class: "empty" }, "Nothing loaded."));
      return;
    }
    const n = d[0].length;
    const show = Math.min(n, 500);
    const rows = [];
    // newest first
    for (let i = n - 1; i >= n - show; i--) rows.push(h("tr", {}, h("td", { class: "nowrap" }, fmtTime(d[0][i])), state.points.map((_, j) => h("td", {}, d[j + 1][i] === null ? "" : String(d[j + 1][i])))));
    fill(tableBox, 
      h("p", { class: "muted" }, show < n ? `The newest ${show} of ${n} rows; Export CSV has them all.` : `${n} rows.`),
      h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "sr-only" }, "Loaded history"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), state.points.map((p) => h("th", { scope: "col" }, p)))), h("tbody", {}, rows))),
    );
  }

  tableBtn.addEventListener("click", () => {
    tableBox.hidden = !tableBox.hidden;
    tableBtn.setAttribute("aria-pressed", String(!tableBox.hidden));
    if (!tableBox.hidden) renderTable();
  });
  csvBtn.addEventListener("click", () => {
    const d = state.data;
    if (!d) return;
    const lines = [["time", "iso", ...state.points].join(",")];
    for (let i = 0; i < d[0].length; i++) {
      const row = [d[0][i], new Date(d[0][i]).toISOString()];
      for (let j = 1; j < d.length; j++) row.push(d[j][i] === null ? "" : d[j][i]);
      lines.push(row.join(","));
    }
    const kind = state.loadedMode === "raw" ? "raw" : `avg-${state.interval}ms`;
    saveBlob(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }), `history-${kind}-${state.start}-${state.end}.csv`);
  });

  let resizeTimer = 0;
  const ro = new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (plot && chartBox.clientWidth) plot.setSize({ width: chartBox.clientWidth, height: plot.height });
    }, 100);
  });
  ro.observe(chartBox);

  return {
    el,
    load,
    destroy: () => {
      ro.disconnect();
      destroy();
      state.seq++;
    },
    zoomTo,
  };
}

function fmtSpan(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60e3) return `${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s`;
  if (ms < 3600e3) return `${(ms / 60e3).toFixed(1)} min`;
  if (ms < 86400e3) return `${(ms / 3600e3).toFixed(1)} h`;
  return `${(ms / 86400e3).toFixed(1)} d`;
}
