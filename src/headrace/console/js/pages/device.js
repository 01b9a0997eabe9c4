// A device's page: latest values, attributes, events, online history, the history chart
// and its files (list, preview of images and text, download, delete).

import * as api from "../api.js";
import { h, table, toast, empty, pageHead, section, kv, fmtTime, fmtValue, fmtBytes, confirmDialog, badge, form, reload, errorText, saveBlob, fill } from "../ui.js";
import { historyChart, NUMERIC } from "../chart.js";

const TEXT_TYPES = /^(text\/|application\/(json|xml|csv|x-ndjson))/;
const TEXT_NAMES = /\.(txt|log|csv|json|xml|md|ini|yaml|yml|conf)$/i;
const IMAGE_NAMES = /\.(png|jpe?g|gif|webp|bmp|svg)$/i;
const PREVIEW_BYTES = 64 * 1024;

export async function devicePage(main, { org, pk, dk }) {
  const o = encodeURIComponent(org);
  const base = `/orgs/${o}`;
  const path = `${base}/products/${encodeURIComponent(pk)}/devices/${encodeURIComponent(dk)}`;
  const [d, product] = await Promise.all([api.get(path), api.get(`${base}/products/${encodeURIComponent(pk)}`)]);
  const [model, latest, attrs, online] = await Promise.all([
    api.get(`${base}/models/${encodeURIComponent(product.modelId)}`),
    api.get(path + "/measurepoints/latest"),
    api.get(path + "/attributes"),
    api.get(path + "/online"),
  ]);
  const write = api.canWrite(org);
  main.append(
    pageHead(d.name || d.deviceKey, `Device ${d.deviceKey} of product ${product.name} (${pk})`, [
      badge(online.online ? "online" : online.lastSeen ? "offline" : "never seen", online.online ? "ok" : "muted"),
      h("a", { class: "button", href: `#${base}/devices?product=${encodeURIComponent(pk)}` }, "All devices"),
    ]),
    section(
      "Details",
      null,
      kv([
        ["Device key", h("code", {}, d.deviceKey)],
        ["Asset id", h("code", {}, d.assetId)],
        ["Group", d.group || "—"],
        ["Model", h("a", { href: `#${base}/models/${encodeURIComponent(product.modelId)}` }, product.modelId)],
        ["Online", online.online ? `since ${fmtTime(online.since)}` : online.lastSeen ? `offline since ${fmtTime(online.since)}` : "no real-time data yet"],
        ["Last seen", fmtTime(online.lastSeen)],
        ["Created", fmtTime(d.createdAt)],
      ]),
      write
        ? h(
            "details",
            {},
            h("summary", {}, "Edit name and group"),
            form({
              class: "inline",
              fields: [
                { name: "name", label: "Name", value: d.name },
                { name: "group", label: "Group", value: d.group },
              ],
              onSubmit: async (v) => {
                await api.patch(path, v);
                toast("Device saved");
                reload();
              },
            }),
          )
        : null,
    ),
  );

  // latest values
  model.measurepoints = model.measurepoints || [];
  const specs = new Map(model.measurepoints.map((m) => [m.id, m]));
  const latestRows = Object.entries(latest.points);
  main.append(
    section(
      "Latest values",
      null,
      latestRows.length
        ? table(
            [
              { label: "Point", get: ([p]) => h("span", {}, p, specs.get(p)?.name ? h("small", { class: "muted" }, ` ${specs.get(p).name}`) : null) },
              { label: "Value", get: ([p, s]) => h("strong", {}, fmtValue(s.value), specs.get(p)?.unit ? ` ${specs.get(p).unit}` : "") },
              { label: "Quality", get: ([, s]) => (s.quality === undefined ? "—" : String(s.quality)) },
              { label: "Time", get: ([, s]) => fmtTime(s.time) },
            ],
            latestRows,
            { caption: "Latest values" },
          )
        : empty("No data from this device yet."),
    ),
  );

  // history chart
  const numeric = model.measurepoints.filter((m) => NUMERIC.has(m.type)).map((m) => m.id);
  let chart = null;
  const chartSection = section("History", null);
  main.append(chartSection);
  const times = latestRows.map(([, s]) => s.time);
  if (!numeric.length) chartSection.append(empty("This model has no numeric measurepoints to chart."));
  else {
    let start = Date.now() - 86400e3;
    let end = Date.now();
    if (times.length) {
      end = Math.max(...times) + 1;
      try {
        const first = await api.get(path + "/measurepoints", { points: numeric.join(","), start: 0, end, limit: 1, order: "asc" });
        if (first.items.length) start = first.items[0].time;
      } catch {
        /* keep the default */
      }
      if (end - start < 1000) start = end - 60000;
    }
    // the points that have data come first
    const withData = numeric.filter((p) => latest.points[p]);
    chart = historyChart({ basePath: path, points: [...withData, ...numeric.filter((p) => !latest.points[p])], range: { start, end } });
    chartSection.append(chart.el);
    chart.load();
  }

  // attributes
  const attrRows = Object.entries(attrs.attributes);
  main.append(
    section(
      "Attributes",
      null,
      attrRows.length
        ? table(
            [
              { label: "Attribute", get: ([k]) => k },
              { label: "Value", get: ([, a]) => fmtValue(a.value) },
              { label: "Updated", get: ([, a]) => fmtTime(a.updateTime) },
            ],
            attrRows,
            { caption: "Attributes" },
          )
        : empty("No attribute values yet."),
    ),
  );

  // events and online history, loaded after the rest
  const eventsBox = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const onlineBox = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const filesBox = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  main.append(section("Events", null, eventsBox), section("Online history", null, onlineBox), section("Files", null, filesBox));
  api.get(path + "/events", { start: 0, limit: 200 }).then(
    (r) =>
      fill(eventsBox, 
        r.items.length
          ? table(
              [
                { label: "Event", get: (e) => e.event },
                { label: "Time", get: (e) => fmtTime(e.time) },
                { label: "Outputs", get: (e) => h("code", {}, JSON.stringify(e.outputs)) },
              ],
              r.items.slice(-200).reverse(),
              { caption: "Events" },
            )
          : empty("No events."),
      ),
    (e) => fill(eventsBox, h("p", { class: "alert error" }, errorText(e))),
  );
  api.get(path + "/online/changes", { start: 0, limit: 1000 }).then(
    (r) =>
      fill(onlineBox, 
        r.items.length
          ? table(
              [
                { label: "Change", get: (c) => badge(c.online ? "online" : "offline", c.online ? "ok" : "muted") },
                { label: "Time", get: (c) => fmtTime(c.ts) },
                { label: "Address", get: (c) => c.ip || "—" },
              ],
              r.items.slice(-100).reverse(),
              { caption: "Online history" },
            )
          : empty("No online changes: the device has sent no real-time data."),
      ),
    (e) => fill(onlineBox, h("p", { class: "alert error" }, errorText(e))),
  );
  const files = filesSection(path, filesBox, write);
  files.load();

  return () => {
    chart?.destroy();
    files.stop();
  };
}

