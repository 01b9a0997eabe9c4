// A product's parsing script: an editor with syntax highlighting, saved versions with a
// diff between any two and rollback, and a debug run of the editor's text on hex or
// base64 sample bytes (output, the hub's reply, errors with line and column, duration).

import * as api from "../api.js";
import { h, toast, empty, pageHead, section, fmtTime, confirmDialog, errorText, field, reload, fill } from "../ui.js";
import { highlight, diffLines } from "../highlight.js";

const TEMPLATE = `// rawDataToJsonStr: raw bytes (an array of numbers) -> an integration request (JSON text)
function rawDataToJsonStr(rawData) {
  var b = rawData.map(function (x) { return x & 0xff; });
  return JSON.stringify({
    id: "1", version: "1.0", method: "integration.measurepoint.post",
    params: [{ deviceKey: "dev" + b[0], time: Date.now(), measurepoints: { temp: b[1] } }]
  });
}

// jsonStrToRawData (optional): the hub's reply (JSON text) -> bytes sent back
function jsonStrToRawData(json) {
  var r = JSON.parse(json);
  return [r.code === 200 ? 1 : 0];
}
`;

export function editor(source, { readOnly = false, label = "Script source" } = {}) {
  const code = h("code", {});
  const pre = h("pre", { class: "code-layer", "aria-hidden": "true" }, code);
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const ta = h("textarea", { class: "code-input", spellcheck: "false", autocapitalize: "off", autocomplete: "off", "aria-label": label, readonly: readOnly || null, wrap: "off" });
  ta.value = source;
  let marked = 0;
  const paint = () => {
    fill(code, highlight(ta.value + (ta.value.endsWith("\n") ? " " : "")));
    const n = ta.value.split("\n").length;
    if (gutter.children.length !== n) {
      const frag = document.createDocumentFragment();
      for (let i = 1; i <= n; i++) frag.append(h("div", { class: i === marked ? "err" : "" }, String(i)));
      fill(gutter, frag);
    }
  };
  ta.addEventListener("input", paint);
  ta.addEventListener("scroll", () => {
    pre.scrollTop = ta.scrollTop;
    pre.scrollLeft = ta.scrollLeft;
    gutter.scrollTop = ta.scrollTop;
  });
  paint();
  const el = h("div", { class: "editor" }, gutter, h("div", { class: "editor-body" }, pre, ta));
  return {
    el,
    get value() {
      return ta.value;
    },
    set value(v) {
      ta.value = v;
      paint();
    },
    mark(line) {
      marked = line || 0;
      [...gutter.children].forEach((d, i) => d.classList.toggle("err", i + 1 === marked));
    },
    goTo(line, column) {
      const lines = ta.value.split("\n");
      let pos = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
      pos += Math.max(0, (column || 1) - 1);
      ta.focus();
      ta.setSelectionRange(pos, pos);
      const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
      ta.scrollTop = Math.max(0, (line - 3) * lh);
    },
  };
}

function where(e) {
  const line = e.line ?? e.extra?.line;
  const column = e.column ?? e.extra?.column;
  return line ? { line, column } : null;
}

