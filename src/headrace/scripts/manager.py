"""Per-product parsing scripts: versions kept in the store, run through the sandbox.

Each product has one store document (kind ``script``) holding its script versions (the
last ``KEEP_VERSIONS``) and which one is current. Saving compiles the source first, so
a script with a syntax error or without ``rawDataToJsonStr`` never becomes current.
Scripts run in the sandbox's worker processes (a QuickJS crash or a runaway in native
code costs a worker restart, never the hub), called from a small thread pool so the
event loop never waits; calls of one product are serialized by the engine. Checks
(compiling on save, debug runs) have a thread pool and a worker of their own: a hostile
script under test holds up other checks at most, never the decoding of data.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import msgspec

from ..errors import NotFound, ValidationFailed
from ..proto.enos import METHODS
from ..state.registry import Registry
from ..store.base import Store
from . import ScriptEngine, ScriptError
from .sandbox import OP_JSON_TO_RAW, OP_RAW_TO_JSON

KEEP_VERSIONS = 20
# calls of one product and function sent to its sandbox worker in one round trip, at most
MAX_SCRIPT_BATCH = 64

_Call = tuple[int, str, Any, "asyncio.Future[Any]"]  # (version, source, argument, outcome)


class ScriptVersionInfo(msgspec.Struct):
    version: int
    source: str
    createdAt: int


class ProductScripts(msgspec.Struct):
    productKey: str
    current: int | None = None
    versions: list[ScriptVersionInfo] = []

    def get(self, version: int) -> ScriptVersionInfo:
        for v in self.versions:
            if v.version == version:
                return v
        raise NotFound(f"script version {version} not found for product {self.productKey!r}")


class ScriptManager:
    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        time_limit_ms: int,
        memory_limit: int,
        workers: int = 2,
        isolation: str = "process",
    ):
        self.registry = registry
        self.store = store
        self.engine = ScriptEngine(
            time_limit_ms=time_limit_ms,
            memory_limit=memory_limit,
            workers=workers,
            isolation="none" if isolation == "none" else "process",
        )
        self.scripts: dict[str, ProductScripts] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="headrace-script")
        self._check_pool = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="headrace-script-check"
        )
        # calls waiting for their batch, by (function, product); a key is in _draining
        # while a task sends its batches
        self._waiting: dict[tuple[int, str], list[_Call]] = {}
        self._draining: set[tuple[int, str]] = set()
        self._drains: set[asyncio.Task[None]] = set()
        self.batches = 0  # round trips to the workers of the data path
        # (product, script version) without jsonStrToRawData: replies need no round trip
        self._no_encoder: set[tuple[str, int]] = set()

    def load(self) -> None:
        dec = msgspec.json.Decoder(ProductScripts)
        for doc in self.store.load_objects("script"):
            ps = dec.decode(doc)
            self.scripts[ps.productKey] = ps

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._check_pool.shutdown(wait=False, cancel_futures=True)
        self.engine.close()

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _check(self, source: str, raw: bytes | None, product_key: str) -> Any:
        """Compile ``source`` (raw None) or debug-run it on ``raw``, in the checks' pool;
        a run that crashes or hangs its worker strikes against the product's checks."""
        engine = self.engine
        call = (
            partial(engine.compile, source, owner=product_key)
            if raw is None
            else partial(engine.debug_run, source, raw, owner=product_key)
        )
        return await asyncio.get_running_loop().run_in_executor(self._check_pool, call)

    # -- management ------------------------------------------------------------------

    def get(self, org_id: str, product_key: str) -> ProductScripts:
        self.registry.product(org_id, product_key)
        ps = self.scripts.get(product_key)
        if ps is None or not ps.versions:
            raise NotFound(f"product {product_key!r} has no parsing script")
        return ps

    def current(self, product_key: str) -> ScriptVersionInfo | None:
        ps = self.scripts.get(product_key)
        if ps is None or ps.current is None:
            return None
        return ps.get(ps.current)

    async def _save(self, ps: ProductScripts, created: bool) -> None:
        doc = msgspec.json.encode(ps)
        if created:
            await self.store.insert_objects([("script", ps.productKey, ps.productKey, doc)])
        else:
            await self.store.update_object("script", ps.productKey, doc)
        self.scripts[ps.productKey] = ps
        self.engine.discard(ps.productKey)

    async def put(self, org_id: str, product_key: str, source: str) -> ProductScripts:
        """Compile and save a new version, which becomes current."""
        self.registry.product(org_id, product_key)
        if not source.strip():
            raise ValidationFailed("the script is empty", field="body")
        await self._check(source, None, product_key)
        old = self.scripts.get(product_key)
        ps = old or ProductScripts(productKey=product_key)
        number = max((v.version for v in ps.versions), default=0) + 1
        versions = [*ps.versions, ScriptVersionInfo(number, source, int(time.time() * 1000))][
            -KEEP_VERSIONS:
        ]
        await self._save(ProductScripts(product_key, number, versions), created=old is None)
        return self.scripts[product_key]

    async def rollback(self, org_id: str, product_key: str, version: int) -> ProductScripts:
        ps = self.get(org_id, product_key)
        ps.get(version)
        await self._save(ProductScripts(product_key, version, ps.versions), created=False)
        return self.scripts[product_key]

    async def delete(self, org_id: str, product_key: str) -> None:
        """The product has no current script any more; its versions stay for rollback."""
        ps = self.get(org_id, product_key)
        await self._save(ProductScripts(product_key, None, ps.versions), created=False)

    async def debug(
        self, org_id: str, product_key: str, raw: bytes, source: str | None
    ) -> dict[str, Any]:
        """Run the current (or the given) script on sample bytes: output or error, and time."""
        if source is None:
            cur = self.current(self.get(org_id, product_key).productKey)
            if cur is None:
                raise NotFound(f"product {product_key!r} has no current parsing script")
            source = cur.source
        else:
            self.registry.product(org_id, product_key)
        started = time.perf_counter()
        try:
            result: dict[str, Any] = await self._check(source, raw, product_key)
        except ScriptError as e:
            out: dict[str, Any] = {
                "ok": False,
                "error": e.message,
                "kind": e.kind,
                "durationMs": round((time.perf_counter() - started) * 1000, 3),
            }
            if e.line is not None:
                out["line"], out["column"] = e.line, e.column
            return out
        problem = request_problem(result["output"])
        return {"ok": problem is None, **result, **({"error": problem} if problem else {})}

    # -- the up_raw path (MQTT server hooks) -----------------------------------------

    async def decode(self, product_key: str, raw: bytes) -> dict[str, Any]:
        """raw bytes -> the integration request the product's script makes of them."""
        product = self.registry.products.get(product_key)
        if product is None:
            raise ValueError(f"unknown product {product_key!r}")
        if product.dataFormat != "custom":
            raise ValueError(
                f"product {product_key!r} has data format json; raw data needs a custom product"
            )
        cur = self.current(product_key)
        if cur is None:
            raise ValueError(f"product {product_key!r} has no parsing script")
        text = await self._call(OP_RAW_TO_JSON, product_key, cur, bytes(raw))
        assert isinstance(text, str)
        try:
            request = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise ValueError(f"rawDataToJsonStr returned invalid JSON: {text[:100]!r}") from None
        problem = request_problem(request)
        if problem:
            raise ValueError(f"rawDataToJsonStr output is not an integration request: {problem}")
        return dict(request)

    async def encode(self, product_key: str, reply: bytes) -> bytes | None:
        cur = self.current(product_key)
        if cur is None:
            return None
        key = (product_key, cur.version)
        if key in self._no_encoder:
            return None
        out = await self._call(OP_JSON_TO_RAW, product_key, cur, reply.decode())
        assert out is None or isinstance(out, bytes)
        if out is None:  # the version defines no jsonStrToRawData (known when it loads)
            self._no_encoder.add(key)
        return out

    # -- batching: the messages of a product that arrive together, one worker round trip --

    async def _call(self, op: int, product_key: str, cur: ScriptVersionInfo, arg: Any) -> Any:
        """Run the product's script function ``op`` on ``arg``; raises its ScriptError.

        Calls made while an earlier batch of the same product and function runs (or in
        the same turn of the event loop) wait and go together in the next batch: one
        thread hop and one pipe round trip for up to ``MAX_SCRIPT_BATCH`` messages
        instead of one each. Every call keeps its own result or error.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        key = (op, product_key)
        self._waiting.setdefault(key, []).append((cur.version, cur.source, arg, fut))
        if key not in self._draining:
            self._draining.add(key)
            task = loop.create_task(self._drain(key))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    async def _drain(self, key: tuple[int, str]) -> None:
        op, product_key = key
        try:
            await asyncio.sleep(0)  # the rest of this loop turn joins the first batch
            while True:
                waiting = self._waiting.get(key)
                if not waiting:
                    return
                version, source = waiting[0][0], waiting[0][1]
                n = 0  # one script version per batch (a script saved meanwhile: the next)
                while n < len(waiting) and n < MAX_SCRIPT_BATCH and waiting[n][0] == version:
                    n += 1
                batch = waiting[:n]
                del waiting[:n]
                self.batches += 1
                try:
                    outcomes = await self._run(
                        self.engine.call_many,
                        op,
                        product_key,
                        version,
                        source,
                        [c[2] for c in batch],
                    )
                except Exception as e:  # the pool itself (shut down): every call fails
                    outcomes = [e] * len(batch)
                for call, outcome in zip(batch, outcomes, strict=True):
                    fut = call[3]
                    if not fut.done():
                        fut.set_result(outcome)
        finally:
            self._draining.discard(key)
            for call in self._waiting.pop(key, []):  # only when stopped early (shutdown)
                if not call[3].done():
                    call[3].set_exception(RuntimeError("parsing script calls stopped"))


def request_problem(request: Any) -> str | None:
    """Why a script's output is not an integration request (A.4), or None."""
    if not isinstance(request, dict):
        return "not a JSON object"
    if request.get("method") not in METHODS:
        return f"method must be one of {', '.join(METHODS)}, got {request.get('method')!r}"
    if not isinstance(request.get("params"), list):
        return "params must be an array"
    return None