function filesSection(path, box, write) {
  const urls = [];
  const stop = () => urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  const contentUrl = (f) => `/api/v1${path}/files/${encodeURIComponent(f.id)}/content`;
  async function fetchContent(f, range) {
    const r = await api.api("GET", `${path}/files/${encodeURIComponent(f.id)}/content`, { raw: true, headers: range ? { range } : {} });
    return r.blob();
  }
  async function preview(f, cell, btn) {
    btn.disabled = true;
    try {
      const kind = IMAGE_NAMES.test(f.originalFilename) || (f.contentType || "").startsWith("image/") ? "image" : TEXT_TYPES.test(f.contentType || "") || TEXT_NAMES.test(f.originalFilename) ? "text" : null;
      if (!kind) {
        fill(cell, h("p", { class: "muted" }, "No preview for this kind of file; download it."));
        return;
      }
      if (kind === "image") {
        const blob = await fetchContent(f);
        const url = URL.createObjectURL(blob.type.startsWith("image/") ? blob : new Blob([blob], { type: "image/" + (f.originalFilename.split(".").pop().toLowerCase().replace("jpg", "jpeg").replace("svg", "svg+xml")) }));
        urls.push(url);
        fill(cell, h("img", { src: url, alt: `Preview of ${f.originalFilename}`, class: "preview" }));
      } else {
        const blob = await fetchContent(f, `bytes=0-${PREVIEW_BYTES - 1}`);
        const text = await blob.text();
        fill(cell, h("pre", { class: "preview", tabindex: "0", "aria-label": `Preview of ${f.originalFilename}` }, text), f.fileSize > PREVIEW_BYTES ? h("p", { class: "muted" }, `The first ${fmtBytes(PREVIEW_BYTES)} of ${fmtBytes(f.fileSize)}.`) : null);
      }
    } catch (e) {
      fill(cell, h("p", { class: "alert error" }, errorText(e)));
    } finally {
      btn.disabled = false;
    }
  }
  async function load() {
    let items;
    try {
      items = await api.all(path + "/files");
    } catch (e) {
      fill(box, h("p", { class: "alert error" }, errorText(e)));
      return;
    }
    if (!items.length) {
      fill(box, empty("No files. Files arrive with real-time data over the HTTP integration (multipart uploads)."));
      return;
    }
    const previews = new Map();
    const t = table(
      [
        { label: "File", get: (f) => h("span", {}, f.originalFilename, h("br"), h("small", { class: "muted" }, h("code", {}, f.fileUri))) },
        { label: "Size", get: (f) => fmtBytes(f.fileSize) },
        { label: "Type", get: (f) => f.contentType || "—" },
        { label: "Uploaded", get: (f) => fmtTime(f.createTime) },
        {
          label: "Actions",
          get: (f) => {
            const cell = h("div", { class: "preview-box" });
            previews.set(f.id, cell);
            const pv = h("button", { type: "button", class: "small", onclick: (ev) => preview(f, cell, ev.currentTarget) }, "Preview");
            // with a session cookie the browser downloads the file itself (no copy in
            // memory); with the admin token it must be fetched with the header
            const dl = api.session.token
              ? h("button", { type: "button", class: "small", onclick: async () => saveBlob(await fetchContent(f), f.originalFilename) }, "Download")
              : h("a", { class: "button small", href: contentUrl(f), download: f.originalFilename }, "Download");
            const rm = write
              ? h("button", {
                  type: "button",
                  class: "small danger",
                  onclick: async () => {
                    if (!(await confirmDialog(`Delete file ${f.originalFilename}? Data referring to it stays; downloads answer 404.`))) return;
                    try {
                      await api.del(`${path}/files/${encodeURIComponent(f.id)}`);
                      toast(`File ${f.originalFilename} deleted`);
                      load();
                    } catch (e) {
                      toast(errorText(e), "error");
                    }
                  },
                }, "Delete")
              : null;
            return h("div", {}, h("div", { class: "row-actions" }, pv, dl, rm), cell);
          },
        },
      ],
      items,
      { caption: "Files", rowAttrs: (f) => ({ "data-file": f.originalFilename }) },
    );
    fill(box, t);
  }
  return { load, stop };
}
