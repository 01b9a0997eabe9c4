"""Sandboxed per-product JavaScript parsing scripts (EnOS convention, protocols.md A.6).

A product's script defines ``rawDataToJsonStr(rawData)`` (``rawData``: array of signed
byte values -128..127; returns a JSON string) and optionally ``jsonStrToRawData(jsonStr)``
(returns an array of byte values, signed or unsigned). Scripts run in QuickJS (PyPI
``quickjs``): one runtime per product context, so products share nothing; no host
function is ever exposed, so a script can do no I/O; every call runs under a CPU time
limit and the runtime under a memory limit.

Threading: the ingest pipeline calls :class:`ScriptEngine` from worker threads
(``asyncio.to_thread`` or an executor), never on the event loop. Calls for one product are
serialized by a per-product lock; calls for different products run in parallel, since
quickjs-python releases the GIL while JavaScript runs and re-anchors QuickJS's stack
check on every call (so a context may move between threads).

Known limit of the engine (QuickJS 2021-03-27 inside quickjs 1.19): the time limit is
checked by the bytecode interpreter only. A regular expression that backtracks
catastrophically, or a built-in looping over a huge array-like (``Array.prototype.indexOf
.call({length: 1e15})``), runs to its end in C and cannot be interrupted. Such a call is
reported as over the time limit when it finally returns (thread CPU time is checked after
every call), and while it runs the product is refused with ``kind="busy"`` after
``busy_timeout_s`` instead of piling up worker threads. ``compile_script`` and
``debug_run`` run in the caller's thread and have no such guard.
"""

from __future__ import annotations

import codecs
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import quickjs

from ..errors import REPLY_DECODE_FAILED, ClientError
from .prelude import PRELUDE

KiB = 1024
MiB = 1024 * 1024
DEFAULT_TIME_LIMIT_MS = 100
DEFAULT_MEMORY_LIMIT = 32 * MiB
DEFAULT_MAX_SOURCE_SIZE = 256 * KiB
DEFAULT_MAX_CONTEXTS = 1024

ScriptVersion = str | int

ScriptErrorKind = Literal[
    "source",  # refused before compiling: too large, NUL character, invalid Unicode
    "syntax",  # does not parse (line/column set where known)
    "definition",  # parses, but rawDataToJsonStr is missing or not a function
    "exception",  # the script threw (at top level or in a call)
    "result",  # a call returned something that is not what the convention asks for
    "time",  # time limit exceeded
    "memory",  # memory limit exceeded
    "stack",  # stack overflow (recursion too deep)
    "busy",  # the product's previous call is stuck in non-interruptible native code
]


class ScriptError(ClientError):
    """A parsing script was refused or failed; the request is answered with 1202."""

    status = 422
    code = "script_failed"
    reply_code = REPLY_DECODE_FAILED

    def __init__(
        self,
        message: str,
        *,
        kind: ScriptErrorKind = "exception",
        line: int | None = None,
        column: int | None = None,
        stack: str | None = None,
    ):
        super().__init__(message)
        self.kind: ScriptErrorKind = kind
        self.line = line
        self.column = column
        self.stack = stack

    def copy(self) -> ScriptError:
        """A fresh instance (re-raising a cached one would grow its traceback forever)."""
        return ScriptError(
            self.message, kind=self.kind, line=self.line, column=self.column, stack=self.stack
        )


@dataclass(frozen=True, slots=True)
class ScriptLimits:
    time_limit_ms: float = DEFAULT_TIME_LIMIT_MS
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    max_source_size: int = DEFAULT_MAX_SOURCE_SIZE

    def __post_init__(self) -> None:
        if not self.time_limit_ms > 0:
            raise ValueError("time_limit_ms must be positive")
        if self.memory_limit < 1 * MiB:
            raise ValueError("memory_limit must be at least 1 MiB")
        if self.max_source_size <= 0:
            raise ValueError("max_source_size must be positive")

    @property
    def time_text(self) -> str:
        return f"time limit of {self.time_limit_ms:g} ms exceeded"

    @property
    def memory_text(self) -> str:
        return f"memory limit of {_size_text(self.memory_limit)} exceeded"


