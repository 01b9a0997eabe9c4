// Thing models: the list and an editor of attributes, measurepoints and events. The
// hub checks a model when it is saved; its error names the field (for example
// "measurepoints[1].enum"), and the editor shows the message at that field.

import * as api from "../api.js";
import { h, table, link, toast, empty, pageHead, section, field, clearErrors, showError, confirmDialog, go, alertBox } from "../ui.js";

const TYPES = ["int", "float", "double", "bool", "string", "enum", "date", "timestamp", "array", "struct", "file"];

export async function modelsPage(main, { org }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const items = (await api.all(base + "/models")).map(withLists);
  const write = api.canWrite(org);
  main.append(
    pageHead("Thing models", "What a product's devices send: measurepoints, attributes and events, each with a type.", write ? h("a", { class: "button primary", href: `#${base}/models/new` }, "New model") : null),
    section(
      `Models (${items.length})`,
      null,
      items.length
        ? table(
            [
              { label: "Model id", get: (m) => link(`#${base}/models/${encodeURIComponent(m.id)}`, m.id) },
              { label: "Name", get: (m) => m.name || "—" },
              { label: "Measurepoints", get: (m) => String(m.measurepoints.length) },
              { label: "Attributes", get: (m) => String(m.attributes.length) },
              { label: "Events", get: (m) => String(m.events.length) },
            ],
            items,
            { caption: "Thing models" },
          )
        : empty("No models yet." + (write ? " Create one to describe your devices' data." : "")),
    ),
  );
}

// the API leaves empty lists out
function withLists(m) {
  return { name: "", description: "", ...m, attributes: m.attributes || [], measurepoints: m.measurepoints || [], events: m.events || [] };
}

// the spec keys the row's own inputs hold; the rest go to the row's "more" JSON
const OWN = new Set(["id", "name", "type", "unit", "withQuality", "flag", "description"]);

function specRow(kind, i, spec, opts) {
  const p = `${kind}[${i}]`;
  const more = {};
  for (const [k, v] of Object.entries(spec)) if (!OWN.has(k)) more[k] = v;
  const cell = (f) => h("td", { "data-label": f.label }, field({ ...f, label: f.label }));
  const cells = [
    cell({ name: "id", field: `${p}.id`, label: "Id", value: spec.id, required: true }),
    cell({ name: "name", field: `${p}.name`, label: "Name", value: spec.name }),
  ];
  if (kind === "events") {
    cells.push(
      cell({
        name: "outputs",
        field: `${p}.outputs`,
        label: "Outputs (JSON list of {id, type})",
        type: "textarea",
        rows: 2,
        value: JSON.stringify(spec.outputs || []),
      }),
    );
  } else {
    cells.push(
      cell({ name: "type", field: `${p}.type`, label: "Type", type: "select", options: TYPES.map((t) => [t, t]), value: spec.type || "double" }),
      cell({ name: "unit", field: `${p}.unit`, label: "Unit", value: spec.unit }),
    );
    if (kind === "measurepoints") {
      cells.push(
        cell({ name: "withQuality", field: `${p}.withQuality`, label: "Quality", type: "checkbox", value: spec.withQuality }),
        cell({ name: "flag", field: `${p}.flag`, label: "Flag", type: "select", options: [["", "—"], ["fault", "fault"], ["alert", "alert"]], value: spec.flag || "" }),
      );
    }
    cells.push(
      cell({
        name: "more",
        field: `${p}.more ${p}.enum ${p}.items ${p}.fields ${p}.maxLength`,
        label: "More (JSON: enum, items, fields, maxLength)",
        type: "textarea",
        rows: 1,
        value: Object.keys(more).length ? JSON.stringify(more) : "",
      }),
    );
  }
  const tr = h("tr", { class: "spec-row" }, cells);
  if (opts.write) {
    tr.append(h("td", {}, h("button", { type: "button", class: "small ghost", "aria-label": `Remove ${kind} row ${i + 1}`, onclick: () => { tr.remove(); opts.renumber(); } }, "Remove")));
  }
  return tr;
}

