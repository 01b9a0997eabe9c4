// Enterprises (noti push): the list, create (the secret shown once), the details page
// with credentials, allow-list, products and event types, and the live queue figures.

import * as api from "../api.js";
import { h, table, link, form, toast, empty, pageHead, section, kv, fmtTime, secretBox, go, errorText, reload, fill, actionButton, copyCode, listBox } from "../ui.js";

const EVENT_TYPES = ["device_online", "device_offline", "attr_fault", "attr_alert", "device_status_raw", "device_status_kv"];

function lines(text) {
  return text
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter(Boolean);
}

function enterpriseFields(products, e = {}) {
  return [
    { name: "name", label: "Name", required: true, value: e.name },
    { name: "products", label: "Products (hold Ctrl or Shift for several)", type: "select", options: products.map((p) => [p.productKey, `${p.name} (${p.productKey})`]), attrs: { multiple: true, size: Math.min(5, Math.max(2, products.length)) } },
    { name: "eventTypes", label: "Event types", type: "select", options: EVENT_TYPES.map((t) => [t, t]), attrs: { multiple: true, size: 6 } },
    { name: "ipAllowList", label: "IP allow-list", type: "textarea", rows: 2, value: (e.ipAllowList || []).join("\n"), help: "Addresses or networks (CIDR), one per line; empty: any address." },
    { name: "historyEvents", label: "Also push events of history (offline) data", type: "checkbox", value: e.historyEvents },
    { name: "retentionSeconds", label: "Retention (s)", type: "number", value: e.retentionSeconds ?? 0, help: "0: the hub's push.retention_seconds." },
    { name: "maxQueue", label: "Queue limit (events)", type: "number", value: e.maxQueue ?? 0, help: "0: the hub's push.max_queue." },
  ];
}

function selectAll(f, name, chosen) {
  for (const o of f.querySelector(`select[name=${name}]`).options) o.selected = chosen.includes(o.value);
}

function bodyOf(v, f) {
  const sel = (n) => [...f.querySelector(`select[name=${n}]`).selectedOptions].map((o) => o.value);
  return {
    name: v.name,
    products: sel("products"),
    eventTypes: sel("eventTypes"),
    ipAllowList: lines(v.ipAllowList || ""),
    historyEvents: v.historyEvents,
    retentionSeconds: v.retentionSeconds ?? 0,
    maxQueue: v.maxQueue ?? 0,
  };
}

export async function enterprisesPage(main, { org }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const [items, products] = await Promise.all([api.all(base + "/enterprises"), api.all(base + "/products")]);
  const write = api.canWrite(org);
  main.append(pageHead("Enterprises", "Applications that receive device events over the noti push protocol (TLS JSON lines)."));
  const out = h("div", {});
  if (write) {
    const f = form({
      fields: enterpriseFields(products),
      submit: "Create enterprise",
      onSubmit: async (v, f) => {
        const e = await api.post(base + "/enterprises", bodyOf(v, f));
        f.reset();
        fill(out, secretBox(`Enterprise ${e.name} created`, [["endpoint", e.endpoint || "noti is off on this hub"], ["enterprise_id", e.enterpriseId], ["enterprise_secret", e.enterpriseSecret]]));
        toast("Enterprise created");
        list.show(await api.all(base + "/enterprises"));
      },
    });
    selectAll(f, "eventTypes", ["device_online", "device_offline", "device_status_kv"]);
    main.append(section("New enterprise", null, products.length ? f : empty("Create a product first: an enterprise receives events of products.")));
  }
  const list = listBox(items, (xs) => entTable(base, xs), "No enterprises yet.");
  main.append(out, section("Enterprises", null, list.el));
}

function entTable(base, items) {
  return table(
    [
      { label: "Name", get: (e) => link(`#${base}/enterprises/${encodeURIComponent(e.enterpriseId)}`, e.name) },
      { label: "Enterprise id", get: (e) => h("code", {}, e.enterpriseId) },
      { label: "Products", get: (e) => e.products.join(", ") },
      { label: "Events", get: (e) => e.eventTypes.join(", ") },
    ],
    items,
    { caption: "Enterprises" },
  );
}

export async function enterprisePage(main, { org, ent }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const path = `${base}/enterprises/${encodeURIComponent(ent)}`;
  const [e, products] = await Promise.all([api.get(path), api.all(base + "/products")]);
  const write = api.canWrite(org);
  const out = h("div", {});
  const actions = write
    ? [
        actionButton(
          "Reset secret",
          async () => {
            const r = await api.post(path + "/reset-secret");
            fill(out, secretBox("New enterprise secret", [["enterprise_id", r.enterpriseId], ["enterprise_secret", r.enterpriseSecret]]));
          },
          { confirm: "Reset the enterprise secret? Connections logged in with the old one are closed." },
        ),
        actionButton(
          "Delete",
          async () => {
            await api.del(path);
            toast("Enterprise deleted");
            go(`${base}/enterprises`);
          },
          { confirm: `Delete enterprise ${e.name}? Its queue is dropped.`, danger: true },
        ),
      ]
    : null;
  const stats = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  main.append(
    pageHead(e.name, `Enterprise ${e.enterpriseId}`, actions),
    out,
    section(
      "Credentials",
      null,
      kv([
        ["Endpoint", e.endpoint ? copyCode(e.endpoint) : "noti is off on this hub"],
        ["enterprise_id", copyCode(e.enterpriseId)],
        ["enterprise_secret", h("span", { class: "muted" }, "shown only when created or reset")],
        ["IP allow-list", e.ipAllowList.length ? e.ipAllowList.join(", ") : "any address"],
        ["Products", e.products.join(", ")],
        ["Event types", e.eventTypes.join(", ")],
        ["History events", e.historyEvents ? "yes" : "no"],
        ["Created", fmtTime(e.createdAt)],
      ]),
    ),
    section("Queue", h("button", { type: "button", class: "small", onclick: () => loadStats() }, "Refresh"), stats),
  );
  async function loadStats() {
    try {
      const s = await api.get(path + "/stats");
      fill(stats, 
        h(
          "div",
          { class: "figures" },
          [
            ["Connections", s.connections],
            ["Queue depth", s.depth],
            ["Unacked", s.unacked],
            ["Stored", s.stored],
            ["Enqueued", s.enqueued],
            ["Delivered", s.delivered],
            ["Acked", s.acked],
            ["Redelivered", s.redelivered],
            ["Expired", s.expired],
          ].map(([k, v]) => h("div", { class: "figure" }, h("span", { class: "figure-value" }, String(v)), h("span", { class: "figure-label" }, k))),
        ),
        h("p", { class: "muted" }, `Counters since the hub started. Retention ${s.retentionSeconds} s, queue limit ${s.maxQueue} events.`),
      );
    } catch (err) {
      fill(stats, h("p", { class: "alert error" }, errorText(err)));
    }
  }
  loadStats();
  const timer = setInterval(loadStats, 5000);
  if (write) {
    const f = form({
      fields: enterpriseFields(products, e),
      onSubmit: async (v, f) => {
        await api.patch(path, bodyOf(v, f));
        toast("Enterprise saved");
        reload();
      },
    });
    selectAll(f, "products", e.products);
    selectAll(f, "eventTypes", e.eventTypes);
    main.append(section("Edit", null, f));
  }
  return () => clearInterval(timer);
}
