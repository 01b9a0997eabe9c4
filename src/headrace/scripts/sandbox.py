"""QuickJS inside one process: the error type, limits, one product context, and the
per-product context cache that every sandbox worker process runs (engine.py puts these
behind process isolation; see there for why).

A product's script defines ``rawDataToJsonStr(rawData)`` (``rawData``: array of signed
byte values -128..127; returns a JSON string) and optionally ``jsonStrToRawData(jsonStr)``
(returns an array of byte values, signed or unsigned), docs/protocols.md A.6. Each context is
its own QuickJS runtime, so products share nothing; no host function is ever exposed, so
a script can do no I/O; every call runs under a CPU time limit (QuickJS's interrupt
handler) and the runtime under a memory limit.

quickjs-python (1.19) releases the GIL while JavaScript runs and re-anchors QuickJS's
stack check on every call, so a context may be used from any thread, one at a time.

Limits of the engine it bundles: the time limit is checked by the bytecode interpreter
only, so a regular expression that backtracks catastrophically or a built-in looping over
a huge array-like (``Array.prototype.indexOf.call({length: 1e15})``) runs on in C; and
some out-of-memory paths in QuickJS crash the process (seen with scripts that hit the
memory limit). Here such overruns are reported once they return (``~`` tag, thread CPU
time); the worker process around this module is what bounds and survives them.
"""

from __future__ import annotations

import codecs
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import quickjs

from ..errors import ClientError
from ..proto.enos import REPLY_DECODE_FAILED
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
    "crash",  # the script crashed its sandbox process (which was restarted)
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


def default_busy_timeout(limits: ScriptLimits) -> float:
    """Seconds a call may run before it counts as stuck in non-interruptible code."""
    return max(2.0, 20 * limits.time_limit_ms / 1000.0)


def _size_text(n: int) -> str:
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} bytes"


# -- the QuickJS boundary ---------------------------------------------------------------