def _size_text(n: int) -> str:
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} bytes"


# -- the QuickJS boundary ---------------------------------------------------------------

_OP_LOAD = 0
_OP_RAW_TO_JSON = 1
_OP_JSON_TO_RAW = 2
_FUNCTION_NAMES = {
    _OP_LOAD: "script top level",
    _OP_RAW_TO_JSON: "rawDataToJsonStr",
    _OP_JSON_TO_RAW: "jsonStrToRawData",
}

# Byte b travels as the character U+0100 + b: quickjs-python passes strings through
# strlen()-based C APIs, so a NUL must never appear; the prelude undoes the offset.
_WIDE = "".join(chr(0x100 + b) for b in range(256))
_LINE_IN_STACK = re.compile(r"<input>:(\d+)\)")
_GUARD = ";throw 0;"
_USE_STRICT = re.compile(r"""\A\s*(['"])use strict\1""")


def _check_text(text: str, what: str, limit: int | None = None) -> None:
    """Refuse text the C side cannot carry intact (NUL, lone surrogates), or too large."""
    if "\x00" in text:
        raise ScriptError(f"{what} contains a NUL character", kind="source")
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ScriptError(f"{what} is not valid Unicode", kind="source") from None
    if limit is not None and size > limit:
        raise ScriptError(
            f"{what} is {size} bytes, more than the limit of {_size_text(limit)}",
            kind="source",
        )


def _new_context(limits: ScriptLimits) -> Any:
    ctx = quickjs.Context()
    ctx.set_memory_limit(limits.memory_limit)
    ctx.set_time_limit(limits.time_limit_ms / 1000.0)
    return ctx


def _engine_error(text: str, limits: ScriptLimits, function: str) -> ScriptError:
    """Classify an exception text from QuickJS (escaped or described by the prelude)."""
    first, _, rest = text.partition("\n")
    if first.startswith("InternalError: interrupted"):
        return ScriptError(f"{function}: {limits.time_text}", kind="time")
    if first.startswith("InternalError: out of memory") or first.startswith(
        "(Failed obtaining QuickJS error string"
    ):
        return ScriptError(f"{function}: {limits.memory_text}", kind="memory")
    if first == "null":
        # QuickJS throws null when it cannot even allocate its out-of-memory error; a
        # script throwing null itself looks the same from outside.
        return ScriptError(
            f"{function}: {limits.memory_text} (or the script threw null)", kind="memory"
        )
    if first.startswith("InternalError: stack overflow"):
        return ScriptError(f"{function}: stack overflow (recursion too deep)", kind="stack")
    stack = _clean_stack(rest)
    where = _LINE_IN_STACK.search(stack or "")
    at = f" (line {where.group(1)})" if where else ""
    return ScriptError(f"{function}: {first}{at}", kind="exception", stack=stack)


def _clean_stack(stack: str) -> str | None:
    """The script's own frames: the prelude's frames (and the eval that loaded the
    script, the last frame before them) are cut off."""
    lines: list[str] = []
    for line in stack.splitlines():
        if "__headrace_" in line:
            if lines and lines[-1].strip() == "at eval (native)":
                lines.pop()
            break
        if line.strip() and line.strip() != "undefined":
            lines.append(line)
    return "\n".join(lines[:12]) or None


