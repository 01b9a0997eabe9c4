"""The trusted JavaScript evaluated in every product context before its script."""

PRELUDE = r"""// Trusted code evaluated in every product's QuickJS context before the product's script.
// Evaluates to the one function Python calls: __headrace_dispatch(op, arg, limitMs).
//
// Invariant that keeps the host safe: the dispatcher only ever hands Python a primitive
// string ("+" payload; "~+" payload when the call took longer than limitMs of wall time,
// which only C code the interrupt handler cannot stop can do; or "!" kind message "\n"
// stack), or lets an engine error escape
// (interrupted, out of memory, stack overflow). quickjs-python converts an escaping
// exception to text *after* its time limit is switched off, so a script-controlled
// toString/getter run there would hang the process; hence every script call sits inside
// try/catch, the catch describes the exception while the limit still applies, and the
// error prototypes the engine's own errors use are frozen.
(function (indirectEval) {
  "use strict";
  var toStr = String;
  var now = Date.now;
  var isArray = Array.isArray;
  var isView = ArrayBuffer.isView;
  var errorTypes = [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError,
    URIError, InternalError, AggregateError];
  Object.defineProperty(Error.prototype, Symbol.toPrimitive, { value: undefined });
  for (var k = 0; k < errorTypes.length; k++) Object.freeze(errorTypes[k].prototype);
  var SyntaxErrorType = SyntaxError;
  var InternalErrorType = InternalError;
  var HEX = [];
  for (k = 0; k < 256; k++) HEX.push((k < 16 ? "0" : "") + k.toString(16));
  var UNSAFE = /[\u0000\ud800-\udfff]/g;
  // Appended to the script (after a newline, so a trailing // comment ends) and evaluated
  // in the same eval: its completion value hands back the two functions however the
  // script declared them (function, var, let, const; sloppy or strict).
  var TRAILER = "\n;[typeof rawDataToJsonStr === 'undefined' ? undefined : rawDataToJsonStr," +
    " typeof jsonStrToRawData === 'undefined' ? undefined : jsonStrToRawData]";
  var toJson = null;
  var fromJson = null;

  function kindOf(v) {
    return v === null ? "null" : isArray(v) ? "an array" : typeof v;
  }

  function clean(s, max) {
    if (typeof s !== "string") return "";
    if (s.length > max) s = s.slice(0, max) + "...";
    s = s.replace(UNSAFE, "\ufffd");
    return typeof s === "string" ? s : "";
  }

  function isOutOfMemory(x) {
    try {
      return x === null || (x instanceof InternalErrorType && x.message === "out of memory");
    } catch (_) {
      return false;
    }
  }

  function __headrace_describe(e) {
    var text = "";
    var stack = "";
    try {
      text = toStr(e);
      if (e !== null && typeof e === "object") {
        var st = e.stack;
        if (typeof st === "string") stack = st;
      }
    } catch (inner) {
      // Converting needs memory too: after an out-of-memory error it may fail again.
      text = isOutOfMemory(inner) || isOutOfMemory(e) ? "InternalError: out of memory"
        : "(an exception that cannot be converted to a string)";
    }
    try {
      return clean(text, 1000) + "\n" + clean(stack, 4000);
    } catch (_) {
      return "(an exception that cannot be converted to a string)\n";
    }
  }

  function __headrace_load(source) {
    var fns;
    try {
      fns = indirectEval(source + TRAILER);
    } catch (e) {
      return (e instanceof SyntaxErrorType ? "!s" : "!x") + __headrace_describe(e);
    }
    var raw = fns[0];
    var back = fns[1];
    if (raw === undefined) return "!dscript does not define a function rawDataToJsonStr\n";
    if (typeof raw !== "function") {
      return "!drawDataToJsonStr is " + kindOf(raw) + ", not a function\n";
    }
    if (back !== undefined && typeof back !== "function") {
      return "!djsonStrToRawData is " + kindOf(back) + ", not a function\n";
    }
    toJson = raw;
    fromJson = back === undefined ? null : back;
    return fromJson === null ? "+0" : "+1";
  }

  function __headrace_rawToJson(wide) {
    // One character per byte, U+0100 + byte (no NUL can reach the C string API);
    // the script sees signed values -128..127 as EnOS hands them over.
    var n = wide.length;
    var bytes = new Array(n);
    for (var i = 0; i < n; i++) bytes[i] = (wide.charCodeAt(i) << 24) >> 24;
    var out = toJson(bytes);
    if (typeof out !== "string") {
      return "!rrawDataToJsonStr returned " + kindOf(out) + ", not a string\n";
    }
    if (out.indexOf("\u0000") >= 0) {
      return "!rrawDataToJsonStr returned a string containing a NUL character\n";
    }
    return "+" + out;
  }

  function __headrace_jsonToRaw(json) {
    var r = fromJson(json);
    if (!isArray(r) && !(isView(r) && typeof r.length === "number")) {
      return "!rjsonStrToRawData returned " + kindOf(r) + ", not an array of byte values\n";
    }
    var n = r.length;
    var parts = new Array(n);
    for (var i = 0; i < n; i++) {
      var v = r[i];
      if (typeof v !== "number" || v % 1 !== 0) {
        return "!rjsonStrToRawData returned an array whose element " + i + " is " +
          (typeof v === "number" ? toStr(v) : kindOf(v)) + ", not a byte value\n";
      }
      parts[i] = HEX[v & 0xff];
    }
    var hex = parts.join("");
    return typeof hex === "string" ? "+" + hex : "!rjsonStrToRawData result not convertible\n";
  }

  return function __headrace_dispatch(op, arg, limitMs) {
    var started = now();
    var out;
    try {
      if (op === 1) out = __headrace_rawToJson(arg);
      else if (op === 2) out = __headrace_jsonToRaw(arg);
      else if (op === 0) out = __headrace_load(arg);
      else out = "!dunknown operation\n";
    } catch (e) {
      out = "!x" + __headrace_describe(e);
    }
    if (out[0] === "+" && now() - started > limitMs) out = "~" + out;
    return out;
  };
})(eval)
"""
