// Devices of a product: search, online state, create one, import many from a CSV or
// JSON file (all or nothing, as the API creates them), delete.

import * as api from "../api.js";
import { h, table, link, form, toast, empty, pageHead, section, field, fmtTime, confirmDialog, badge, saveBlob, go, clearErrors, showError, fill } from "../ui.js";

const FIELDS = ["deviceKey", "name", "group", "assetId", "deviceSecret"];

// CSV with a header row (deviceKey required; name, group, assetId, deviceSecret) or a
// JSON list of such objects
export function parseDevices(text, filename) {
  const t = text.trim();
  if (filename.endsWith(".json") || t.startsWith("[") || t.startsWith("{")) {
    let v;
    try {
      v = JSON.parse(t);
    } catch (e) {
      throw new Error(`${filename} is not valid JSON: ${e.message}`);
    }
    if (!Array.isArray(v)) v = v.items || [v];
    return v.map((d, i) => {
      if (!d || typeof d.deviceKey !== "string") throw new Error(`item ${i + 1} has no deviceKey`);
      const out = {};
      for (const k of FIELDS) if (d[k] !== undefined && d[k] !== "") out[k] = String(d[k]);
      return out;
    });
  }
  const rows = csvRows(t);
  if (!rows.length) throw new Error(`${filename} is empty`);
  const head = rows[0].map((x) => x.trim());
  if (!head.includes("deviceKey")) throw new Error(`the first line of ${filename} must name the columns, deviceKey among them`);
  const unknown = head.filter((x) => !FIELDS.includes(x));
  if (unknown.length) throw new Error(`unknown column ${unknown[0]} (known: ${FIELDS.join(", ")})`);
  return rows.slice(1).filter((r) => r.some((c) => c.trim())).map((r) => {
    const out = {};
    head.forEach((k, i) => {
      if (r[i] !== undefined && r[i].trim() !== "") out[k] = r[i].trim();
    });
    return out;
  });
}

function csvRows(text) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
    } else cell += c;
  }
  row.push(cell);
  rows.push(row);
  return rows;
}