function specTable(kind, title, specs, write) {
  const body = h("tbody", {});
  const renumber = () => {
    // field paths follow the row's position, as the hub's error paths do
    [...body.children].forEach((tr, i) => {
      tr.querySelectorAll("[data-field]").forEach((el) => {
        el.dataset.field = el.dataset.field.replace(new RegExp(`${kind}\\[\\d+\\]`, "g"), `${kind}[${i}]`);
      });
    });
  };
  specs.forEach((s, i) => body.append(specRow(kind, i, s, { write, renumber })));
  const add = write
    ? h("button", { type: "button", class: "small", onclick: () => { body.append(specRow(kind, body.children.length, { id: "", type: "double" }, { write, renumber })); body.lastChild.querySelector("input").focus(); } }, `Add ${title.toLowerCase().replace(/s$/, "")}`)
    : null;
  return section(title, add, h("div", { class: "table-wrap" }, h("table", { class: `specs ${kind}` }, h("caption", { class: "sr-only" }, title), body)), specs.length || write ? null : empty(`No ${title.toLowerCase()}.`));
}

function parseJSON(text, fieldPath, fallback) {
  if (!text.trim()) return fallback;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new api.ApiError(0, "bad_json", "not valid JSON: " + e.message, fieldPath);
  }
}

function collect(form, kind) {
  return [...form.querySelectorAll(`table.${kind} tr.spec-row`)].map((tr, i) => {
    const get = (n) => tr.querySelector(`[name="${n}"]`);
    const spec = { id: get("id").value.trim() };
    if (get("name").value) spec.name = get("name").value;
    if (kind === "events") {
      spec.outputs = parseJSON(get("outputs").value, `${kind}[${i}].outputs`, []);
      return spec;
    }
    spec.type = get("type").value;
    if (get("unit").value) spec.unit = get("unit").value;
    if (kind === "measurepoints") {
      if (get("withQuality").checked) spec.withQuality = true;
      if (get("flag").value) spec.flag = get("flag").value;
    }
    const more = parseJSON(get("more").value, `${kind}[${i}].more`, {});
    if (typeof more !== "object" || Array.isArray(more) || more === null) throw new api.ApiError(0, "bad_json", "must be a JSON object", `${kind}[${i}].more`);
    return { ...spec, ...more };
  });
}

export async function modelPage(main, { org, model }) {
  const base = `/orgs/${encodeURIComponent(org)}/models`;
  const isNew = model === undefined;
  const m = isNew ? { id: "", name: "", description: "", attributes: [], measurepoints: [{ id: "temp", type: "double", unit: "°C" }], events: [] } : withLists(await api.get(`${base}/${encodeURIComponent(model)}`));
  const write = api.canWrite(org);
  const f = h(
    "form",
    { class: "form model-editor", novalidate: true },
    section(
      "Model",
      null,
      h(
        "div",
        { class: "grid2" },
        field({ name: "id", label: "Model id", value: m.id, required: true, attrs: { readonly: !isNew || null } }),
        field({ name: "name", label: "Name", value: m.name }),
        field({ name: "description", label: "Description", value: m.description }),
      ),
    ),
    specTable("measurepoints", "Measurepoints", m.measurepoints, write),
    specTable("attributes", "Attributes", m.attributes, write),
    specTable("events", "Events", m.events, write),
  );
  if (!write) f.querySelectorAll("input, select, textarea").forEach((el) => (el.disabled = true));
  const save = h("button", { type: "submit", class: "primary" }, isNew ? "Create model" : "Save model");
  if (write) f.append(h("div", { class: "actions sticky" }, save));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(f);
    save.disabled = true;
    try {
      const top = (n) => f.querySelector(`.grid2 [name="${n}"]`).value.trim();
      const body = {
        id: top("id"),
        name: top("name"),
        description: top("description"),
        measurepoints: collect(f, "measurepoints"),
        attributes: collect(f, "attributes"),
        events: collect(f, "events"),
      };
      if (isNew) {
        await api.post(base, body);
        toast(`Model ${body.id} created`);
        go(`/orgs/${encodeURIComponent(org)}/models/${encodeURIComponent(body.id)}`);
      } else {
        await api.put(`${base}/${encodeURIComponent(model)}`, body);
        toast("Model saved");
      }
    } catch (e) {
      showError(f, e);
    } finally {
      save.disabled = false;
    }
  });
  const del =
    write && !isNew
      ? h("button", {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!(await confirmDialog(`Delete model ${m.id}?`))) return;
            try {
              await api.del(`${base}/${encodeURIComponent(m.id)}`);
              toast("Model deleted");
              go(`/orgs/${encodeURIComponent(org)}/models`);
            } catch (e) {
              f.prepend(alertBox(e));
            }
          },
        }, "Delete model")
      : null;
  main.append(pageHead(isNew ? "New thing model" : `Model ${m.id}`, write ? "Saving checks the model; an error is shown at its field." : "Read only: your role cannot change models.", del), f);
}
