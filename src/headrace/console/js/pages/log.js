// A message log (a channel's): pages of records newest first, filters by kind, device,
// error code and time (all applied by the hub), each record expandable to the bytes the
// hub received (a payload record's text or hex) and its whole document, and a live tail
// (server-sent events) that renders at most once per frame so that a fast stream never
// freezes the page.

import * as api from "../api.js";
import { h, section, field, fmtTime, fromLocalInput, toLocalInput, errorText, fill } from "../ui.js";

const MAX_ROWS = 200; // rows kept on screen while tailing (older ones scroll away)
const PER_FRAME = 100; // rows drawn per redraw at most while tailing (all are counted)
const FLUSH_MS = 200; // redraws of the tail: 5 a second

export function summary(r) {
  if (r.kind === "connection") {
    const what = r.event === "disconnect" ? "disconnected" : r.event === "connect" ? "connect" : r.event || "connection";
    return [what, r.clientId && `client ${r.clientId}`, r.address && `from ${r.address}`, r.result, r.reason].filter(Boolean).join(" · ");
  }
  if (r.kind === "payload") {
    return [r.topic, r.items !== undefined && `${r.items} items`, r.size !== undefined && `${r.size} B`, r.code !== undefined && `code ${r.code}`, r.ms !== undefined && `${r.ms} ms`].filter(Boolean).join(" · ");
  }
  const first = r.errors && r.errors[0];
  return [r.code !== undefined && `code ${r.code}`, r.message, first && first.message && first.message !== r.message && `(${first.message})`, r.topic].filter(Boolean).join(" · ");
}

export function codesOf(r) {
  const out = new Set();
  if (r.code !== undefined) out.add(String(r.code));
  for (const e of r.errors || []) if (e.code !== undefined) out.add(String(e.code));
  return out;
}

// the devices a record names, as the hub's live-tail filter reads them: its deviceKey,
// its devices list, the deviceKey of each item error
export function devicesOf(r) {
  const out = new Set();
  if (typeof r.deviceKey === "string") out.add(r.deviceKey);
  for (const d of Array.isArray(r.devices) ? r.devices : []) out.add(String(d));
  for (const e of Array.isArray(r.errors) ? r.errors : []) if (e && typeof e.deviceKey === "string") out.add(e.deviceKey);
  return out;
}

const HEX_LINE = 16; // bytes per line of a hex dump

// "0000  7b 22 69 64  ...  {"id"..." lines of a binary payload
export function hexDump(hex) {
  const lines = [];
  for (let i = 0; i < hex.length; i += HEX_LINE * 2) {
    const bytes = hex.slice(i, i + HEX_LINE * 2).match(/../g) || [];
    const text = bytes.map((b) => {
      const c = parseInt(b, 16);
      return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
    });
    lines.push(`${(i / 2).toString(16).padStart(4, "0")}  ${bytes.join(" ").padEnd(HEX_LINE * 3 - 1)}  ${text.join("")}`);
  }
  return lines.join("\n");
}

// an expanded record: the received bytes of a payload record (text, or a hex dump of a
// binary one; the hub keeps the first 4,096 bytes), then the record's other fields
export function recordDetail(r) {
  const { payload, payloadHex, payloadTruncated, ...rest } = r;
  const parts = [];
  if (payload !== undefined || payloadHex !== undefined) {
    const kept = payload !== undefined ? new TextEncoder().encode(payload).length : payloadHex.length / 2;
    const what = payload !== undefined ? "text" : "binary, hex";
    parts.push(
      h("h3", { class: "detail-title" }, `Received payload (${what}, ${r.size ?? kept} bytes)`),
      payloadTruncated ? h("p", { class: "muted" }, `The hub keeps the first ${kept} of the ${r.size} bytes.`) : null,
      h("pre", { class: "payload", tabindex: "0", "aria-label": `Payload of record ${r.id}` }, payload !== undefined ? payload : hexDump(payloadHex)),
      h("h3", { class: "detail-title" }, "Record"),
    );
  }
  parts.push(h("pre", { class: "json", tabindex: "0", "aria-label": `Record ${r.id}` }, JSON.stringify(rest, null, 2)));
  return h("div", { class: "record-detail" }, parts);
}