class _Sandbox:
    """One QuickJS runtime + context with one script loaded. Not thread-safe."""

    __slots__ = ("_dispatch", "has_json_to_raw", "limits")

    def __init__(self, source: str, limits: ScriptLimits):
        _check_text(source, "script", limits.max_source_size)
        self.limits = limits
        ctx = _new_context(limits)
        try:
            self._dispatch = ctx.eval(PRELUDE)
        except quickjs.JSException as exc:  # memory limit too small for the prelude
            raise _engine_error(str(exc), limits, "script") from None
        try:
            status = self._call(_OP_LOAD, source)
        except ScriptError as exc:
            if exc.kind == "syntax":
                raise _syntax_error(source, exc, limits) from None
            raise
        self.has_json_to_raw = status == "1"

    def _call(self, op: int, arg: str) -> str:
        limits = self.limits
        function = _FUNCTION_NAMES[op]
        started = time.thread_time()
        try:
            result = self._dispatch(op, arg)
        except quickjs.JSException as exc:
            raise _engine_error(str(exc), limits, function) from None
        except UnicodeDecodeError:  # a lone surrogate in the returned string
            raise ScriptError(
                f"{function} returned a string that is not valid Unicode", kind="result"
            ) from None
        # The interrupt handler cannot stop C code (regex backtracking, built-ins over
        # huge array-likes); catch those overruns afterwards on this thread's CPU time.
        if (time.thread_time() - started) * 1000.0 > limits.time_limit_ms:
            raise ScriptError(
                f"{function}: {limits.time_text} (in a built-in function that cannot be interrupted)",
                kind="time",
            )
        if result[0] == "+":
            return str(result[1:])
        tag, payload = result[1], result[2:]
        if tag in ("x", "s"):
            error = _engine_error(payload, limits, function)
            if tag == "s" and error.kind == "exception":
                error.kind = "syntax"
            raise error
        message = payload.partition("\n")[0]
        raise ScriptError(message, kind="definition" if tag == "d" else "result")

    def raw_to_json(self, raw: bytes | bytearray | memoryview) -> str:
        return self._call(_OP_RAW_TO_JSON, codecs.charmap_decode(raw, "strict", _WIDE)[0])

    def json_to_raw(self, json_str: str) -> bytes | None:
        if not self.has_json_to_raw:
            return None
        return bytes.fromhex(self._call(_OP_JSON_TO_RAW, json_str))


# -- syntax errors: QuickJS 2021 reports the line only; find the column ------------------


def _probe_syntax(source: str, limits: ScriptLimits) -> tuple[str, int | None] | None:
    """Parse ``source`` as a script in a fresh context without running any of it.

    A guard ``;throw 0;`` (after a hashbang line / "use strict" directive) is the first
    statement, so a source that parses stops at once; one that does not yields
    QuickJS's own SyntaxError. Returns (first line of the error, line number) or None.
    """
    at = 0
    if source.startswith("#!"):
        newline = source.find("\n")
        at = len(source) if newline < 0 else newline + 1
    else:
        strict = _USE_STRICT.match(source)
        if strict:
            at = strict.end()
    ctx = _new_context(limits)
    try:
        ctx.eval(source[:at] + _GUARD + source[at:])
    except quickjs.JSException as exc:
        text = str(exc)
    else:
        return None
    first, _, rest = text.partition("\n")
    if not first.startswith("SyntaxError"):
        return None
    line = re.search(r"<input>:(\d+)", rest)
    return first, int(line.group(1)) if line else None


def _syntax_column(source: str, error: str, line: int, limits: ScriptLimits) -> int | None:
    """Column (1-based) of the character at which QuickJS gave up on ``line``.

    The parser reads left to right and stops at the first bad token, so a prefix of the
    source reproduces the same error exactly when it reaches that token: the shortest
    such prefix (binary search within the line) ends on it.
    """
    lines = source.split("\n")
    if not 1 <= line <= len(lines):
        return None
    start = sum(len(text) + 1 for text in lines[: line - 1])
    hi = min(len(source), start + len(lines[line - 1]) + 1)
    target = (error, line)
    if _probe_syntax(source[:hi], limits) != target:
        return None
    lo = start
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _probe_syntax(source[:mid], limits) == target:
            hi = mid
        else:
            lo = mid
    # A keyword, name or number only reproduces the error once complete: report where
    # that token starts.
    end = hi
    while end > start and (source[end - 1].isalnum() or source[end - 1] in "_$"):
        end -= 1
    return max(1, (end if end < hi else hi - 1) - start + 1)


