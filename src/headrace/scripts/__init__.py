"""Sandboxed JavaScript parsing scripts (EnOS ``rawDataToJsonStr`` / ``jsonStrToRawData``)."""

from .sandbox import (
    DEFAULT_MAX_CONTEXTS,
    DEFAULT_MAX_SOURCE_SIZE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_LIMIT_MS,
    ScriptEngine,
    ScriptError,
    ScriptErrorKind,
    ScriptLimits,
    ScriptVersion,
    compile_script,
    debug_run,
)

__all__ = [
    "DEFAULT_MAX_CONTEXTS",
    "DEFAULT_MAX_SOURCE_SIZE",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TIME_LIMIT_MS",
    "ScriptEngine",
    "ScriptError",
    "ScriptErrorKind",
    "ScriptLimits",
    "ScriptVersion",
    "compile_script",
    "debug_run",
]
