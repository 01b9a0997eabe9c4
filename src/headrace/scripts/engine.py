"""The parsing-script engine the hub uses: per-product QuickJS contexts, run in sandbox
worker processes by default.

Threading: the ingest pipeline calls :class:`ScriptEngine` from worker threads
(``asyncio.to_thread`` or an executor), never on the event loop: a call blocks for the
script's run (up to the time limit) and, with process isolation, a pipe round trip.
"""

from __future__ import annotations

import atexit
import json
import threading
from typing import Any, Literal

from .sandbox import (
    DEFAULT_MAX_CONTEXTS,
    DEFAULT_MAX_SOURCE_SIZE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_LIMIT_MS,
    OP_JSON_TO_RAW,
    OP_RAW_TO_JSON,
    LocalEngine,
    ScriptError,
    ScriptLimits,
    ScriptVersion,
    check_script,
    default_busy_timeout,
)
from .worker import WorkerPool

Isolation = Literal["process", "none"]


class ScriptEngine:
    """Holds one compiled QuickJS context per product and runs its script.

    Contexts are keyed by product key and script version: a call naming a new version
    builds a new context and drops the old one, so a script replaced while traffic flows
    switches cleanly. The caller must change ``version`` whenever the source changes; the
    source is read only when a context is (re)built.

    After any failed call the product's context is thrown away and rebuilt on the next
    call, so state a failing script left behind cannot leak into later calls. A build
    that fails is remembered for that version (refused at once, not rebuilt per message)
    until the version changes or :meth:`discard` is called.

    ``isolation="process"`` (default): contexts live in ``workers`` sandbox processes
    (worker.py), checks (``compile``, ``debug_run``) run in one more; a script that
    crashes QuickJS or hangs in native code costs a worker restart (``kind="crash"`` /
    ``"time"``), and after 3 such strikes that script version (for checks: that source)
    is refused. ``isolation="none"``: contexts live in this process -- faster, but such a
    script can crash or stall the hub; for tests and trusted scripts only.

    Thread-safe. Calls for one product are serialized; different products run in
    parallel (across workers, or across threads with ``isolation="none"``).
    """

    def __init__(
        self,
        *,
        time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        max_source_size: int = DEFAULT_MAX_SOURCE_SIZE,
        max_contexts: int = DEFAULT_MAX_CONTEXTS,
        busy_timeout_s: float | None = None,
        isolation: Isolation = "process",
        workers: int = 2,
    ):
        self.limits = ScriptLimits(time_limit_ms, memory_limit, max_source_size)
        self.busy_timeout_s = (
            busy_timeout_s if busy_timeout_s is not None else default_busy_timeout(self.limits)
        )
        self.isolation: Isolation = isolation
        self._local: LocalEngine | None = None
        self._pool: WorkerPool | None = None
        if isolation == "process":
            self._pool = WorkerPool(
                self.limits,
                workers=workers,
                max_contexts=max_contexts,
                busy_timeout_s=self.busy_timeout_s,
            )
        elif isolation == "none":
            self._local = LocalEngine(
                self.limits, max_contexts=max_contexts, busy_timeout_s=self.busy_timeout_s
            )
        else:
            raise ValueError(f"isolation must be 'process' or 'none', not {isolation!r}")

    # -- calls -------------------------------------------------------------------------------

    def raw_to_json(
        self,
        product_key: str,
        version: ScriptVersion,
        source: str,
        raw: bytes | bytearray | memoryview,
    ) -> str:
        """``rawDataToJsonStr(rawData)`` of the product's script, ``rawData`` being the
        bytes as signed values; returns the JSON string as the script made it (not parsed
        here). Raises :class:`ScriptError`."""
        if self._pool is not None:
            result = self._pool.call(OP_RAW_TO_JSON, product_key, version, source, bytes(raw))
        else:
            assert self._local is not None
            result = self._local.call(OP_RAW_TO_JSON, product_key, version, source, raw)
        assert isinstance(result, str)
        return result

    def json_to_raw(
        self, product_key: str, version: ScriptVersion, source: str, json_str: str
    ) -> bytes | None:
        """``jsonStrToRawData(jsonStr)`` as bytes (elements taken ``& 0xff``), or None when
        the script does not define it. Raises :class:`ScriptError`."""
        if self._pool is not None:
            result = self._pool.call(OP_JSON_TO_RAW, product_key, version, source, json_str)
        else:
            assert self._local is not None
            result = self._local.call(OP_JSON_TO_RAW, product_key, version, source, json_str)
        assert result is None or isinstance(result, bytes)
        return result

    def call_many(
        self, op: int, product_key: str, version: ScriptVersion, source: str, args: list[Any]
    ) -> list[Any]:
        """``op`` (OP_RAW_TO_JSON on bytes, OP_JSON_TO_RAW on a str) for each of
        ``args``, in order, in one sandbox round trip: the result of each, or its
        :class:`ScriptError` (returned in its place, not raised). One failing call
        fails alone: the context is rebuilt for the next, as after any failed call."""
        if self._pool is not None:
            return self._pool.call_many(op, product_key, version, source, args)
        assert self._local is not None
        out: list[Any] = []
        for arg in args:
            try:
                out.append(self._local.call(op, product_key, version, source, arg))
            except ScriptError as e:
                out.append(e)
        return out

    def compile(self, source: str, *, owner: str = "") -> None:
        """:func:`compile_script` with this engine's limits and isolation. ``owner`` (a
        product key) is who a check that crashes or hangs its worker strikes against."""
        self._check(source, None, owner)

    def debug_run(self, source: str, raw: bytes, *, owner: str = "") -> dict[str, Any]:
        """:func:`debug_run` with this engine's limits and isolation (a fresh context;
        nothing cached); ``owner`` as for :meth:`compile`."""
        return _debug_result(*self._check(source, raw, owner))

    def _check(self, source: str, raw: bytes | None, owner: str) -> tuple[str | None, float]:
        if self._pool is not None:
            result: tuple[str | None, float] = self._pool.check(self.limits, source, raw, owner)
            return result
        return check_script(source, raw, self.limits)

    # -- lifecycle ---------------------------------------------------------------------------

    def discard(self, product_key: str) -> None:
        """Forget the product's context and any refusal (product deleted, script removed)."""
        if self._pool is not None:
            self._pool.discard(product_key)
        else:
            assert self._local is not None
            self._local.discard(product_key)

    def close(self) -> None:
        """Stop the worker processes (started again on the next call)."""
        if self._pool is not None:
            self._pool.close()
        elif self._local is not None:
            self._local.clear()

    def __enter__(self) -> ScriptEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _debug_result(text: str | None, duration_ms: float) -> dict[str, Any]:
    try:
        output: Any = json.loads(text or "")
    except ValueError:
        output = text
    return {"output": output, "durationMs": duration_ms}