export async function scriptPage(main, { org, pk }) {
  const base = `/orgs/${encodeURIComponent(org)}/products/${encodeURIComponent(pk)}`;
  const product = await api.get(base);
  let script = null;
  try {
    script = await api.get(base + "/script");
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  const write = api.canWrite(org);
  main.append(
    pageHead(`Parsing script of ${product.name}`, `Product ${pk} · data format ${product.dataFormat}` + (product.dataFormat !== "custom" ? " (scripts decode raw data of custom products only)" : "")),
  );
  const ed = editor(script?.source ?? TEMPLATE, { readOnly: !write });
  const problem = h("div", { "aria-live": "assertive" });
  const showProblem = (message, loc) => {
    ed.mark(loc?.line);
    fill(problem, 
      h(
        "div",
        { class: "alert error", role: "alert" },
        loc ? h("strong", {}, `Line ${loc.line}${loc.column ? `, column ${loc.column}` : ""}: `) : null,
        message,
        loc ? h("button", { type: "button", class: "small", onclick: () => ed.goTo(loc.line, loc.column) }, "Go to line") : null,
      ),
    );
  };
  const clearProblem = () => {
    ed.mark(0);
    fill(problem);
  };
  const save = write
    ? h("button", {
        type: "button",
        class: "primary",
        onclick: async (ev) => {
          const btn = ev.currentTarget;
          btn.disabled = true;
          clearProblem();
          try {
            const r = await api.put(base + "/script", ed.value, { headers: { "content-type": "text/plain; charset=utf-8" } });
            toast(`Saved as version ${r.version}`);
            reload();
          } catch (e) {
            showProblem(errorText(e), where(e));
          } finally {
            btn.disabled = false;
          }
        },
      }, script ? "Save as new version" : "Save script")
    : null;
  main.append(
    section(
      script ? `Current script: version ${script.version}` : "No script yet",
      save,
      script ? null : h("p", { class: "muted" }, write ? "A template is in the editor: change it, try it below, then save it." : "This product has no parsing script."),
      ed.el,
      problem,
    ),
  );

  // debug run
  const out = h("div", { class: "debug-out", "aria-live": "polite" });
  const formatSel = field({ name: "format", label: "Sample format", type: "select", options: [["hex", "hex"], ["base64", "base64"]] });
  const sample = field({ name: "sample", label: "Sample bytes", type: "textarea", rows: 2, value: "0117", help: "For example 01 17 (hex) or ARc= (base64)." });
  const run = h("button", {
    type: "button",
    class: "primary",
    onclick: async (ev) => {
      const btn = ev.currentTarget;
      btn.disabled = true;
      clearProblem();
      fill(out, h("p", { class: "muted" }, "Running…"));
      const fmt = formatSel.querySelector("select").value;
      const text = sample.querySelector("textarea").value.trim();
      const body = { [fmt]: fmt === "hex" ? text.replace(/[\s:]/g, "").replace(/^0x/i, "") : text, source: ed.value };
      try {
        const r = await api.post(base + "/script/debug", body);
        // a syntax error says where in its fields; a runtime error in its message
        const said = /\bline (\d+)(?:,? column (\d+))?/i.exec(r.error || "");
        const loc = r.line ? { line: r.line, column: r.column } : said ? { line: Number(said[1]), column: said[2] ? Number(said[2]) : null } : null;
        if (!r.ok) showProblem(r.error || "the script failed", loc);
        fill(out, 
          h("p", {}, r.ok ? h("span", { class: "badge ok" }, "ok") : h("span", { class: "badge err" }, "failed"), r.durationMs !== undefined ? ` in ${Number(r.durationMs).toFixed(2)} ms` : "", r.kind ? ` · ${r.kind}` : ""),
          r.error ? h("p", { class: "alert error" }, loc ? `Line ${loc.line}${loc.column ? `, column ${loc.column}` : ""}: ` : "", r.error) : null,
          r.output !== undefined ? [h("h3", {}, "Output"), h("pre", { class: "json", tabindex: "0", "aria-label": "Script output" }, JSON.stringify(r.output, null, 2))] : null,
          r.reply !== undefined ? [h("h3", {}, "The hub would answer"), h("pre", { class: "json", tabindex: "0", "aria-label": "Reply" }, JSON.stringify(r.reply, null, 2))] : null,
          r.raw !== undefined || r.replyRaw !== undefined ? [h("h3", {}, "Reply bytes"), h("pre", { class: "json" }, JSON.stringify(r.raw ?? r.replyRaw))] : null,
        );
      } catch (e) {
        fill(out, h("p", { class: "alert error" }, errorText(e)));
        if (where(e)) showProblem(e.message, where(e));
      } finally {
        btn.disabled = false;
      }
    },
  }, "Run on the editor's script");
  main.append(section("Debug run", null, h("p", { class: "muted" }, "Runs the editor's text (saved or not) on sample bytes in the sandbox; nothing is stored."), h("div", { class: "grid2" }, formatSel, sample), h("div", { class: "actions" }, run), out));

  // versions, diff, rollback
  if (script) {
    const versions = [...script.versions].sort((a, b) => b.version - a.version);
    const cache = new Map();
    const source = async (v) => {
      if (!cache.has(v)) cache.set(v, (await api.get(`${base}/script/versions/${v}`)).source);
      return cache.get(v);
    };
    const opts = versions.map((v) => [v.version, `version ${v.version} · ${fmtTime(v.createdAt)}${v.version === script.version ? " (current)" : ""}`]);
    const fromSel = field({ name: "from", label: "From", type: "select", options: opts, value: versions[1]?.version ?? versions[0].version });
    const toSel = field({ name: "to", label: "To", type: "select", options: opts, value: versions[0].version });
    const diffBox = h("div", { class: "diff-box" });
    const showDiff = async () => {
      const a = Number(fromSel.querySelector("select").value);
      const b = Number(toSel.querySelector("select").value);
      try {
        const [sa, sb] = await Promise.all([source(a), source(b)]);
        const d = diffLines(sa, sb);
        const changed = d.filter(([t]) => t !== "same").length;
        fill(diffBox, 
          h("p", { class: "muted" }, changed ? `${d.filter(([t]) => t === "add").length} lines added, ${d.filter(([t]) => t === "del").length} removed` : "The two versions are the same."),
          h("pre", { class: "diff", tabindex: "0", "aria-label": `Diff of version ${a} to ${b}` }, d.map(([t, l]) => h("div", { class: `d-${t}` }, h("span", { class: "sign", "aria-label": t === "add" ? "added" : t === "del" ? "removed" : null }, t === "add" ? "+" : t === "del" ? "-" : " "), l))),
        );
      } catch (e) {
        fill(diffBox, h("p", { class: "alert error" }, errorText(e)));
      }
    };
    fromSel.querySelector("select").addEventListener("change", showDiff);
    toSel.querySelector("select").addEventListener("change", showDiff);
    const list = h(
      "ul",
      { class: "versions" },
      versions.map((v) =>
        h(
          "li",
          {},
          h("span", {}, `Version ${v.version}`, v.version === script.version ? h("span", { class: "badge ok" }, " current") : null, h("small", { class: "muted" }, ` ${fmtTime(v.createdAt)}`)),
          write && v.version !== script.version
            ? h("button", {
                type: "button",
                class: "small",
                onclick: async () => {
                  if (!(await confirmDialog(`Make version ${v.version} the current script again?`, "Roll back"))) return;
                  try {
                    await api.post(base + "/script/rollback", { version: v.version });
                    toast(`Version ${v.version} is current again`);
                    reload();
                  } catch (e) {
                    toast(errorText(e), "error");
                  }
                },
              }, `Roll back to ${v.version}`)
            : null,
        ),
      ),
    );
    main.append(section(`Versions (${versions.length})`, null, list, h("div", { class: "grid2" }, fromSel, toSel), diffBox));
    if (versions.length > 1) showDiff();
    else diffBox.append(empty("One version only: save another to compare."));
  }
}
