// The console's shell: the hash router, the navigation, login and logout.
//
// Every page is a function (main, params) -> optional cleanup, registered below with its
// route. Routes are hashes (#/orgs/o1/channels/c1) so the hub serves one index.html.

import * as api from "./api.js";
import { h, clear, alertBox, form, toast, go, dialog } from "./ui.js";
import { orgsPage, orgHome } from "./pages/orgs.js";
import { modelsPage, modelPage } from "./pages/models.js";
import { productsPage, productPage } from "./pages/products.js";
import { devicesPage } from "./pages/devices.js";
import { devicePage } from "./pages/device.js";
import { channelsPage, channelPage } from "./pages/channels.js";
import { scriptPage } from "./pages/scripts.js";
import { enterprisesPage, enterprisePage } from "./pages/enterprises.js";
import { accountsPage } from "./pages/accounts.js";
import { rulesPage, rulePage } from "./pages/rules.js";
import { usersPage, auditPage } from "./pages/users.js";

const ROUTES = [
  ["/login", loginPage, { public: true }],
  ["/", orgsPage],
  ["/orgs", orgsPage],
  ["/users", usersPage, { admin: true }],
  ["/audit", auditPage],
  ["/orgs/:org", orgHome],
  ["/orgs/:org/models", modelsPage],
  ["/orgs/:org/models/new", modelPage],
  ["/orgs/:org/models/:model", modelPage],
  ["/orgs/:org/products", productsPage],
  ["/orgs/:org/products/:pk", productPage],
  ["/orgs/:org/products/:pk/script", scriptPage],
  ["/orgs/:org/devices", devicesPage],
  ["/orgs/:org/products/:pk/devices/:dk", devicePage],
  ["/orgs/:org/channels", channelsPage],
  ["/orgs/:org/channels/:ch", channelPage],
  ["/orgs/:org/enterprises", enterprisesPage],
  ["/orgs/:org/enterprises/:ent", enterprisePage],
  ["/orgs/:org/service-accounts", accountsPage],
  ["/orgs/:org/rules", rulesPage],
  ["/orgs/:org/rules/:rule", rulePage],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let cleanup = null;
let renderSeq = 0;

function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, page, opts] of ROUTES) {
    const pp = pattern.split("/").filter(Boolean);
    if (pp.length !== parts.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < pp.length; i++) {
      if (pp[i].startsWith(":")) params[pp[i].slice(1)] = decodeURIComponent(parts[i]);
      else if (pp[i] !== parts[i]) {
        ok = false;
        break;
      }
    }
    if (ok) return { page, params, opts: opts || {} };
  }
  return null;
}

function currentPath() {
  const [path, q] = (location.hash.slice(1) || "/").split("?");
  return { path, search: new URLSearchParams(q || "") };
}

async function render() {
  const seq = ++renderSeq;
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a page's cleanup must not block the next */
    }
    cleanup = null;
  }
  const { path, search } = currentPath();
  const m = match(path);
  if (!m) {
    renderNav(null);
    clear(main).append(h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), "."), h("a", { href: "#/" }, "Organizations"));
    return;
  }
  if (!m.opts.public && !api.session.user) {
    go("/login?next=" + encodeURIComponent(path));
    return;
  }
  renderNav(m.params.org || null, path);
  clear(main);
  try {
    const c = await m.page(main, { ...m.params, search });
    if (seq === renderSeq) cleanup = typeof c === "function" ? c : null;
    else if (typeof c === "function") c();
  } catch (e) {
    if (seq !== renderSeq) return;
    clear(main).append(h("h1", {}, e.status === 404 ? "Not found" : "Something went wrong"), alertBox(e));
  }
  if (seq === renderSeq) {
    const h1 = main.querySelector("h1");
    document.title = (h1 ? h1.textContent + " · " : "") + "headrace console";
    if (!m.opts.keepFocus) main.focus({ preventScroll: true });
  }
}

function navLink(href, text, path) {
  // a device's page is under its product's path but belongs to Devices
  const p = /\/products\/[^/]+\/devices\//.test(path) ? path.replace(/\/products\/.*/, "/devices") : path;
  const target = href.slice(1);
  const active =
    target === "/orgs" ? p === "/" || p === "/orgs" || /^\/orgs\/[^/]+$/.test(p) : p === target || p.startsWith(target + "/");
  return h("li", {}, h("a", { href, "aria-current": active ? "page" : null }, text));
}