# -- one-off checks --------------------------------------------------------------------------

_shared: ScriptEngine | None = None
_shared_lock = threading.Lock()


def _shared_engine() -> ScriptEngine:
    """One sandbox worker for one-off checks, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ScriptEngine(workers=1)
            atexit.register(_shared.close)
        return _shared


def compile_script(
    source: str,
    *,
    max_source_size: int = DEFAULT_MAX_SOURCE_SIZE,
    time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> None:
    """Check a script in a fresh context: it parses, its top level runs within the
    limits, and it defines a function ``rawDataToJsonStr`` (``jsonStrToRawData``, if
    defined, must be a function too).

    Raises :class:`ScriptError`; a syntax error names line and column (in the message and
    as ``error.line`` / ``error.column``). Runs in a sandbox worker process.
    """
    limits = ScriptLimits(time_limit_ms, memory_limit, max_source_size)
    pool = _shared_engine()._pool
    assert pool is not None
    pool.check(limits, source, None)


def debug_run(
    source: str,
    raw: bytes,
    *,
    max_source_size: int = DEFAULT_MAX_SOURCE_SIZE,
    time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> dict[str, Any]:
    """For the admin "test script" endpoint: compile ``source`` in a fresh context and
    run ``rawDataToJsonStr`` on ``raw`` once.

    Returns ``{"output": <the parsed JSON, or the string when it is not JSON>,
    "durationMs": <time of the call inside the sandbox>}``; raises :class:`ScriptError`.
    Runs in a sandbox worker process.
    """
    limits = ScriptLimits(time_limit_ms, memory_limit, max_source_size)
    pool = _shared_engine()._pool
    assert pool is not None
    text, duration_ms = pool.check(limits, source, bytes(raw))
    return _debug_result(text, duration_ms)
