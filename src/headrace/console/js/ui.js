// DOM helpers shared by every page: elements, forms with field errors, tables, dialogs.

import { ApiError } from "./api.js";

// h("button", {class: "x", onclick: fn, disabled: true}, "text", child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let uid = 0;
export const nextId = (p = "f") => `${p}${++uid}`;

// -- formatting ------------------------------------------------------------------------

export function fmtTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// <input type=datetime-local> value <-> ms
export function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
export function fromLocalInput(s) {
  return s ? new Date(s).getTime() : null;
}

// -- notices -----------------------------------------------------------------------------

export function toast(message, kind = "ok") {
  const box = document.getElementById("toasts");
  const t = h("div", { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}

export function errorText(e) {
  if (e instanceof ApiError) return e.field ? `${e.message} (field ${e.field})` : e.message;
  return String(e?.message || e);
}

export function alertBox(e) {
  return h("div", { class: "alert error", role: "alert" }, errorText(e));
}

export function empty(text, action) {
  return h("div", { class: "empty" }, h("p", {}, text), action || null);
}

export function loading() {
  return h("p", { class: "muted", "aria-busy": "true" }, "Loading…");
}

// a secret shown once, with a copy button
export function secretBox(title, rows) {
  return h(
    "div",
    { class: "alert secret", role: "alert" },
    h("strong", {}, title),
    h("p", {}, "Copy it now: it is shown only this once."),
    h(
      "dl",
      { class: "kv" },
      rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, h("code", { class: "copyable" }, v), copyButton(v))]),
    ),
  );
}

export function copyButton(text) {
  return h(
    "button",
    {
      type: "button",
      class: "small ghost",
      "aria-label": "Copy",
      onclick: async (ev) => {
        try {
          await navigator.clipboard.writeText(text);
          ev.target.textContent = "Copied";
        } catch {
          ev.target.textContent = "Select and copy";
        }
      },
    },
    "Copy",
  );
}

// -- forms -------------------------------------------------------------------------------

// field: {name, label, type: text|number|select|checkbox|textarea|password|file,
//         options: [[value, label]], value, required, help, placeholder, attrs}
export function field(f) {
  const id = nextId();
  const helpId = f.help ? id + "-help" : null;
  const errId = id + "-err";
  const common = {
    id,
    name: f.name,
    required: f.required,
    placeholder: f.placeholder,
    "aria-describedby": [helpId, errId].filter(Boolean).join(" "),
    dataset: { field: f.field || f.name },
    ...(f.attrs || {}),
  };
  let input;
  if (f.type === "select") {
    input = h(
      "select",
      common,
      (f.options || []).map(([v, l]) => h("option", { value: v, selected: String(v) === String(f.value ?? "") }, l)),
    );
  } else if (f.type === "textarea") {
    input = h("textarea", { ...common, rows: f.rows || 4 }, f.value ?? "");
  } else if (f.type === "checkbox") {
    input = h("input", { ...common, type: "checkbox", checked: !!f.value });
  } else {
    input = h("input", { ...common, type: f.type || "text", value: f.value ?? "" });
  }
  // the required mark stays outside the label: the label is the input's whole name
  const label = f.required
    ? h("span", { class: "label-row" }, h("label", { for: id }, f.label), h("span", { class: "req", "aria-hidden": "true" }, " *"))
    : h("label", { for: id }, f.label);
  return h(
    "div",
    { class: `field ${f.type === "checkbox" ? "check" : ""}` },
    f.type === "checkbox" ? [input, label] : [label, input],
    f.help ? h("small", { id: helpId, class: "help" }, f.help) : null,
    h("small", { id: errId, class: "field-error", role: "alert" }),
  );
}

export function values(form) {
  const out = {};
  for (const el of form.querySelectorAll("[name]")) {
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.type === "number") out[el.name] = el.value === "" ? null : Number(el.value);
    else if (el.type === "file") out[el.name] = el.files[0] || null;
    else out[el.name] = el.value;
  }
  return out;
}

export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  form.querySelectorAll(".form-error").forEach((e) => e.remove());
}

