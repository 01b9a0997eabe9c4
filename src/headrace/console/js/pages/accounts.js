// Service accounts: the HTTP integration's logins (appKey + appSecret). Create (the
// secret shown once), enable/disable, rotate the secret, delete.

import * as api from "../api.js";
import { h, table, form, toast, empty, pageHead, section, fmtTime, confirmDialog, secretBox, badge, errorText, fill } from "../ui.js";

export async function accountsPage(main, { org }) {
  const base = `/orgs/${encodeURIComponent(org)}/service-accounts`;
  const write = api.canWrite(org);
  const out = h("div", {});
  const listBox = h("div", {});
  main.append(pageHead("Service accounts", "Logins of the real-time HTTP integration: an access token is got with the appKey and appSecret."));
  if (write) {
    main.append(
      section(
        "New service account",
        null,
        form({
          class: "inline",
          fields: [
            { name: "name", label: "Name", required: true },
            { name: "description", label: "Description" },
            { name: "rateLimit", label: "Rate limit (requests/s)", type: "number", help: "0 or empty: the hub's default." },
          ],
          submit: "Create service account",
          onSubmit: async (v, f) => {
            const body = { name: v.name, description: v.description || "" };
            if (v.rateLimit) body.rateLimit = v.rateLimit;
            const a = await api.post(base, body);
            f.reset();
            fill(out, secretBox(`Service account ${a.name} created`, [["appKey", a.appKey], ["appSecret", a.appSecret]]));
            toast("Service account created");
            draw();
          },
        }),
      ),
    );
  }
  main.append(out, section("Service accounts", null, listBox));
  async function act(fn, done) {
    try {
      await fn();
      if (done) toast(done);
      draw();
    } catch (e) {
      toast(errorText(e), "error");
    }
  }
  async function draw() {
    const items = await api.all(base);
    fill(listBox, 
      items.length
        ? table(
            [
              { label: "Name", get: (a) => h("span", {}, a.name, a.description ? h("small", { class: "muted" }, ` ${a.description}`) : null) },
              { label: "appKey", get: (a) => h("code", {}, a.appKey) },
              { label: "State", get: (a) => badge(a.enabled ? "enabled" : "disabled", a.enabled ? "ok" : "muted") },
              { label: "Token expires", get: (a) => (a.tokenExpiresAt ? fmtTime(a.tokenExpiresAt) : "no token") },
              { label: "Secret rotated", get: (a) => fmtTime(a.secretRotatedAt) },
              ...(write
                ? [
                    {
                      label: "Actions",
                      get: (a) =>
                        h(
                          "div",
                          { class: "row-actions" },
                          h("button", { type: "button", class: "small", onclick: () => act(() => api.post(`${base}/${encodeURIComponent(a.appKey)}/${a.enabled ? "disable" : "enable"}`), a.enabled ? "Disabled: its token is revoked" : "Enabled") }, a.enabled ? "Disable" : "Enable"),
                          h("button", {
                            type: "button",
                            class: "small",
                            onclick: async () => {
                              if (!(await confirmDialog(`Rotate the secret of ${a.name}? The old secret and the current token stop working.`, "Rotate secret"))) return;
                              act(async () => {
                                const r = await api.post(`${base}/${encodeURIComponent(a.appKey)}/rotate-secret`);
                                fill(out, secretBox(`New secret of ${a.name}`, [["appKey", r.appKey], ["appSecret", r.appSecret]]));
                              });
                            },
                          }, "Rotate secret"),
                          h("button", {
                            type: "button",
                            class: "small danger",
                            onclick: async () => {
                              if (!(await confirmDialog(`Delete service account ${a.name}?`))) return;
                              act(() => api.del(`${base}/${encodeURIComponent(a.appKey)}`), "Service account deleted");
                            },
                          }, "Delete"),
                        ),
                    },
                  ]
                : []),
            ],
            items,
            { caption: "Service accounts" },
          )
        : empty("No service accounts yet."),
    );
  }
  await draw();
}
