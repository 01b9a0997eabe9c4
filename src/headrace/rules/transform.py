"""A rule's ``transform(record)`` in the parsing-script sandbox (``scripts/``).

The rule's source is wrapped into the parsing-script convention, so it runs with exactly
the sandbox, limits and process isolation of parsing scripts: the wrapper's
``rawDataToJsonStr`` gets a batch of records (ASCII JSON), calls ``transform`` on each
inside ``try``, and returns one result per record (``{"v": value}`` or ``{"e":
message}``). A batch that fails as a whole (time or memory limit, a crash) is run again
one record at a time, so that only the offending record is dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from ..scripts.engine import ScriptEngine
from ..scripts.sandbox import ScriptError
from ..stream import Record

_WRAPPER = r"""
;if (typeof transform !== "function") throw new TypeError("the rule's script does not define a function transform(record)");
function rawDataToJsonStr(__b) {
  var __n = __b.length, __parts = [], __s = "";
  for (var __i = 0; __i < __n; __i++) {
    __parts.push(__b[__i] & 0x7f);
    if (__parts.length >= 8192) { __s += String.fromCharCode.apply(null, __parts); __parts = []; }
  }
  __s += String.fromCharCode.apply(null, __parts);
  var __recs = JSON.parse(__s), __out = new Array(__recs.length);
  for (var __j = 0; __j < __recs.length; __j++) {
    try {
      var __v = transform(__recs[__j]);
      __out[__j] = { v: __v === undefined ? null : __v };
    } catch (__e) {
      var __m;
      try { __m = String(__e); } catch (__e2) { __m = "(an exception that cannot be converted to a string)"; }
      __out[__j] = { e: __m };
    }
  }
  return JSON.stringify(__out);
}
"""


class TransformFailed(Exception):
    pass


Outcome = tuple[list[Any] | None, str | None]
"""Per record: (values to send, None) or (None, error message)."""


class Transformer:
    """Runs rules' transforms (one context per rule and version)."""

    def __init__(self, engine: ScriptEngine) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="headrace-transform")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def source(user: str) -> str:
        return user + "\n" + _WRAPPER

    def discard(self, rule_id: str) -> None:
        self.engine.discard("rule:" + rule_id)

    async def run(
        self, rule_id: str, version: int, source: str, records: list[Record]
    ) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        call: Callable[[list[Record]], list[Outcome]] = lambda recs: self._call(  # noqa: E731
            rule_id, version, source, recs
        )
        try:
            return await loop.run_in_executor(self._pool, call, records)
        except ScriptError as e:
            if len(records) == 1:
                return [(None, f"transform failed ({e.kind}): {e}")]
        out: list[Outcome] = []
        for r in records:  # find the record that broke the batch
            try:
                out.extend(await loop.run_in_executor(self._pool, call, [r]))
            except ScriptError as e:
                out.append((None, f"transform failed ({e.kind}): {e}"))
        return out

    def _call(
        self, rule_id: str, version: int, source: str, records: list[Record]
    ) -> list[Outcome]:
        payload = json.dumps(
            [msgspec.to_builtins(r) for r in records], ensure_ascii=True, separators=(",", ":")
        ).encode("ascii")
        text = self.engine.raw_to_json("rule:" + rule_id, version, self.source(source), payload)
        results = json.loads(text)
        out: list[Outcome] = []
        for res in results:
            if "e" in res:
                out.append((None, f"transform threw: {res['e']}"))
                continue
            v = res.get("v")
            if v is None:
                out.append(([], None))
            elif isinstance(v, list):
                out.append(([x for x in v if x is not None], None))
            else:
                out.append(([v], None))
        if len(out) != len(records):
            raise ScriptError("transform wrapper returned a wrong number of results", kind="result")
        return out