_OP_LOAD = 0
OP_RAW_TO_JSON = 1
OP_JSON_TO_RAW = 2
FUNCTION_NAMES = {
    _OP_LOAD: "script top level",
    OP_RAW_TO_JSON: "rawDataToJsonStr",
    OP_JSON_TO_RAW: "jsonStrToRawData",
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
    """One QuickJS runtime + context with one script loaded. Not thread-safe.

    Failures are built as values and raised only after the frame holding the context is
    gone, and a failed sandbox is closed at once: an exception's traceback must never
    keep a runtime (up to ``memory_limit`` bytes) alive until Python's cycle collector
    happens to run.
    """

    __slots__ = ("_dispatch", "has_json_to_raw", "limits")

    def __init__(self, source: str, limits: ScriptLimits):
        _check_text(source, "script", limits.max_source_size)
        self.limits = limits
        self.has_json_to_raw = False
        self._dispatch: Any = None
        error = self._load(source)
        if isinstance(error, ScriptError):
            raise error

    def _load(self, source: str) -> ScriptError | None:
        ctx = _new_context(self.limits)
        text = None
        try:
            self._dispatch = ctx.eval(PRELUDE)
        except quickjs.JSException as exc:  # the memory limit is too small for the prelude
            text = str(exc)
        del ctx  # from here on only _dispatch holds the context
        if text is not None:
            return _engine_error(text, self.limits, "script")
        status = self._call(_OP_LOAD, source)
        if isinstance(status, ScriptError):
            self.close()
            return _syntax_error(source, status, self.limits) if status.kind == "syntax" else status
        self.has_json_to_raw = status == "1"
        return None

    def close(self) -> None:
        """Free the runtime now (the context is referenced from nowhere else)."""
        self._dispatch = None

    def _call(self, op: int, arg: str) -> str | ScriptError:
        limits = self.limits
        function = FUNCTION_NAMES[op]
        text = None
        started = time.thread_time()
        try:
            result = self._dispatch(op, arg, limits.time_limit_ms)
        except quickjs.JSException as exc:  # an engine error escaped: interrupt, OOM, stack
            text = str(exc)
        except UnicodeDecodeError:  # a lone surrogate in the returned string
            return ScriptError(
                f"{function} returned a string that is not valid Unicode", kind="result"
            )
        if text is not None:
            return _engine_error(text, limits, function)
        if not isinstance(result, str) or not result:  # the prelude always returns a tag
            return ScriptError(f"{function}: unexpected result from the sandbox", kind="result")
        tag = result[0]
        if tag == "+":
            return result[1:]
        if tag == "~":
            # Over the limit in wall time: C code the interrupt handler cannot stop
            # (regex backtracking, a built-in over a huge array-like) -- or this thread
            # was merely descheduled; its CPU time tells which.
            if (time.thread_time() - started) * 1000.0 > limits.time_limit_ms:
                return ScriptError(
                    f"{function}: {limits.time_text} (in a built-in function that cannot be interrupted)",
                    kind="time",
                )
            return result[2:]
        kind, payload = result[1:2], result[2:]
        if kind in ("x", "s"):
            error = _engine_error(payload, limits, function)
            if kind == "s" and error.kind == "exception":
                error.kind = "syntax"
            return error
        message = payload.partition("\n")[0]
        return ScriptError(message, kind="definition" if kind == "d" else "result")

    def _invoke(self, op: int, arg: str) -> str:
        result = self._call(op, arg)
        if isinstance(result, ScriptError):
            self.close()  # no state survives a failure; the engine builds a new context
            raise result
        return result

    def raw_to_json(self, raw: bytes | bytearray | memoryview) -> str:
        return self._invoke(OP_RAW_TO_JSON, codecs.charmap_decode(raw, "strict", _WIDE)[0])

    def json_to_raw(self, json_str: str) -> bytes | None:
        if not self.has_json_to_raw:
            return None
        return bytes.fromhex(self._invoke(OP_JSON_TO_RAW, json_str))


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


def check_script(source: str, raw: bytes | None, limits: ScriptLimits) -> tuple[str | None, float]:
    """Build ``source`` in a fresh context (and run ``rawDataToJsonStr`` on ``raw`` when
    given) in this process. Returns (the call's output or None, the call's duration in
    ms). Raises :class:`ScriptError`."""
    sandbox = _Sandbox(source, limits)
    if raw is None:
        sandbox.close()
        return None, 0.0
    started = time.perf_counter()
    text = sandbox.raw_to_json(raw)
    duration_ms = (time.perf_counter() - started) * 1000.0
    sandbox.close()
    return text, duration_ms


class NeedSource(Exception):
    """The engine holds no context for that product and version: send the source."""


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


class LocalEngine:
    """Per-product QuickJS contexts in this process (see :class:`ScriptEngine` for the
    semantics). Used inside each sandbox worker process, and directly with
    ``isolation="none"``.

    Thread-safe: calls for one product are serialized by a per-product lock, different
    products run in parallel (the GIL is released while JavaScript runs). A product whose
    call is stuck in non-interruptible native code is refused with ``kind="busy"`` after
    ``busy_timeout_s`` instead of piling up threads behind it.
    """

    def __init__(
        self,
        limits: ScriptLimits,
        *,
        max_contexts: int = DEFAULT_MAX_CONTEXTS,
        busy_timeout_s: float | None = 2.0,
    ):
        if max_contexts < 1:
            raise ValueError("max_contexts must be at least 1")
        self.limits = limits
        self.max_contexts = max_contexts
        self.busy_timeout_s = busy_timeout_s
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def call(
        self, op: int, product_key: str, version: ScriptVersion, source: str | None, arg: Any
    ) -> str | bytes | None:
        """Run ``op`` (OP_RAW_TO_JSON with bytes, OP_JSON_TO_RAW with a str). With
        ``source`` None, raises NeedSource unless that version is held already."""
        slot = self._slot(product_key, version, source)
        busy_timeout = self.busy_timeout_s
        if busy_timeout is None:
            slot.lock.acquire()
        else:
            since = slot.running_since
            if since is not None and time.monotonic() - since > busy_timeout:
                raise self._busy(product_key)
            if not slot.lock.acquire(timeout=busy_timeout):
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
                    slot.error = exc.copy()  # without the traceback
                    raise
                slot.sandbox = sandbox
            try:
                if op == OP_RAW_TO_JSON:
                    return sandbox.raw_to_json(arg)
                if op == OP_JSON_TO_RAW:
                    _check_text(arg, "JSON for jsonStrToRawData")
                    return sandbox.json_to_raw(arg)
                raise ValueError(f"unknown operation {op}")
            except ScriptError:
                slot.sandbox = None  # closed already; rebuilt on the next call
                raise
        finally:
            slot.running_since = None
            slot.lock.release()

    def discard(self, product_key: str) -> None:
        with self._lock:
            self._slots.pop(product_key, None)

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()

    def __len__(self) -> int:
        return len(self._slots)

    def _slot(self, product_key: str, version: ScriptVersion, source: str | None) -> _Slot:
        with self._lock:
            slot = self._slots.get(product_key)
            if slot is not None and slot.version == version:
                self._slots.move_to_end(product_key)
                return slot
            if source is None:
                raise NeedSource(product_key)
            slot = _Slot(version, source)
            self._slots[product_key] = slot
            self._slots.move_to_end(product_key)
            while len(self._slots) > self.max_contexts:
                self._slots.popitem(last=False)
            return slot

    def _busy(self, product_key: str) -> ScriptError:
        return ScriptError(
            f"the script of product {product_key} is still busy with an earlier call "
            f"(over {self.busy_timeout_s} s in code that cannot be interrupted)",
            kind="busy",
        )


def __getattr__(name: str) -> Any:
    # The public engine lives in engine.py (it puts this module behind process
    # isolation); still importable from here for callers written against this module.
    if name in ("ScriptEngine", "compile_script", "debug_run"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