export function messageLog({ logPath, streamPath, kinds, search }) {
  const f = {
    kinds: new Set((search?.get("kind") || kinds.join(",")).split(",").filter((k) => kinds.includes(k))),
    device: search?.get("device") || "",
    code: search?.get("code") || "",
    start: null,
    end: null,
  };
  // the hub filters the pages and the tail; this check keeps the tail in the time range
  // and the fallback poll in the filters
  const matches = (r) =>
    f.kinds.has(r.kind) &&
    (!f.code || codesOf(r).has(f.code)) &&
    (!f.device || devicesOf(r).has(f.device)) &&
    (f.start === null || r.time >= f.start) &&
    (f.end === null || r.time < f.end);

  const tbody = h("tbody", {});
  const records = new WeakMap(); // row -> record
  const status = h("p", { class: "muted log-status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "small", hidden: true }, "Load older records");
  const liveBtn = h("button", { type: "button", "aria-pressed": "false", class: "live-toggle" }, "Live tail");
  let cursor = null;
  let shown = 0;

  function row(r) {
    const kindClass = r.kind === "error" ? "err" : r.kind === "connection" ? "conn" : "ok";
    const btn = h("button", { type: "button", class: "small ghost expand", "aria-expanded": "false", "aria-label": `Show record ${r.id}` }, "▸");
    const tr = h(
      "tr",
      { class: `log-row ${r.kind}` },
      h("td", { "data-label": "" }, btn),
      h("td", { "data-label": "Time", class: "nowrap" }, fmtTime(r.time)),
      h("td", { "data-label": "Kind" }, h("span", { class: `badge ${kindClass}` }, r.kind)),
      h("td", { "data-label": "Record", class: "summary" }, summary(r)),
    );
    records.set(tr, r);
    return tr;
  }

  tbody.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button.expand");
    if (!btn) return;
    const tr = btn.closest("tr");
    const open = btn.getAttribute("aria-expanded") === "true";
    if (open) {
      tr.nextElementSibling?.classList.contains("log-detail") && tr.nextElementSibling.remove();
      btn.setAttribute("aria-expanded", "false");
      btn.textContent = "▸";
      return;
    }
    const r = records.get(tr);
    const detail = h("tr", { class: "log-detail" }, h("td", { colspan: 4 }, recordDetail(r)));
    tr.after(detail);
    btn.setAttribute("aria-expanded", "true");
    btn.textContent = "▾";
  });

  function setStatus() {
    status.textContent = shown ? `${shown} records shown` : "No records match the filters.";
  }

  async function load(older = false) {
    if (!older) {
      fill(tbody);
      shown = 0;
      cursor = null;
    }
    status.textContent = "Loading…";
    // the hub filters by kind, time, device and code; a page it filtered by device or code
    // may come back short (it reads a bounded number of records per page): read on a few
    // pages while they are empty
    let page;
    for (let tries = 0; tries < 5; tries++) {
      try {
        page = await api.get(logPath, {
          kind: [...f.kinds].join(","),
          start: f.start ?? undefined,
          end: f.end ?? undefined,
          device: f.device || undefined,
          code: f.code || undefined,
          limit: 200,
          cursor: older || tries ? cursor : undefined,
        });
      } catch (e) {
        status.textContent = "The log could not be read: " + errorText(e);
        return;
      }
      cursor = page.nextCursor;
      if (page.items.length || !cursor) break;
    }
    const frag = document.createDocumentFragment();
    for (const r of page.items) {
      frag.append(row(r));
      shown++;
    }
    tbody.append(frag);
    more.hidden = !cursor;
    setStatus();
  }
  more.addEventListener("click", () => load(true));

  // -- live tail -------------------------------------------------------------------------
  let ctrl = null;
  let pending = [];
  let frame = 0;
  let received = 0;
  let dropped = 0;
  let rateTimer = 0;
  let lastCount = 0;
  const liveInfo = h("span", { class: "muted live-info", "aria-live": "off" });

  // the time this page spends on the tail (parsing and rendering), for bench/console.py
  let busy = 0;
  function flush() {
    const t0 = performance.now();
    frame = 0;
    if (!pending.length) return;
    // more than a frame can show: only the newest rows are drawn (all are counted)
    const batch = pending.length > PER_FRAME ? pending.slice(-PER_FRAME) : pending;
    pending = [];
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(row(batch[i]));
    tbody.prepend(frag);
    let extra = tbody.children.length - MAX_ROWS;
    while (extra-- > 0) tbody.lastElementChild.remove();
    shown = tbody.children.length;
    busy += performance.now() - t0;
    liveInfo.dataset.busyMs = busy.toFixed(1);
  }

  function onRecord(r) {
    received++;
    if (!matches(r)) return;
    pending.push(r);
    if (pending.length > MAX_ROWS * 4) pending.splice(0, pending.length - MAX_ROWS);
    // at most one redraw per FLUSH_MS, in an animation frame: a redraw of the table
    // (style, layout, paint) costs the same for 1 new row as for 100
    if (!frame) frame = setTimeout(() => (frame = requestAnimationFrame(flush)), FLUSH_MS);
  }

  async function tail(signal) {
    let lastId = null;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        await api.stream(
          streamPath,
          { kinds: [...f.kinds].join(","), device: f.device || undefined, code: f.code || undefined, lastEventId: lastId ?? undefined },
          (ev) => {
            if (ev.event === "gap") {
              dropped++;
              liveInfo.dataset.gap = String(dropped);
              status.textContent = "The hub skipped records this page did not read fast enough (gap).";
              return;
            }
            if (ev.event !== "message" && ev.event !== "record") return;
            const t0 = performance.now();
            const r = JSON.parse(ev.data);
            lastId = ev.id ?? r.id;
            onRecord(r);
            busy += performance.now() - t0;
          },
          signal,
        );
        attempt = 0;
      } catch (e) {
        if (signal.aborted) return;
        if (e.status === 404 || e.status === 405) {
          status.textContent = "This hub has no live log stream; showing new records every 2 s instead.";
          return poll(signal);
        }
        status.textContent = `Live tail interrupted (${errorText(e)}); reconnecting…`;
      }
      await new Promise((res) => setTimeout(res, Math.min(5000, 500 * (attempt + 1))));
    }
  }

  // fallback: newest records every 2 s (no stream on this hub)
  async function poll(signal) {
    let since = Date.now() - 1000;
    const seen = new Set();
    while (!signal.aborted) {
      try {
        const page = await api.get(logPath, { kind: [...f.kinds].join(","), device: f.device || undefined, code: f.code || undefined, start: since, limit: 1000 }, { signal });
        const fresh = page.items.filter((r) => !seen.has(r.id)).reverse();
        for (const r of fresh) {
          seen.add(r.id);
          since = Math.max(since, r.time);
          onRecord(r);
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      await new Promise((res) => setTimeout(res, 2000));
    }
  }

  function startLive() {
    stopLive();
    ctrl = new AbortController();
    received = 0;
    lastCount = 0;
    liveBtn.setAttribute("aria-pressed", "true");
    liveBtn.textContent = "Stop live tail";
    liveBtn.classList.add("on");
    rateTimer = setInterval(() => {
      liveInfo.textContent = `live · ${received} received · ${received - lastCount}/s`;
      lastCount = received;
    }, 1000);
    liveInfo.textContent = "live · waiting for records";
    tail(ctrl.signal);
  }

  function stopLive() {
    if (ctrl) ctrl.abort();
    ctrl = null;
    clearInterval(rateTimer);
    if (frame) {
      clearTimeout(frame);
      cancelAnimationFrame(frame);
    }
    frame = 0;
    pending = [];
    liveBtn.setAttribute("aria-pressed", "false");
    liveBtn.textContent = "Live tail";
    liveBtn.classList.remove("on");
    liveInfo.textContent = "";
  }

  liveBtn.addEventListener("click", () => (ctrl ? stopLive() : startLive()));

  // -- filters ---------------------------------------------------------------------------
  const filterForm = h(
    "form",
    { class: "filters", "aria-label": "Log filters" },
    h(
      "fieldset",
      { class: "kinds" },
      h("legend", {}, "Kinds"),
      kinds.map((k) => field({ name: "kind", label: k, type: "checkbox", value: f.kinds.has(k), attrs: { value: k } })),
    ),
    field({ name: "device", label: "Device key", value: f.device, placeholder: "any" }),
    field({ name: "code", label: "Error code", value: f.code, placeholder: "any", attrs: { inputmode: "numeric" } }),
    field({ name: "start", label: "From", type: "datetime-local" }),
    field({ name: "end", label: "Until", type: "datetime-local" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Apply filters")),
  );
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    f.kinds = new Set([...filterForm.querySelectorAll("input[name=kind]")].filter((x) => x.checked).map((x) => x.value));
    f.device = filterForm.querySelector("[name=device]").value.trim();
    const code = filterForm.querySelector("[name=code]").value.trim();
    if (code && !/^\d+$/.test(code)) {
      status.textContent = "The error code is a number, such as 1204.";
      return;
    }
    f.code = code;
    f.start = fromLocalInput(filterForm.querySelector("[name=start]").value);
    f.end = fromLocalInput(filterForm.querySelector("[name=end]").value);
    const live = !!ctrl;
    load();
    if (live) startLive();
  });

  const el = section(
    "Message log",
    [liveInfo, liveBtn],
    filterForm,
    status,
    h(
      "div",
      { class: "table-wrap log" },
      h(
        "table",
        { class: "log-table" },
        h("caption", { class: "sr-only" }, "Message log, newest first"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Details")), h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "Record"))),
        tbody,
      ),
    ),
    more,
  );
  el.classList.add("message-log");
  load();
  return {
    el,
    stop: stopLive,
    // for the bench: feed records as the stream would
    _onRecord: onRecord,
  };
}

export { toLocalInput };
