// Products: the list, create (its key and secret shown once), details, edit, delete.

import * as api from "../api.js";
import { h, table, link, form, toast, empty, pageHead, section, kv, fmtTime, confirmDialog, secretBox, go, alertBox, reload, fill } from "../ui.js";

export async function productsPage(main, { org }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const [items, models] = await Promise.all([api.all(base + "/products"), api.all(base + "/models")]);
  const write = api.canWrite(org);
  main.append(pageHead("Products", "A product is a kind of device: it names the thing model its devices follow and their data format."));
  const out = h("div", {});
  if (write) {
    main.append(
      section(
        "New product",
        null,
        models.length
          ? form({
              class: "inline",
              fields: [
                { name: "name", label: "Name", required: true },
                { name: "modelId", label: "Thing model", type: "select", required: true, options: models.map((m) => [m.id, m.name ? `${m.id} (${m.name})` : m.id]) },
                { name: "dataFormat", label: "Data format", type: "select", options: [["json", "JSON (EnOS requests)"], ["custom", "custom (raw bytes through a parsing script)"]] },
                { name: "inactivityTimeout", label: "Offline after (s)", type: "number", value: 300, help: "A device without real-time data for this long is offline." },
                { name: "productKey", label: "Product key", help: "Optional; generated when empty." },
              ],
              submit: "Create product",
              onSubmit: async (v, f) => {
                const body = { name: v.name, modelId: v.modelId, dataFormat: v.dataFormat };
                if (v.inactivityTimeout !== null) body.inactivityTimeout = v.inactivityTimeout;
                if (v.productKey) body.productKey = v.productKey;
                const p = await api.post(base + "/products", body);
                f.reset();
                fill(out, secretBox(`Product ${p.name} created`, [["productKey", p.productKey], ["productSecret", p.productSecret]]));
                toast(`Product ${p.productKey} created`);
                const list = await api.all(base + "/products");
                fill(listBox, productTable(base, list));
              },
            })
          : empty("Create a thing model first: a product needs one.", h("a", { class: "button", href: `#${base}/models/new` }, "New model")),
      ),
    );
  }
  const listBox = h("div", {}, items.length ? productTable(base, items) : empty("No products yet."));
  main.append(out, section("Products", null, listBox));
}

function productTable(base, items) {
  return table(
    [
      { label: "Name", get: (p) => link(`#${base}/products/${encodeURIComponent(p.productKey)}`, p.name) },
      { label: "Product key", get: (p) => h("code", {}, p.productKey) },
      { label: "Model", get: (p) => link(`#${base}/models/${encodeURIComponent(p.modelId)}`, p.modelId) },
      { label: "Format", get: (p) => p.dataFormat },
      { label: "Devices", get: (p) => link(`#${base}/devices?product=${encodeURIComponent(p.productKey)}`, "Devices") },
    ],
    items,
    { caption: "Products" },
  );
}

export async function productPage(main, { org, pk }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const path = `${base}/products/${encodeURIComponent(pk)}`;
  const [p, models] = await Promise.all([api.get(path), api.all(base + "/models")]);
  const write = api.canWrite(org);
  const actions = [
    h("a", { class: "button", href: `#${base}/devices?product=${encodeURIComponent(pk)}` }, "Devices"),
    h("a", { class: "button", href: `#${path}/script` }, "Parsing script"),
    write
      ? h("button", {
          type: "button",
          onclick: async () => {
            if (!(await confirmDialog(`Give product ${pk} a new productSecret? Signed logins with the old one are refused from now on.`, "Reset secret"))) return;
            try {
              const r = await api.post(path + "/reset-secret");
              out.replaceChildren(secretBox("New product secret", [["productKey", r.productKey], ["productSecret", r.productSecret]]));
            } catch (e) {
              main.prepend(alertBox(e));
            }
          },
        }, "Reset secret")
      : null,
    write
      ? h("button", {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!(await confirmDialog(`Delete product ${pk}? It must have no devices.`))) return;
            try {
              await api.del(path);
              toast("Product deleted");
              go(`${base}/products`);
            } catch (e) {
              main.prepend(alertBox(e));
            }
          },
        }, "Delete")
      : null,
  ];
  const out = h("div", {});
  main.append(
    pageHead(p.name, `Product ${p.productKey}`, actions),
    out,
    section(
      "Details",
      null,
      kv([
        ["Product key", h("code", {}, p.productKey)],
        ["Product secret", h("span", { class: "muted" }, "shown when created or reset")],
        ["Thing model", link(`#${base}/models/${encodeURIComponent(p.modelId)}`, p.modelId)],
        ["Data format", p.dataFormat],
        ["Offline after", `${p.inactivityTimeout} s`],
        ["Created", fmtTime(p.createdAt)],
        ["Description", p.description || "—"],
      ]),
    ),
  );
  if (write) {
    main.append(
      section(
        "Edit",
        null,
        form({
          fields: [
            { name: "name", label: "Name", value: p.name, required: true },
            { name: "modelId", label: "Thing model", type: "select", value: p.modelId, options: models.map((m) => [m.id, m.id]) },
            { name: "dataFormat", label: "Data format", type: "select", value: p.dataFormat, options: [["json", "json"], ["custom", "custom"]] },
            { name: "inactivityTimeout", label: "Offline after (s)", type: "number", value: p.inactivityTimeout },
            { name: "description", label: "Description", value: p.description },
          ],
          onSubmit: async (v) => {
            await api.patch(path, v);
            toast("Product saved");
            reload();
          },
        }),
      ),
    );
  }
}