// put an API error at its field: the input whose data-field is the error's field path,
// or the nearest enclosing path ("measurepoints[1].enum" -> "measurepoints[1]"), else
// at the top of the form
export function showError(form, e) {
  let path = e instanceof ApiError ? e.field : null;
  while (path) {
    const el = [...form.querySelectorAll("[data-field]")].find((x) =>
      x.dataset.field.split(" ").includes(path),
    );
    if (el) {
      el.setAttribute("aria-invalid", "true");
      const err = el.closest(".field, td, .cell")?.querySelector(".field-error");
      if (err) {
        err.textContent = e.message;
        el.focus();
        return;
      }
    }
    const cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
    path = cut > 0 ? path.slice(0, cut) : "";
  }
  const box = h("div", { class: "alert error form-error", role: "alert" }, errorText(e));
  form.prepend(box);
  box.scrollIntoView({ block: "nearest" });
}

// a form that calls onSubmit(values) and shows API errors at their fields
export function form({ fields, submit = "Save", onSubmit, extra, cancel, class: cls }) {
  const f = h("form", { class: `form ${cls || ""}`, novalidate: true }, fields.map(field), extra || null);
  const btn = h("button", { type: "submit", class: "primary" }, submit);
  f.append(h("div", { class: "actions" }, btn, cancel ? h("button", { type: "button", onclick: cancel }, "Cancel") : null));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(f);
    const missing = [...f.querySelectorAll("[required]")].find((x) => !x.value);
    if (missing) {
      showError(f, new ApiError(0, "required", "required", missing.dataset.field));
      return;
    }
    btn.disabled = true;
    try {
      await onSubmit(values(f), f);
    } catch (e) {
      showError(f, e);
    } finally {
      btn.disabled = false;
    }
  });
  return f;
}

// -- dialogs -----------------------------------------------------------------------------

export function dialog(title, body) {
  const d = h(
    "dialog",
    { class: "dialog", "aria-label": title },
    h("div", { class: "dialog-head" }, h("h2", {}, title), h("button", { type: "button", class: "ghost", "aria-label": "Close", onclick: () => d.close() }, "×")),
    body,
  );
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
  return d;
}

export function confirmDialog(message, okText = "Delete") {
  return new Promise((resolve) => {
    let answer = false;
    const d = dialog("Please confirm", [
      h("p", {}, message),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "danger", onclick: () => { answer = true; d.close(); } }, okText),
        h("button", { type: "button", onclick: () => d.close() }, "Cancel"),
      ),
    ]);
    d.addEventListener("close", () => resolve(answer));
  });
}

// -- tables ------------------------------------------------------------------------------

// columns: [{label, get: (row) => node|string, class}]
export function table(columns, rows, { caption, rowAttrs } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            rowAttrs ? rowAttrs(r) : {},
            columns.map((c) => h("td", { class: c.class, "data-label": c.label }, c.get(r))),
          ),
        ),
      ),
    ),
  );
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

// a section with a heading and optional actions on the right
export function section(title, actions, ...body) {
  return h(
    "section",
    { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, title), h("div", { class: "card-actions" }, actions || null)),
    body,
  );
}

export function pageHead(title, subtitle, actions) {
  return h(
    "div",
    { class: "page-head" },
    h("div", {}, h("h1", {}, title), subtitle ? h("p", { class: "muted" }, subtitle) : null),
    h("div", { class: "card-actions" }, actions || null),
  );
}

export function kv(rows) {
  return h(
    "dl",
    { class: "kv" },
    rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]),
  );
}

// download a Blob under a name
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- navigation ----------------------------------------------------------------------------

export function go(path) {
  location.hash = "#" + path;
}

// render the current page again
export function reload() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

// replace el's children with these (arrays flattened, null/false skipped)
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// -- actions -------------------------------------------------------------------------------

// a button that runs fn, after a confirmation when `confirm` is given (its OK button says
// okText, else the label); a failure is shown as an error notice
export function actionButton(label, fn, { confirm, okText, danger } = {}) {
  return h(
    "button",
    {
      type: "button",
      class: danger ? "danger" : null,
      onclick: async () => {
        if (confirm && !(await confirmDialog(confirm, okText || label))) return;
        try {
          await fn();
        } catch (e) {
          toast(errorText(e), "error");
        }
      },
    },
    label,
  );
}

// a value in code type with a copy button beside it
export function copyCode(value) {
  return h("span", { class: "copyrow" }, h("code", {}, value), copyButton(value));
}

// a list page's "New ..." form and its list: after `create` the list is read again
// (listed(items) -> the table, or the empty text when there are none)
export function listBox(items, listed, emptyText) {
  const box = h("div", {});
  const show = (xs) => fill(box, xs.length ? listed(xs) : empty(emptyText));
  show(items);
  return { el: box, show };
}
