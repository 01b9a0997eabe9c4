// A small JavaScript highlighter for the script editor: comments, strings, template
// literals, numbers, keywords, regular expressions (where an operand may start), the
// rest plain. It returns DOM nodes; nothing is parsed as HTML.

const KEYWORDS = new Set(
  "break case catch class const continue debugger default delete do else export extends finally for function if import in instanceof let new of return super switch this throw try typeof var void while with yield async await null undefined true false".split(" "),
);
const BUILTINS = new Set("JSON Math Number String Array Object Date parseInt parseFloat isNaN Uint8Array DataView ArrayBuffer Error".split(" "));

export function tokens(src) {
  const out = [];
  let i = 0;
  let prevSignificant = ""; // the last non-space token's text (regex or division?)
  const push = (type, text) => {
    out.push([type, text]);
    if (type !== "space" && type !== "comment") prevSignificant = text;
  };
  while (i < src.length) {
    const c = src[i];
    const rest = src.slice(i, i + 2);
    if (rest === "//") {
      const end = src.indexOf("\n", i);
      const j = end < 0 ? src.length : end;
      push("comment", src.slice(i, j));
      i = j;
    } else if (rest === "/*") {
      const end = src.indexOf("*/", i + 2);
      const j = end < 0 ? src.length : end + 2;
      push("comment", src.slice(i, j));
      i = j;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) {
        if (src[j] === "\\") j++;
        else if (src[j] === "\n" && c !== "`") break;
        j++;
      }
      push("string", src.slice(i, j + 1));
      i = j + 1;
    } else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(src[i + 1] || ""))) {
      const m = /^(0[xX][0-9a-fA-F_]+|0[bB][01_]+|[0-9_]*\.?[0-9_]+([eE][+-]?[0-9]+)?n?)/.exec(src.slice(i));
      push("number", m[0]);
      i += m[0].length;
    } else if (/[A-Za-z_$]/.test(c)) {
      const m = /^[A-Za-z_$][\w$]*/.exec(src.slice(i));
      const w = m[0];
      push(KEYWORDS.has(w) ? "keyword" : BUILTINS.has(w) ? "builtin" : src[i + w.length] === "(" ? "call" : "name", w);
      i += w.length;
    } else if (/\s/.test(c)) {
      const m = /^\s+/.exec(src.slice(i));
      push("space", m[0]);
      i += m[0].length;
    } else if (c === "/" && (prevSignificant === "" || /[(,=:[!&|?{};+\-*%<>~^]$/.test(prevSignificant) || KEYWORDS.has(prevSignificant))) {
      // a regular expression literal
      let j = i + 1;
      let cls = false;
      while (j < src.length && src[j] !== "\n") {
        if (src[j] === "\\") j++;
        else if (src[j] === "[") cls = true;
        else if (src[j] === "]") cls = false;
        else if (src[j] === "/" && !cls) break;
        j++;
      }
      const m = /^[a-z]*/.exec(src.slice(j + 1));
      push("regex", src.slice(i, j + 1 + m[0].length));
      i = j + 1 + m[0].length;
    } else {
      push("punct", c);
      i++;
    }
  }
  return out;
}

// a DocumentFragment of spans (class tok-<type>) for src
export function highlight(src) {
  const frag = document.createDocumentFragment();
  for (const [type, text] of tokens(src)) {
    if (type === "space" || type === "name" || type === "punct") frag.append(text);
    else {
      const s = document.createElement("span");
      s.className = "tok-" + type;
      s.textContent = text;
      frag.append(s);
    }
  }
  return frag;
}

// a line diff: [["same"|"add"|"del", line]] turning a into b (LCS)
export function diffLines(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  // trim the common head and tail: most edits are small
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail);
  const ys = y.slice(head, y.length - tail);
  const n = xs.length;
  const m = ys.length;
  const out = x.slice(0, head).map((l) => ["same", l]);
  if (n * m > 4_000_000) {
    // too big for the table: everything removed, then everything added
    xs.forEach((l) => out.push(["del", l]));
    ys.forEach((l) => out.push(["add", l]));
  } else {
    const L = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--)
      for (let j = m - 1; j >= 0; j--)
        L[i * (m + 1) + j] = xs[i] === ys[j] ? L[(i + 1) * (m + 1) + j + 1] + 1 : Math.max(L[(i + 1) * (m + 1) + j], L[i * (m + 1) + j + 1]);
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (xs[i] === ys[j]) {
        out.push(["same", xs[i]]);
        i++;
        j++;
      } else if (L[(i + 1) * (m + 1) + j] >= L[i * (m + 1) + j + 1]) out.push(["del", xs[i++]]);
      else out.push(["add", ys[j++]]);
    }
    while (i < n) out.push(["del", xs[i++]]);
    while (j < m) out.push(["add", ys[j++]]);
  }
  x.slice(x.length - tail).forEach((l) => out.push(["same", l]));
  return out;
}