export function csvCell(v) {
  const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export async function devicesPage(main, { org, search }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const products = await api.all(base + "/products");
  main.append(pageHead("Devices", "Devices of a product, their online state (from real-time data) and their details pages."));
  if (!products.length) {
    main.append(empty("No products yet: devices belong to a product.", h("a", { class: "button", href: `#${base}/products` }, "Products")));
    return;
  }
  const pk = search.get("product") || products[0].productKey;
  const write = api.canWrite(org);
  const picker = field({
    name: "product",
    label: "Product",
    type: "select",
    value: pk,
    options: products.map((p) => [p.productKey, `${p.name} (${p.productKey})`]),
  });
  picker.querySelector("select").addEventListener("change", (ev) => go(`${base}/devices?product=${encodeURIComponent(ev.target.value)}`));
  const path = `${base}/products/${encodeURIComponent(pk)}/devices`;
  const [devices, online] = await Promise.all([api.all(path, {}, 20000), api.all(base + "/online", {}, 20000)]);
  const states = new Map(online.map((s) => [s.assetId, s]));
  const q = field({ name: "q", label: "Search", type: "search", placeholder: "key, name, group or asset id" });
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const listBox = h("div", {});
  const draw = () => {
    const needle = q.querySelector("input").value.trim().toLowerCase();
    const rows = needle ? devices.filter((d) => [d.deviceKey, d.name, d.group, d.assetId].some((x) => (x || "").toLowerCase().includes(needle))) : devices;
    count.textContent = needle ? `${rows.length} of ${devices.length} devices match` : `${devices.length} devices`;
    fill(listBox, 
      rows.length
        ? table(
            [
              { label: "Device key", get: (d) => link(`#${base}/products/${encodeURIComponent(pk)}/devices/${encodeURIComponent(d.deviceKey)}`, d.deviceKey) },
              { label: "Name", get: (d) => d.name || "—" },
              { label: "Group", get: (d) => d.group || "—" },
              { label: "Asset id", get: (d) => h("code", {}, d.assetId) },
              {
                label: "State",
                get: (d) => {
                  const s = states.get(d.assetId);
                  if (!s) return badge("never seen", "muted");
                  return h("span", {}, badge(s.online ? "online" : "offline", s.online ? "ok" : "muted"), " ", h("small", { class: "muted" }, "last seen ", fmtTime(s.lastSeen)));
                },
              },
              ...(write
                ? [{
                    label: "",
                    get: (d) =>
                      h("button", {
                        type: "button",
                        class: "small ghost",
                        "aria-label": `Delete device ${d.deviceKey}`,
                        onclick: async () => {
                          if (!(await confirmDialog(`Delete device ${d.deviceKey}? Its data is deleted with it.`))) return;
                          try {
                            await api.del(`${path}/${encodeURIComponent(d.deviceKey)}`);
                            devices.splice(devices.indexOf(d), 1);
                            toast("Device deleted");
                            draw();
                          } catch (e) {
                            toast(e.message, "error");
                          }
                        },
                      }, "Delete"),
                  }]
                : []),
            ],
            rows.slice(0, 500),
            { caption: "Devices" },
          )
        : empty(needle ? "No device matches the search." : "No devices yet."),
      rows.length > 500 ? h("p", { class: "muted" }, `The first 500 of ${rows.length} are shown; search to narrow.`) : null,
    );
  };
  q.querySelector("input").addEventListener("input", draw);
  const top = h("div", { class: "toolbar" }, picker, q);
  main.append(top);
  const out = h("div", {});
  if (write) main.append(h("div", { class: "grid2" }, createCard(path, devices, draw, out), importCard(path, devices, draw, out)), out);
  main.append(section("Devices", count, listBox));
  draw();
}

function createCard(path, devices, draw, out) {
  return section(
    "New device",
    null,
    form({
      fields: [
        { name: "deviceKey", label: "Device key", required: true },
        { name: "name", label: "Name" },
        { name: "group", label: "Group" },
      ],
      submit: "Create device",
      onSubmit: async (v, f) => {
        const body = { deviceKey: v.deviceKey.trim() };
        if (v.name) body.name = v.name;
        if (v.group) body.group = v.group;
        const d = await api.post(path, body);
        devices.push(d);
        f.reset();
        fill(out, h("div", { class: "alert ok" }, `Device ${d.deviceKey} created (asset id ${d.assetId}).`));
        toast(`Device ${d.deviceKey} created`);
        draw();
      },
    }),
  );
}

function importCard(path, devices, draw, out) {
  const f = h(
    "form",
    { class: "form", novalidate: true },
    field({ name: "file", label: "CSV or JSON file", type: "file", required: true, attrs: { accept: ".csv,.json,text/csv,application/json" }, help: "CSV with a header row: deviceKey, name, group, assetId, deviceSecret (only deviceKey needed); or a JSON list of such objects. All are created, or none." }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Import devices")),
  );
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(f);
    const file = f.querySelector("input[type=file]").files[0];
    if (!file) {
      showError(f, new api.ApiError(0, "required", "choose a file", "file"));
      return;
    }
    try {
      let list;
      try {
        list = parseDevices(await file.text(), file.name);
      } catch (e) {
        throw new api.ApiError(0, "bad_file", e.message, "file");
      }
      if (!list.length) throw new api.ApiError(0, "bad_file", `${file.name} lists no devices`, "file");
      let created;
      try {
        created = (await api.post(path, list)).items;
      } catch (e) {
        // "[3].deviceKey": the 4th device of the file
        const m = /^\[(\d+)\]\.?(.*)$/.exec(e.field || "");
        if (m) e.message = `device ${Number(m[1]) + 1} of the file (${list[Number(m[1])]?.deviceKey}): ${e.message}; nothing was imported`;
        e.field = "file";
        throw e;
      }
      devices.push(...created);
      f.reset();
      const csv = ["deviceKey,assetId,deviceSecret", ...created.map((d) => [d.deviceKey, d.assetId, d.deviceSecret].join(","))].join("\n");
      fill(out, 
        h(
          "div",
          { class: "alert ok", role: "status" },
          `${created.length} devices imported. `,
          h("button", { type: "button", class: "small", onclick: () => saveBlob(new Blob([csv], { type: "text/csv" }), "devices.csv") }, "Download their keys and secrets (CSV)"),
        ),
      );
      toast(`${created.length} devices imported`);
      draw();
    } catch (e) {
      showError(f, e);
    }
  });
  return section("Import devices", null, f);
}

