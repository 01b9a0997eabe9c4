// Channels: an MQTT login of a third-party system. The list, create (its password shown
// once), the connection details page (broker URLs, client id, username; enable/disable,
// password reset) and its message log with a live tail.

import * as api from "../api.js";
import { h, table, link, form, toast, empty, pageHead, section, kv, fmtTime, secretBox, go, badge, reload, fill, actionButton, copyCode, listBox } from "../ui.js";
import { messageLog } from "./log.js";

export async function channelsPage(main, { org }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const [items, products] = await Promise.all([api.all(base + "/channels"), api.all(base + "/products")]);
  const write = api.canWrite(org);
  main.append(pageHead("Channels", "Each channel is one third-party system's MQTT login for offline (history) integration."));
  const out = h("div", {});
  if (write) {
    main.append(
      section(
        "New channel",
        null,
        products.length
          ? form({
              fields: [
                { name: "name", label: "Name", required: true },
                { name: "products", label: "Products (hold Ctrl or Shift for several)", type: "select", required: true, options: products.map((p) => [p.productKey, `${p.name} (${p.productKey})`]), attrs: { multiple: true, size: Math.min(5, products.length) } },
                { name: "clientId", label: "Client id", help: "Optional: the only MQTT client id this channel may use." },
                { name: "rateLimit", label: "Rate limit (requests/s)", type: "number", help: "0 or empty: the hub's default (ingest.rate_limit)." },
              ],
              submit: "Create channel",
              onSubmit: async (v, f) => {
                const chosen = [...f.querySelector("select[name=products]").selectedOptions].map((o) => o.value);
                const body = { name: v.name, products: chosen };
                if (v.clientId) body.clientId = v.clientId;
                if (v.rateLimit) body.rateLimit = v.rateLimit;
                const c = await api.post(base + "/channels", body);
                f.reset();
                fill(out, connectionBox(c, `Channel ${c.name} created`), h("p", {}, link(`#${base}/channels/${encodeURIComponent(c.channelId)}`, "Open the channel and its message log")));
                toast(`Channel ${c.channelId} created`);
                list.show(await api.all(base + "/channels"));
              },
            })
          : empty("Create a product first: a channel sends data of products."),
      ),
    );
  }
  const list = listBox(items, (xs) => channelTable(base, xs), "No channels yet.");
  main.append(out, section("Channels", null, list.el));
}

function channelTable(base, items) {
  return table(
    [
      { label: "Name", get: (c) => link(`#${base}/channels/${encodeURIComponent(c.channelId)}`, c.name) },
      { label: "Channel id", get: (c) => h("code", {}, c.channelId) },
      { label: "Username", get: (c) => h("code", {}, c.username) },
      { label: "Products", get: (c) => c.products.join(", ") },
      { label: "State", get: (c) => badge(c.enabled ? "enabled" : "disabled", c.enabled ? "ok" : "muted") },
    ],
    items,
    { caption: "Channels" },
  );
}

function connectionBox(c, title) {
  return secretBox(title, [
    ...c.brokers.map((b) => ["broker", b]),
    ["username", c.username],
    ["password", c.password],
    ...(c.clientId ? [["client id", c.clientId]] : []),
  ]);
}

export async function channelPage(main, { org, ch, search }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const path = `${base}/channels/${encodeURIComponent(ch)}`;
  const c = await api.get(path);
  const write = api.canWrite(org);
  const out = h("div", {});
  const actions = write
    ? [
        actionButton(c.enabled ? "Disable" : "Enable", async () => {
          await api.patch(path, { enabled: !c.enabled });
          toast(c.enabled ? "Channel disabled: its connections were closed" : "Channel enabled");
          reload();
        }),
        actionButton(
          "Reset password",
          async () => {
            const r = await api.post(path + "/reset-password");
            fill(out, connectionBox(r, "New password"));
            out.querySelector("code")?.scrollIntoView({ block: "nearest" });
          },
          { confirm: "Reset the channel's password? Clients using the old one can no longer log in." },
        ),
        actionButton(
          "Delete",
          async () => {
            await api.del(path);
            toast("Channel deleted");
            go(`${base}/channels`);
          },
          { confirm: `Delete channel ${c.name}?`, danger: true },
        ),
      ]
    : null;
  const code = copyCode;
  main.append(
    pageHead(c.name, `Channel ${c.channelId}`, actions),
    out,
    section(
      "Connection details",
      badge(c.enabled ? "enabled" : "disabled", c.enabled ? "ok" : "muted"),
      kv([
        ["Broker URL", c.brokers.length ? h("span", {}, c.brokers.map((b) => h("div", {}, code(b)))) : "MQTT is off on this hub"],
        ["Client id", c.clientId ? code(c.clientId) : "any client id"],
        ["Username", code(c.username)],
        ["Password", h("span", { class: "muted" }, "shown only when created or reset", write ? " (use Reset password)" : "")],
        ["Products", c.products.map((p) => link(`#${base}/products/${encodeURIComponent(p)}`, p)).reduce((a, x) => (a.length ? [...a, ", ", x] : [x]), [])],
        ["Rate limit", c.rateLimit ? `${c.rateLimit} requests/s` : "the hub's default"],
        ["Created", fmtTime(c.createdAt)],
      ]),
    ),
  );
  const log = messageLog({
    logPath: path + "/logs",
    streamPath: path + "/logs/stream",
    kinds: ["connection", "payload", "error"],
    search,
  });
  main.append(log.el);
  return log.stop;
}
