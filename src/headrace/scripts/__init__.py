"""Sandboxed JavaScript parsing scripts (EnOS ``rawDataToJsonStr`` / ``jsonStrToRawData``,
docs/protocols.md A.6): QuickJS contexts per product, in sandbox worker processes."""

from .engine import Isolation, ScriptEngine, compile_script, debug_run
from .sandbox import (
    DEFAULT_MAX_CONTEXTS,
    DEFAULT_MAX_SOURCE_SIZE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_LIMIT_MS,
    ScriptError,
    ScriptErrorKind,
    ScriptLimits,
    ScriptVersion,
)

__all__ = [
    "DEFAULT_MAX_CONTEXTS",
    "DEFAULT_MAX_SOURCE_SIZE",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TIME_LIMIT_MS",
    "Isolation",
    "ScriptEngine",
    "ScriptError",
    "ScriptErrorKind",
    "ScriptLimits",
    "ScriptVersion",
    "compile_script",
    "debug_run",
]
