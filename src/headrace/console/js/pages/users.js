// Users (platform admins only): create with roles, change roles, reset passwords,
// delete. The audit log: who changed what, when (platform admins: everything; org
// admins: their organizations).

import * as api from "../api.js";
import { h, table, form, toast, empty, pageHead, section, fmtTime, confirmDialog, secretBox, errorText, field, dialog, badge, fill } from "../ui.js";

const ROLES = ["platform-admin", "org-admin", "org-viewer"];

// "org-admin:o1, org-viewer:o2, platform-admin" <-> [{role, orgId}]
export function parseRoles(text) {
  return text
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter(Boolean)
    .map((x) => {
      const [role, orgId] = x.split(":").map((s) => s.trim());
      if (!ROLES.includes(role)) throw new api.ApiError(0, "bad_role", `unknown role ${role} (known: ${ROLES.join(", ")})`, "roles");
      if (role !== "platform-admin" && !orgId) throw new api.ApiError(0, "bad_role", `${role} needs an organization: ${role}:ORG_ID`, "roles");
      return role === "platform-admin" ? { role } : { role, orgId };
    });
}
const rolesText = (roles) => roles.map((r) => (r.orgId ? `${r.role}:${r.orgId}` : r.role)).join(", ");

export async function usersPage(main) {
  const out = h("div", {});
  const listBox = h("div", {});
  const orgs = await api.all("/orgs");
  main.append(
    pageHead("Users", "Operators of the console and the admin API; each role is scoped to an organization (platform-admin: every one)."),
    section(
      "New user",
      null,
      form({
        fields: [
          { name: "username", label: "Username", required: true, attrs: { autocomplete: "off" } },
          { name: "password", label: "Password", type: "password", help: "Empty: a random one, shown once.", attrs: { autocomplete: "new-password" } },
          { name: "roles", label: "Roles", placeholder: "org-admin:ORG_ID, org-viewer:ORG_ID", help: `Comma-separated role:organization. Organizations: ${orgs.map((o) => o.orgId).join(", ") || "none yet"}.` },
        ],
        submit: "Create user",
        onSubmit: async (v, f) => {
          const body = { username: v.username.trim(), roles: parseRoles(v.roles || "") };
          if (v.password) body.password = v.password;
          const u = await api.post("/users", body);
          f.reset();
          fill(out, u.password ? secretBox(`User ${u.username} created`, [["username", u.username], ["password", u.password]]) : h("div", { class: "alert ok" }, `User ${u.username} created.`));
          toast("User created");
          draw();
        },
      }),
    ),
    out,
    section("Users", null, listBox),
  );
  async function draw() {
    let items;
    try {
      items = await api.all("/users");
    } catch (e) {
      fill(listBox, h("p", { class: "alert error" }, errorText(e)));
      return;
    }
    fill(listBox, 
      items.length
        ? table(
            [
              { label: "Username", get: (u) => u.username },
              { label: "Roles", get: (u) => (u.roles.length ? u.roles.map((r) => badge(r.orgId ? `${r.role} · ${r.orgId}` : r.role)) : "no role") },
              { label: "Password changed", get: (u) => fmtTime(u.passwordChangedAt) },
              {
                label: "Actions",
                get: (u) =>
                  h(
                    "div",
                    { class: "row-actions" },
                    h("button", { type: "button", class: "small", onclick: () => editRoles(u) }, "Roles"),
                    h("button", {
                      type: "button",
                      class: "small",
                      onclick: async () => {
                        if (!(await confirmDialog(`Give ${u.username} a new random password? Their sessions end.`, "Reset password"))) return;
                        try {
                          const r = await api.post(`/users/${encodeURIComponent(u.username)}/password`, {});
                          fill(out, secretBox(`New password of ${u.username}`, [["password", r.password]]));
                        } catch (e) {
                          toast(errorText(e), "error");
                        }
                      },
                    }, "Reset password"),
                    u.username !== api.session.user?.username
                      ? h("button", {
                          type: "button",
                          class: "small danger",
                          onclick: async () => {
                            if (!(await confirmDialog(`Delete user ${u.username}?`))) return;
                            try {
                              await api.del(`/users/${encodeURIComponent(u.username)}`);
                              toast("User deleted");
                              draw();
                            } catch (e) {
                              toast(errorText(e), "error");
                            }
                          },
                        }, "Delete")
                      : null,
                  ),
              },
            ],
            items,
            { caption: "Users" },
          )
        : empty("No users."),
    );
  }
  function editRoles(u) {
    const d = dialog(
      `Roles of ${u.username}`,
      form({
        fields: [{ name: "roles", label: "Roles", value: rolesText(u.roles), help: "Comma-separated role:organization, or platform-admin." }],
        onSubmit: async (v) => {
          await api.patch(`/users/${encodeURIComponent(u.username)}`, { roles: parseRoles(v.roles || "") });
          d.close();
          toast("Roles saved");
          draw();
        },
      }),
    );
  }
  await draw();
}

export async function auditPage(main, { search }) {
  main.append(pageHead("Audit log", "Every change made through the admin API: who, what, when, and the answer."));
  const filters = h(
    "form",
    { class: "filters" },
    field({ name: "orgId", label: "Organization", value: search.get("org") || "", placeholder: "any" }),
    field({ name: "user", label: "User", placeholder: "any" }),
    field({ name: "start", label: "From", type: "datetime-local" }),
    field({ name: "end", label: "Until", type: "datetime-local" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Apply filters")),
  );
  const box = h("div", {});
  const more = h("button", { type: "button", class: "small", hidden: true }, "Load older");
  let cursor = null;
  let rows = [];
  const q = () => {
    const v = (n) => filters.querySelector(`[name=${n}]`).value.trim();
    return { orgId: v("orgId") || undefined, user: v("user") || undefined, start: v("start") ? new Date(v("start")).getTime() : undefined, end: v("end") ? new Date(v("end")).getTime() : undefined };
  };
  async function load(older) {
    try {
      const page = await api.get("/audit", { ...q(), limit: 200, cursor: older ? cursor : undefined });
      rows = older ? [...rows, ...page.items] : page.items;
      cursor = page.nextCursor;
      more.hidden = !cursor;
      fill(box, 
        rows.length
          ? table(
              [
                { label: "Time", get: (r) => fmtTime(r.time) },
                { label: "Who", get: (r) => `${r.user ?? "—"}${r.via ? ` (${r.via})` : ""}` },
                { label: "Organization", get: (r) => r.orgId || "—" },
                { label: "What", get: (r) => h("code", {}, r.action || `${r.method} ${r.path}`) },
                { label: "Target", get: (r) => r.target || "—" },
                { label: "Answer", get: (r) => badge(String(r.status ?? "—"), r.status >= 400 ? "err" : "ok") },
              ],
              rows,
              { caption: "Audit log" },
            )
          : empty("No changes recorded for these filters."),
      );
    } catch (e) {
      fill(box, h("p", { class: "alert error", role: "alert" }, errorText(e)));
    }
  }
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load(false);
  });
  more.addEventListener("click", () => load(true));
  main.append(section("Changes", null, filters, box, more));
  await load(false);
}