function renderNav(org, path = "") {
  clear(nav);
  const who = document.getElementById("who");
  clear(who);
  const toggle = document.querySelector(".menu-toggle");
  if (!api.session.user) {
    toggle.hidden = true;
    return;
  }
  toggle.hidden = false;
  const u = api.session.user;
  const roles = (u.roles || []).map((r) => (r.orgId ? `${r.role} (${r.orgId})` : r.role)).join(", ");
  who.append(
    h("span", { class: "muted" }, u.username, roles ? ` · ${roles}` : ""),
    api.session.token ? null : h("button", { type: "button", class: "small", onclick: changePassword }, "Password"),
    h("button", { type: "button", class: "small", onclick: logout }, "Log out"),
  );
  const groups = [h("ul", {}, navLink("#/orgs", "Organizations", path))];
  if (org) {
    const o = encodeURIComponent(org);
    groups.push(
      h("p", { class: "nav-title org" }, org),
      h(
        "ul",
        {},
        navLink(`#/orgs/${o}/models`, "Models", path),
        navLink(`#/orgs/${o}/products`, "Products", path),
        navLink(`#/orgs/${o}/devices`, "Devices", path),
        navLink(`#/orgs/${o}/channels`, "Channels", path),
        navLink(`#/orgs/${o}/enterprises`, "Enterprises", path),
        navLink(`#/orgs/${o}/service-accounts`, "Service accounts", path),
        navLink(`#/orgs/${o}/rules`, "Rules", path),
      ),
    );
  }
  const adminLinks = [];
  if (api.isPlatformAdmin() && !api.session.token) adminLinks.push(navLink("#/users", "Users", path));
  // the audit log is for platform admins and org admins (the hub answers 403 otherwise)
  const auditor = api.isPlatformAdmin() || (u.roles || []).some((r) => r.role === "org-admin");
  if (!api.session.token && auditor) adminLinks.push(navLink("#/audit", "Audit log", path));
  if (adminLinks.length) groups.push(h("p", { class: "nav-title" }, "Administration"), h("ul", {}, adminLinks));
  nav.append(...groups);
}

function changePassword() {
  const d = dialog(
    "Change your password",
    form({
      fields: [
        { name: "currentPassword", label: "Current password", type: "password", required: true, attrs: { autocomplete: "current-password" } },
        { name: "newPassword", label: "New password", type: "password", required: true, attrs: { autocomplete: "new-password" } },
      ],
      submit: "Change password",
      onSubmit: async (v) => {
        await api.post("/session/password", v);
        d.close();
        toast("Password changed");
      },
    }),
  );
}

async function logout() {
  await api.logout();
  toast("Logged out");
  go("/login");
}

// -- login ---------------------------------------------------------------------------------

async function loginPage(main, { search }) {
  const next = search.get("next") || "/orgs";
  if (api.session.user) {
    go(next);
    return;
  }
  const done = () => {
    toast(`Welcome, ${api.session.user.username}`);
    go(next);
  };
  const userForm = form({
    fields: [
      { name: "username", label: "Username", required: true, attrs: { autocomplete: "username", autofocus: true } },
      { name: "password", label: "Password", type: "password", required: true, attrs: { autocomplete: "current-password" } },
    ],
    submit: "Log in",
    onSubmit: async (v) => {
      try {
        await api.login(v.username, v.password);
      } catch (e) {
        if (e.status === 401) e.message = "Wrong username or password.";
        if (e.status === 429) e.message = "Too many attempts: wait a minute and try again.";
        if (e.status === 404 || e.status === 405) e.message = "This hub has no user accounts; log in with the admin token below.";
        throw e;
      }
      done();
    },
  });
  const tokenForm = form({
    fields: [{ name: "token", label: "Admin token", type: "password", required: true, help: "The hub's admin token (<data dir>/admin-token). Kept for this tab only." }],
    submit: "Use admin token",
    onSubmit: async (v) => {
      try {
        await api.loginWithToken(v.token.trim());
      } catch (e) {
        if (e.status === 401) e.message = "The hub refused this token.";
        throw e;
      }
      done();
    },
  });
  main.append(
    h(
      "div",
      { class: "login" },
      h("h1", {}, "Log in to headrace"),
      userForm,
      h("details", { class: "token-login" }, h("summary", {}, "Log in with the admin token instead"), tokenForm),
    ),
  );
  main.querySelector("input").focus();
}

// -- start ---------------------------------------------------------------------------------

api.onUnauthorized(() => {
  if (!api.session.user) return;
  api.session.user = null;
  toast("Your session has ended: log in again.", "error");
  go("/login?next=" + encodeURIComponent(currentPath().path));
});

document.querySelector(".menu-toggle").addEventListener("click", (ev) => {
  const open = nav.classList.toggle("open");
  ev.currentTarget.setAttribute("aria-expanded", String(open));
});
nav.addEventListener("click", (ev) => {
  if (ev.target.closest("a")) {
    nav.classList.remove("open");
    document.querySelector(".menu-toggle").setAttribute("aria-expanded", "false");
  }
});

window.addEventListener("hashchange", render);
api.restore().then(render);
