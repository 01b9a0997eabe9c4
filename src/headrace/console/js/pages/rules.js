// Rules (docs/rules.md): the list of an organization's rules with their state and
// counters, create and edit (selection, transform, a Kafka or webhook sink; the hub's
// check is shown at the field), pause/resume, replay from a time or a stream position,
// delete, and the dead letters.

import * as api from "../api.js";
import { h, table, link, form, toast, empty, pageHead, section, kv, fmtTime, secretBox, go, errorText, reload, fill, badge, actionButton, field, fromLocalInput, listBox } from "../ui.js";

const KINDS = ["measurepoint", "attribute", "event", "raw", "online", "offline", "fault", "alert", "file_stored", "file_deleted"];
const FORMATS = ["enos", "enos-point", "headrace"];
const DEFAULT_FORMAT = { kafka: "enos", webhook: "headrace" };
const REFRESH_MS = 5000;

const lines = (text) =>
  (text || "")
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter(Boolean);

const count = (n) => (n === undefined || n === null ? "—" : Number(n).toLocaleString("en"));

function sinkText(s) {
  return s.type === "kafka" ? `Kafka ${s.bootstrap}${s.topic ? " → " + s.topic : ""}` : `Webhook ${s.url}`;
}

function stateBadge(r) {
  return badge(r.enabled ? "running" : "paused", r.enabled ? "ok" : "muted");
}

function lagText(s) {
  if (!s) return "—";
  return `${count(s.lagRecords)} records · ${Number(s.lagSeconds || 0).toFixed(1)} s`;
}

function lastError(s) {
  if (!s || !s.lastError) return h("span", { class: "muted" }, "none");
  return h("span", { class: "rule-error" }, s.lastError, h("small", { class: "muted" }, " at ", fmtTime(s.lastErrorAt)));
}

// -- the list ----------------------------------------------------------------------------

