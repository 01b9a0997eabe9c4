// Organizations: the list (what this user may see), create, rename, delete; an
// organization's overview.

import * as api from "../api.js";
import { h, table, link, form, toast, empty, pageHead, section, kv, fmtTime, confirmDialog, dialog, alertBox, go, reload } from "../ui.js";

export async function orgsPage(main) {
  main.append(pageHead("Organizations", "Each organization holds its own models, products, devices, channels and enterprises."));
  const items = await api.all("/orgs");
  if (api.isPlatformAdmin()) {
    main.append(
      section(
        "New organization",
        null,
        form({
          class: "inline",
          fields: [
            { name: "name", label: "Name", required: true },
            { name: "orgId", label: "Organization id", help: "Optional; generated when empty." },
          ],
          submit: "Create organization",
          onSubmit: async (v) => {
            const o = await api.post("/orgs", { name: v.name, ...(v.orgId ? { orgId: v.orgId } : {}) });
            toast(`Organization ${o.orgId} created`);
            go(`/orgs/${encodeURIComponent(o.orgId)}`);
          },
        }),
      ),
    );
  }
  main.append(
    section(
      `Organizations (${items.length})`,
      null,
      items.length
        ? table(
            [
              { label: "Name", get: (o) => link(`#/orgs/${encodeURIComponent(o.orgId)}`, o.name) },
              { label: "Organization id", get: (o) => h("code", {}, o.orgId) },
              { label: "Your role", get: (o) => api.roleIn(o.orgId) || "—" },
              { label: "Created", get: (o) => fmtTime(o.createdAt) },
            ],
            items,
            { caption: "Organizations" },
          )
        : empty(api.isPlatformAdmin() ? "No organizations yet: create the first one above." : "You have no role in any organization yet; ask a platform admin."),
    ),
  );
}

export async function orgHome(main, { org }) {
  const o = await api.get(`/orgs/${encodeURIComponent(org)}`);
  const base = `/orgs/${encodeURIComponent(org)}`;
  const [models, products, channels] = await Promise.all([
    api.all(base + "/models"),
    api.all(base + "/products"),
    api.all(base + "/channels"),
  ]);
  const write = api.canWrite(org);
  const actions = write
    ? [
        h("button", { type: "button", onclick: () => rename(o) }, "Rename"),
        api.isPlatformAdmin()
          ? h("button", {
              type: "button",
              class: "danger",
              onclick: async () => {
                if (!(await confirmDialog(`Delete organization ${o.orgId}? It must be empty.`))) return;
                try {
                  await api.del(base);
                  toast("Organization deleted");
                  go("/orgs");
                } catch (e) {
                  main.prepend(alertBox(e));
                }
              },
            }, "Delete")
          : null,
      ]
    : null;
  main.append(
    pageHead(o.name, `Organization ${o.orgId}`, actions),
    section(
      "Overview",
      null,
      kv([
        ["Organization id", h("code", {}, o.orgId)],
        ["Created", fmtTime(o.createdAt)],
        ["Your role", api.roleIn(org) || "—"],
        ["Models", link(`#${base}/models`, String(models.length))],
        ["Products", link(`#${base}/products`, String(products.length))],
        ["Channels", link(`#${base}/channels`, String(channels.length))],
      ]),
    ),
  );
  if (!models.length && write) {
    main.append(empty("Start here: create a thing model, then a product that uses it, then its devices and a channel.", h("a", { class: "button primary", href: `#${base}/models/new` }, "Create a model")));
  }
}

function rename(o) {
  const d = dialog(
    "Rename organization",
    form({
      fields: [{ name: "name", label: "Name", required: true, value: o.name }],
      onSubmit: async (v) => {
        await api.patch(`/orgs/${encodeURIComponent(o.orgId)}`, { name: v.name });
        d.close();
        toast("Renamed");
        reload();
      },
    }),
  );
}