def _syntax_error(source: str, loaded: ScriptError, limits: ScriptLimits) -> ScriptError:
    probe = _probe_syntax(source, limits)
    if probe is None:
        # Not a parse error: a SyntaxError thrown while the top level ran (JSON.parse...).
        loaded.kind = "exception"
        return loaded
    error, line = probe
    detail = error.removeprefix("SyntaxError: ")
    if line is None:
        return ScriptError(f"SyntaxError: {detail}", kind="syntax")
    column = _syntax_column(source, error, line, limits)
    where = f"line {line}" if column is None else f"line {line}, column {column}"
    return ScriptError(f"SyntaxError at {where}: {detail}", kind="syntax", line=line, column=column)


# -- public API ----------------------------------------------------------------------------


def compile_script(
    source: str,
    *,
    max_source_size: int = DEFAULT_MAX_SOURCE_SIZE,
    time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> None:
    """Check a script: it parses, its top level runs within the limits, and it defines
    ``rawDataToJsonStr`` (``jsonStrToRawData``, if defined, must be a function too).

    Uses a fresh context that is thrown away. Raises :class:`ScriptError`; syntax errors
    name line and column (``error.line``, ``error.column``).
    """
    _Sandbox(source, ScriptLimits(time_limit_ms, memory_limit, max_source_size))


def debug_run(
    source: str,
    raw: bytes,
    *,
    max_source_size: int = DEFAULT_MAX_SOURCE_SIZE,
    time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> dict[str, Any]:
    """Compile ``source`` in a fresh context and run ``rawDataToJsonStr`` on ``raw`` once.

    For the admin "test script" endpoint. Returns ``{"output": <parsed JSON, or the
    string when it is not JSON>, "durationMs": <time of the call>}``; raises ScriptError.
    """
    sandbox = _Sandbox(source, ScriptLimits(time_limit_ms, memory_limit, max_source_size))
    started = time.perf_counter()
    text = sandbox.raw_to_json(raw)
    duration_ms = (time.perf_counter() - started) * 1000.0
    try:
        output: Any = json.loads(text)
    except ValueError:
        output = text
    return {"output": output, "durationMs": duration_ms}


class _Slot:
    """One product's script version: its context (built lazily, dropped after any
    failure) or the error its build gave."""

    __slots__ = ("error", "lock", "running_since", "sandbox", "source", "version")

    def __init__(self, version: ScriptVersion, source: str):
        self.version = version
        self.source = source
        self.lock = threading.Lock()
        self.sandbox: _Sandbox | None = None
        self.error: ScriptError | None = None
        self.running_since: float | None = None


class ScriptEngine:
    """Holds one compiled QuickJS context per product and runs its script.

    Contexts are keyed by product key and script version: a call naming a new version
    builds a new context and drops the old one (calls already running on it finish
    there), so a script replaced while traffic flows switches cleanly. The caller must
    change ``version`` whenever the source changes; the source is read only when a
    context is (re)built.

    After any failed call the product's context is thrown away and rebuilt on the next
    call, so state a failing script left behind cannot leak into later calls; a build
    that fails is remembered for that version (refused at once, no rebuild per message)
    until the version changes or :meth:`discard` is called.

    Thread-safe. Calls for one product are serialized (per-product lock); different
    products run in parallel. A product whose call is stuck in non-interruptible native
    code (see the module doc) is refused with ``kind="busy"`` after ``busy_timeout_s``.
    At most ``max_contexts`` products keep a context (least recently used dropped).
    """

    def __init__(
        self,
        *,
        time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        max_source_size: int = DEFAULT_MAX_SOURCE_SIZE,
        max_contexts: int = DEFAULT_MAX_CONTEXTS,
        busy_timeout_s: float | None = None,
    ):
        self.limits = ScriptLimits(time_limit_ms, memory_limit, max_source_size)
        if max_contexts < 1:
            raise ValueError("max_contexts must be at least 1")
        self.max_contexts = max_contexts
        self.busy_timeout_s = (
            busy_timeout_s
            if busy_timeout_s is not None
            else max(2.0, 20 * self.limits.time_limit_ms / 1000.0)
        )
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    # -- calls ---------------------------------------------------------------------------

    def raw_to_json(
        self,
        product_key: str,
        version: ScriptVersion,
        source: str,
        raw: bytes | bytearray | memoryview,
    ) -> str:
        """``rawDataToJsonStr(rawData)`` of the product's script; returns its JSON string
        (not parsed here). Raises :class:`ScriptError`."""
        result = self._run(product_key, version, source, _OP_RAW_TO_JSON, raw)
        assert isinstance(result, str)
        return result

    def json_to_raw(
        self, product_key: str, version: ScriptVersion, source: str, json_str: str
    ) -> bytes | None:
        """``jsonStrToRawData(jsonStr)`` as bytes, or None when the script does not
        define it. Raises :class:`ScriptError`."""
        _check_text(json_str, "JSON for jsonStrToRawData")
        result = self._run(product_key, version, source, _OP_JSON_TO_RAW, json_str)
        assert result is None or isinstance(result, bytes)
        return result

    def compile(self, source: str) -> None:
        """:func:`compile_script` with this engine's limits."""
        _Sandbox(source, self.limits)

    def debug_run(self, source: str, raw: bytes) -> dict[str, Any]:
        """:func:`debug_run` with this engine's limits (fresh context, nothing cached)."""
        limits = self.limits
        return debug_run(
            source,
            raw,
            max_source_size=limits.max_source_size,
            time_limit_ms=limits.time_limit_ms,
            memory_limit=limits.memory_limit,
        )

    # -- cache ---------------------------------------------------------------------------

    def discard(self, product_key: str) -> None:
        """Forget the product's context (product deleted or its script removed)."""
        with self._lock:
            self._slots.pop(product_key, None)

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()

    def __len__(self) -> int:
        return len(self._slots)

    # -- internals -----------------------------------------------------------------------

    def _slot(self, product_key: str, version: ScriptVersion, source: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(product_key)
            if slot is not None and slot.version == version:
                self._slots.move_to_end(product_key)
                return slot
            slot = _Slot(version, source)
            self._slots[product_key] = slot
            self._slots.move_to_end(product_key)
            while len(self._slots) > self.max_contexts:
                self._slots.popitem(last=False)
            return slot

    def _busy(self, product_key: str) -> ScriptError:
        return ScriptError(
            f"the script of product {product_key} is still busy with an earlier call "
            f"(over {self.busy_timeout_s:g} s in code that cannot be interrupted)",
            kind="busy",
        )

    def _run(
        self, product_key: str, version: ScriptVersion, source: str, op: int, arg: Any
    ) -> str | bytes | None:
        slot = self._slot(product_key, version, source)
        since = slot.running_since
        if since is not None and time.monotonic() - since > self.busy_timeout_s:
            raise self._busy(product_key)
        if not slot.lock.acquire(timeout=self.busy_timeout_s):
            raise self._busy(product_key)
        try:
            slot.running_since = time.monotonic()
            if slot.error is not None:
                raise slot.error.copy()
            sandbox = slot.sandbox
            if sandbox is None:
                try:
                    sandbox = _Sandbox(slot.source, self.limits)
                except ScriptError as exc:
                    slot.error = exc
                    raise
                slot.sandbox = sandbox
            try:
                if op == _OP_RAW_TO_JSON:
                    return sandbox.raw_to_json(arg)
                return sandbox.json_to_raw(arg)
            except ScriptError:
                slot.sandbox = None  # rebuilt on the next call: no state survives a failure
                raise
        finally:
            slot.running_since = None
            slot.lock.release()