export async function rulesPage(main, { org }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const write = api.canWrite(org);
  main.append(
    pageHead(
      "Rules",
      "Each rule sends the organization's data, selected and optionally transformed, to a Kafka topic or a webhook.",
      write ? h("a", { class: "button primary", href: `#${base}/rules/new` }, "New rule") : null,
    ),
  );
  const stats = new Map(); // ruleId -> stats
  const columns = [
    { label: "Name", get: (r) => link(`#${base}/rules/${encodeURIComponent(r.ruleId)}`, r.name) },
    { label: "Sink", get: (r) => sinkText(r.sink) },
    { label: "State", get: stateBadge },
    { label: "Matched", class: "num", get: (r) => count(stats.get(r.ruleId)?.matched) },
    { label: "Delivered", class: "num", get: (r) => count(stats.get(r.ruleId)?.delivered) },
    { label: "Failed attempts", class: "num", get: (r) => count(stats.get(r.ruleId)?.failed) },
    { label: "Dead-lettered", class: "num", get: (r) => count(stats.get(r.ruleId)?.deadLettered) },
    { label: "Lag", get: (r) => lagText(stats.get(r.ruleId)) },
    { label: "Last error", get: (r) => lastError(stats.get(r.ruleId)) },
  ];
  const rulesTable = (xs) => table(columns, xs, { caption: "Rules", rowAttrs: (r) => ({ "data-rule": r.ruleId }) });
  const emptyText = write ? "No rules yet: create one with New rule." : "No rules yet.";
  const list = listBox([], rulesTable, emptyText);
  async function refresh(first = false) {
    try {
      const items = await api.all(base + "/rules");
      const got = await Promise.all(items.map((r) => api.get(`${base}/rules/${encodeURIComponent(r.ruleId)}/stats`).catch(() => null)));
      items.forEach((r, i) => stats.set(r.ruleId, got[i]));
      list.show(items);
    } catch (e) {
      if (first) throw e; // the page's error (Not found for another organization)
      fill(list.el, h("p", { class: "alert error" }, errorText(e)));
    }
  }
  main.append(section("Rules", h("span", { class: "muted" }, `refreshed every ${REFRESH_MS / 1000} s`), list.el));
  await refresh(true);
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

// -- the editor ----------------------------------------------------------------------------

function multi(name, label, options, chosen, fieldPath, help) {
  const size = Math.min(6, Math.max(2, options.length));
  const f = field({ name, label, type: "select", field: fieldPath, options, help, attrs: { multiple: true, size } });
  for (const o of f.querySelectorAll("option")) o.selected = chosen.includes(o.value);
  return f;
}

function ruleForm({ products, models, rule, onSubmit, submit }) {
  const sel = rule?.select || {};
  const sink = rule?.sink || { type: "webhook" };
  const kafka = sink.type === "kafka" ? sink : {};
  const hook = sink.type === "webhook" ? sink : {};
  const sinkType = field({ name: "sinkType", label: "Sink", type: "select", field: "sink.type", value: sink.type, options: [["webhook", "Webhook (HTTP POST)"], ["kafka", "Kafka topic"]] });
  const format = field({ name: "format", label: "Format", type: "select", field: "sink.format", value: sink.format || DEFAULT_FORMAT[sink.type], options: FORMATS.map((x) => [x, x]), help: "enos: EnOS's envelope; enos-point: one message per point; headrace: the stream record." });
  const kafkaBox = h(
    "fieldset",
    { class: "sink kafka" },
    h("legend", {}, "Kafka"),
    field({ name: "bootstrap", label: "Bootstrap servers", field: "sink.bootstrap", value: kafka.bootstrap, placeholder: "host:port,host:port" }),
    field({ name: "topic", label: "Topic", field: "sink.topic", value: kafka.topic, help: "A template ({orgId}, {productKey}, {modelId}, {assetId}, {deviceKey}, {source}, {kind}, {pointId}); empty with format enos: EnOS's topics." }),
    field({ name: "key", label: "Message key", field: "sink.key", value: kafka.key ?? "{assetId}" }),
    field({ name: "tls", label: "TLS", type: "checkbox", field: "sink.tls", value: kafka.tls }),
    field({ name: "caFile", label: "CA file (on the hub)", field: "sink.caFile", value: kafka.caFile }),
    field({ name: "saslMechanism", label: "SASL", type: "select", field: "sink.sasl.mechanism", value: kafka.sasl?.mechanism || "", options: [["", "none"], ["PLAIN", "PLAIN"], ["SCRAM-SHA-256", "SCRAM-SHA-256"], ["SCRAM-SHA-512", "SCRAM-SHA-512"]] }),
    field({ name: "saslUsername", label: "SASL username", field: "sink.sasl.username", value: kafka.sasl?.username }),
    field({ name: "saslPassword", label: "SASL password", type: "password", field: "sink.sasl.password", help: rule && kafka.sasl ? "Say it again to save the rule (the hub does not show it)." : null }),
  );
  const headers = Object.entries(hook.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  const hookBox = h(
    "fieldset",
    { class: "sink webhook" },
    h("legend", {}, "Webhook"),
    field({ name: "url", label: "URL", field: "sink.url", value: hook.url, placeholder: "https://example.com/hook" }),
    field({ name: "timeout", label: "Timeout (s)", type: "number", field: "sink.timeout", value: hook.timeout ?? 10 }),
    field({ name: "batchSize", label: "Messages per POST", type: "number", field: "sink.batchSize", value: hook.batchSize ?? 100 }),
    field({ name: "headers", label: "Extra headers", type: "textarea", rows: 2, field: "sink.headers", value: headers, help: "One 'Name: value' a line." }),
    rule ? null : field({ name: "secret", label: "Signing secret", field: "sink.secret", help: "Empty: the hub makes one (shown once)." }),
  );
  const extra = [
    h(
      "fieldset",
      { class: "select" },
      h("legend", {}, "Selection (nothing chosen: all of the organization)"),
      multi("products", "Products", products.map((p) => [p.productKey, `${p.name} (${p.productKey})`]), sel.products || [], "select.products"),
      multi("models", "Models", models.map((m) => [m.id, m.name ? `${m.name} (${m.id})` : m.id]), sel.models || [], "select.models"),
      field({ name: "devices", label: "Devices", type: "textarea", rows: 2, field: "select.devices", value: (sel.devices || []).join("\n"), help: "assetIds or deviceKeys, one a line." }),
      multi("sources", "Sources", [["realtime", "realtime"], ["offline", "offline (history)"]], sel.sources || [], "select.sources"),
      multi("kinds", "Kinds", KINDS.map((k) => [k, k]), sel.kinds || [], "select.kinds", "Empty: the format's kinds."),
      field({ name: "points", label: "Measurepoints", type: "textarea", rows: 2, field: "select.points", value: (sel.points || []).join("\n"), help: "Point ids, one a line: records without them are skipped, the others trimmed to them." }),
    ),
    field({ name: "transform", label: "Transform (JavaScript, optional)", type: "textarea", rows: 6, field: "transform", value: rule?.transform || "", help: "Define transform(record): return a value to send, an array to send several, null to drop.", attrs: { spellcheck: "false", class: "code" } }),
    h("fieldset", { class: "sink-choice" }, h("legend", {}, "Destination"), sinkType, format),
    hookBox,
    kafkaBox,
  ];
  const fields = [{ name: "name", label: "Name", required: true, value: rule?.name }];
  if (!rule) {
    fields.push(
      { name: "start", label: "Start", type: "select", options: [["now", "with what is committed from now on"], ["earliest", "with the oldest record the stream holds"]] },
      { name: "paused", label: "Create paused", type: "checkbox" },
    );
  }
  const f = form({
    fields,
    extra,
    submit,
    onSubmit: (v, f) => onSubmit(bodyOf(v, f, rule), f),
  });
  const typeSelect = sinkType.querySelector("select");
  const formatSelect = format.querySelector("select");
  let formatTouched = !!rule;
  formatSelect.addEventListener("change", () => (formatTouched = true));
  const showSink = () => {
    const t = typeSelect.value;
    kafkaBox.hidden = t !== "kafka";
    hookBox.hidden = t !== "webhook";
    for (const el of kafkaBox.querySelectorAll("[name]")) el.disabled = t !== "kafka";
    for (const el of hookBox.querySelectorAll("[name]")) el.disabled = t !== "webhook";
    if (!formatTouched) formatSelect.value = DEFAULT_FORMAT[t];
  };
  typeSelect.addEventListener("change", showSink);
  showSink();
  return f;
}

function bodyOf(v, f, rule) {
  const chosen = (n) => [...f.querySelector(`select[name=${n}]`).selectedOptions].map((o) => o.value);
  const type = v.sinkType;
  let sink;
  if (type === "kafka") {
    sink = { type, bootstrap: v.bootstrap.trim(), topic: v.topic.trim() || null, key: v.key, format: v.format, tls: v.tls, caFile: v.caFile.trim() || null };
    if (v.saslMechanism) {
      // the hub never shows the password again: a saved sink needs it said again
      if (!v.saslPassword) throw new api.ApiError(0, "required", "the SASL password (the hub does not show it again)", "sink.sasl.password");
      sink.sasl = { mechanism: v.saslMechanism, username: v.saslUsername, password: v.saslPassword };
    }
  } else {
    const headers = {};
    for (const line of (v.headers || "").split("\n")) {
      const i = line.indexOf(":");
      if (i > 0) headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    sink = { type, url: v.url.trim(), format: v.format, timeout: v.timeout ?? 10, batchSize: v.batchSize ?? 100, headers };
    if (v.secret) sink.secret = v.secret;
  }
  const body = {
    name: v.name,
    select: { products: chosen("products"), models: chosen("models"), devices: lines(v.devices), sources: chosen("sources"), kinds: chosen("kinds"), points: lines(v.points) },
    transform: v.transform.trim() ? v.transform : null,
    sink,
  };
  if (!rule) {
    body.start = v.start;
    body.enabled = !v.paused;
  }
  return body;
}

// -- one rule: figures, replay, dead letters, edit -----------------------------------------------

export async function rulePage(main, { org, rule: ruleId }) {
  const base = `/orgs/${encodeURIComponent(org)}`;
  const [products, models] = await Promise.all([api.all(base + "/products"), api.all(base + "/models")]);
  if (ruleId === "new") return newRule(main, base, org, products, models);
  const path = `${base}/rules/${encodeURIComponent(ruleId)}`;
  const r = await api.get(path);
  const write = api.canWrite(org);
  let timer = 0;
  const actions = write
    ? [
        actionButton(r.enabled ? "Pause" : "Resume", async () => {
          await api.post(path + (r.enabled ? "/pause" : "/resume"));
          toast(r.enabled ? "Rule paused: it keeps its position" : "Rule resumed");
          reload();
        }),
        actionButton(
          "Delete",
          async () => {
            clearInterval(timer); // no more reads of what is being deleted
            await api.del(path);
            toast("Rule deleted");
            go(`${base}/rules`);
          },
          { confirm: `Delete rule ${r.name}, its position and its dead letters?`, danger: true },
        ),
      ]
    : null;
  const sel = r.select;
  const all = (xs) => (xs && xs.length ? xs.join(", ") : "all");
  const figures = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const dead = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  main.append(
    pageHead(r.name, `Rule ${r.ruleId}`, actions),
    section(
      "Rule",
      stateBadge(r),
      kv([
        ["Sink", sinkText(r.sink)],
        ["Format", r.sink.format],
        ["Products", all(sel.products)],
        ["Models", all(sel.models)],
        ["Devices", all(sel.devices)],
        ["Sources", all(sel.sources)],
        ["Kinds", sel.kinds.length ? sel.kinds.join(", ") : "the format's"],
        ["Measurepoints", all(sel.points)],
        ["Transform", r.transform ? h("pre", { class: "json" }, r.transform) : "none"],
        ["Created", fmtTime(r.createdAt)],
      ]),
    ),
    section("Delivery", h("button", { type: "button", class: "small", onclick: () => loadStats() }, "Refresh"), figures),
  );
  async function loadStats() {
    try {
      const s = await api.get(path + "/stats");
      fill(
        figures,
        h(
          "div",
          { class: "figures" },
          [
            ["Matched", count(s.matched)],
            ["Delivered", count(s.delivered)],
            ["Failed attempts", count(s.failed)],
            ["Dead-lettered", count(s.deadLettered)],
            ["Lag (records)", count(s.lagRecords)],
            ["Lag (s)", Number(s.lagSeconds || 0).toFixed(1)],
            ["Position", count(s.position)],
            ["Stream head", count(s.head)],
          ].map(([k, v]) => h("div", { class: "figure", dataset: { figure: k } }, h("span", { class: "figure-value" }, v), h("span", { class: "figure-label" }, k))),
        ),
        kv([
          ["Last error", lastError(s)],
          ["Dropped by retention", count(s.dropped)],
          ["Latency p50 / p99", s.latencyMs ? `${s.latencyMs.p50 ?? "—"} / ${s.latencyMs.p99 ?? "—"} ms` : "—"],
        ]),
      );
    } catch (e) {
      fill(figures, h("p", { class: "alert error" }, errorText(e)));
    }
  }
  if (write) main.append(section("Replay", null, replayForm(path, loadStats)));
  main.append(section("Dead letters", h("button", { type: "button", class: "small", onclick: () => loadDead() }, "Refresh"), dead));
  let deadCursor = "";
  async function loadDead(more = false) {
    try {
      const page = await api.get(path + "/dead-letters", { limit: 100, cursor: more ? deadCursor : undefined });
      deadCursor = page.nextCursor;
      const rows = page.items;
      const box = rows.length || more ? deadTable(rows) : empty("No dead letters: everything selected was delivered or is on its way.");
      if (more) dead.querySelector("tbody")?.append(...box.querySelectorAll("tbody tr"));
      else fill(dead, box);
      dead.querySelector("button.more")?.remove();
      if (deadCursor) dead.append(h("button", { type: "button", class: "small more", onclick: () => loadDead(true) }, "Older dead letters"));
    } catch (e) {
      fill(dead, h("p", { class: "alert error" }, errorText(e)));
    }
  }
  loadStats();
  loadDead();
  timer = setInterval(loadStats, REFRESH_MS);
  if (write) {
    const f = ruleForm({
      products,
      models,
      rule: r,
      submit: "Save rule",
      onSubmit: async (body) => {
        await api.patch(path, body);
        toast("Rule saved");
        reload();
      },
    });
    main.append(section("Edit", null, f));
  }
  return () => clearInterval(timer);
}

function deadTable(rows) {
  return table(
    [
      { label: "Time", class: "nowrap", get: (d) => fmtTime(d.at) },
      { label: "Error", get: (d) => h("span", { class: "rule-error" }, d.error) },
      { label: "Records", class: "num", get: (d) => String((d.records || []).length || (d.messages || []).length) },
      {
        label: "Details",
        get: (d) => h("details", {}, h("summary", {}, "records, messages, response"), h("pre", { class: "json", tabindex: "0" }, JSON.stringify({ records: d.records, messages: d.messages, response: d.response }, null, 2))),
      },
    ],
    rows,
    { caption: "Dead letters, oldest first" },
  );
}

function replayForm(path, after) {
  return form({
    fields: [
      { name: "from", label: "Replay from", type: "select", options: [["time", "a time"], ["position", "a stream position"]] },
      { name: "time", label: "Time", type: "datetime-local", field: "time" },
      { name: "position", label: "Stream position", type: "number", field: "position", help: "Sends again what came after this position." },
    ],
    submit: "Replay",
    onSubmit: async (v) => {
      const body = v.from === "time" ? { time: fromLocalInput(v.time) } : { position: v.position };
      if (body.time === null || body.position === null) throw new api.ApiError(0, "required", "say from when", v.from);
      const r = await api.post(path + "/replay", body);
      toast(r.clamped ? `Replaying from position ${r.position} (the stream holds nothing older)` : `Replaying from position ${r.position}`);
      after();
    },
  });
}

async function newRule(main, base, org, products, models) {
  main.append(pageHead("New rule", "Data of this organization out to a Kafka topic or a webhook."));
  if (!api.canWrite(org)) {
    main.append(empty("You can read this organization's rules but not create them."));
    return;
  }
  const out = h("div", {});
  main.append(
    out,
    section(
      "Rule",
      null,
      ruleForm({
        products,
        models,
        submit: "Create rule",
        onSubmit: async (body) => {
          const r = await api.post(base + "/rules", body);
          toast(`Rule ${r.ruleId} created`);
          const open = h("p", {}, link(`#${base}/rules/${encodeURIComponent(r.ruleId)}`, "Open the rule"));
          if (r.sink.type === "webhook") fill(out, secretBox(`Rule ${r.name} created`, [["ruleId", r.ruleId], ["signing secret", r.sink.secret]]), open);
          else go(`${base}/rules/${encodeURIComponent(r.ruleId)}`);
        },
      }),
    ),
  );
}
