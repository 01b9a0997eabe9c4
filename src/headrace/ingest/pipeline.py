"""The ingest pipeline: every edge (MQTT, HTTP) hands it one integration request.

rate limit -> product permission -> raw decoding (the product's parsing script) ->
decode -> method/topic check -> resolve devices -> validate (model) -> one atomic store
write -> hooks (push events, online state) -> reply (for raw data: encoded by the
script). Every failing item is listed in the reply; the request is stored whole or not
at all. The reply is built only after the store has committed and the hooks ran.
An edge only turns bytes into a call of ``handle`` and the ``Result`` into bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, attrgetter, itemgetter
from typing import Any, Protocol

import msgspec

from ..errors import Refused, Unstorable
from ..model.fast import Checked
from ..model.validate import INT64_MAX, ValueInvalid
from ..proto.enos import (
    METHOD_ATTRIBUTE,
    METHOD_MEASUREPOINT,
    METHOD_OF,
    METHODS,
    REPLY_BAD_JSON,
    REPLY_DECODE_FAILED,
    REPLY_DEVICE_NOT_FOUND,
    REPLY_EMPTY,
    REPLY_INTERNAL,
    REPLY_METHOD_MISMATCH,
    REPLY_MODEL_INVALID,
    REPLY_NO_PERMISSION,
    REPLY_OK,
    REPLY_RATE_LIMITED,
    REPLY_TOO_LARGE,
    REPLY_UNKNOWN_METHOD,
    Kind,
)
from ..state.registry import DeviceEntry, Registry
from ..store.base import Store, WriteBatch
from .logpayload import payload_fields
from .messages import Envelope, Item, decode_envelope, decode_items
from .messages import encode as json_encode
from .ratelimit import RateLimiter

log = logging.getLogger("headrace.ingest")


@dataclass(slots=True)
class Origin:
    """Who sent a request: the channel (for permissions, rate and the message log)."""

    org_id: str
    channel_id: str  # also the message log's id and the rate limiter's key
    products: Collection[str]  # product keys this sender may integrate for
    client_id: str = ""
    address: str = ""  # host:port of the connection, for the message log
    ip: str = ""  # for online state (device_online's ip)
    realtime: bool = False  # the edge's default for isRealtimeIntegration
    rate: float = 0.0  # requests/s of this sender (0: the ingest.rate_limit setting)


@dataclass(slots=True)
class Result:
    """The outcome of one request, with what a reply needs."""

    id: Any
    code: int
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    items: int = 0
    points: int = 0
    batch: WriteBatch | None = None
    devices: list[DeviceEntry] = field(default_factory=list)
    raw: bytes | None = None  # the raw payload a parsing script decoded
    wire: bytes | None = None  # the reply as the parsing script encoded it

    def reply(self) -> dict[str, Any]:
        data: dict[str, Any] = {"errors": self.errors} if self.errors else {}
        return {"id": self.id, "code": self.code, "message": self.message, "data": data}

    def reply_bytes(self) -> bytes:
        """What goes back on the wire: the script's encoding for raw data, else JSON
        (a success's bytes put together around its id: the one reply of most requests)."""
        if self.wire is not None:
            return self.wire
        if self.code == REPLY_OK and not self.errors and self.message == "success":
            return _OK_HEAD + json_encode(self.id) + _OK_TAIL
        return json_encode(self.reply())


# json_encode(Result(id, REPLY_OK, "success").reply()) is _OK_HEAD + the id's JSON + _OK_TAIL
_OK_HEAD = b'{"id":'
_OK_TAIL = b',"code":%d,"message":"success","data":{}}' % REPLY_OK


class RawCodec(Protocol):
    """Products' parsing scripts (``scripts.manager.ScriptManager``)."""

    async def decode(self, product_key: str, payload: bytes) -> dict[str, Any]:
        """Raw bytes -> an integration request; raises with the script's message."""
        ...

    async def encode(self, product_key: str, reply: bytes) -> bytes | None:
        """A reply's JSON -> bytes for the device (None: send the JSON itself)."""
        ...


StoredHook = Callable[[Result, Origin], Awaitable[None] | None]
WriteHook = Callable[[Result, Origin], None]

# a rate-limited sender's refusals are written to its message log at most this often
_RATE_LOG_INTERVAL = 1.0


class Pipeline:
    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        codec: RawCodec,
        limiter: RateLimiter,
        max_message_size: int,
    ):
        self.registry = registry
        self.store = store
        self.codec = codec
        self.limiter = limiter
        self.max_message_size = max_message_size
        # called in order after a request has been committed, before it is answered
        # (push events, online state); connected in app.py
        self.on_stored: list[StoredHook] = []
        # called in order just before a request's batch is written (the outbound stream
        # adds its records to the batch); connected in app.py
        self.before_write: list[WriteHook] = []
        self.requests = 0
        self.points = 0
        self._rate_logged: dict[str, float] = {}
        # requests ready to be written, merged into one store write per loop iteration
        self._pending: list[tuple[WriteBatch, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._group_tasks: set[asyncio.Task[None]] = set()
        self.merged_writes = 0  # store writes that carried more than one request

    async def handle(
        self,
        payload: bytes,
        *,
        kind: Kind,
        product_key: str,
        origin: Origin,
        topic: str = "",
        admitted: bool = False,
    ) -> Result:
        """Process one request of ``kind`` (the topic's or the HTTP action's) for
        ``product_key`` (the topic's; "" when the items name their products).

        ``admitted``: the edge called ``admit`` already (before reading a large body).
        ``handle_many`` of this one request: the steps and hooks live there.
        """
        requests = [(payload, kind, product_key, topic)]
        return (await self.handle_many(requests, origin, admitted=admitted))[0]

    async def handle_many(
        self,
        requests: list[tuple[bytes, Kind, str, str]],
        origin: Origin,
        *,
        admitted: bool = False,
    ) -> list[Result]:
        """Process each of ``requests`` (payload, kind, product key, topic) of one sender,
        in order (one HTTP request; what one socket read of an MQTT connection brought).

        Each request goes through the steps of the module's docstring and is stored whole
        or not at all; the batches of all of them go into the same merged store write, with
        the refusals' log records in arrival order, then the hooks run in order, and the
        replies are built. A transient store failure propagates (nothing of the group is
        answered, the client resends). Raw data is decoded here one message after the
        other: the MQTT edge gives each raw message its own call, so that the script
        manager batches the concurrent ones into one worker round trip.
        ``admitted``: the edge called ``admit`` for these already.
        """
        results: list[Result] = []
        decoded: list[bool] = []  # raw data its script decoded: the script encodes the reply
        pending: list[tuple[int, asyncio.Future[None]]] = []
        # a refusal's log records go into the same merged write, in arrival order, so the
        # message log reads as the requests came (not every refusal after the group)
        logged: list[asyncio.Future[None]] = []
        source = 1 if origin.realtime else 0
        for payload, kind, product_key, topic in requests:
            started = time.perf_counter()
            now = int(time.time() * 1000)
            request: dict[str, Any] | None = None
            try:
                if product_key and product_key not in origin.products:
                    raise Refused(REPLY_NO_PERMISSION, f"no permission for product {product_key!r}")
                if not admitted and not self.limiter.allow(origin.channel_id, origin.rate):
                    results.append(await self._rate_limited(origin, topic, payload))
                    decoded.append(False)
                    continue
                if kind == "raw":
                    request = await self._decode_raw(product_key, payload)
                result = self._prepare(payload, METHOD_OF[kind], product_key, origin, now, request)
            except Refused as e:
                undecoded = kind == "raw" and request is None
                rid = "unknown" if undecoded else self._request_id(payload, request)
                result = Result(rid, e.reply_code, e.message)
            if request is not None:
                result.raw = payload
            if result.batch is not None:
                result.batch.log.append(
                    self._payload_record(origin, topic, payload, result, now, started)
                )
                for before in self.before_write:  # the outbound stream's records
                    before(result, origin)
                pending.append((len(results), self._submit(result.batch)))
                source = result.batch.source
            else:
                refusal = self._refusal_records(result, origin, topic, payload, now, started)
                logged.append(self._submit(WriteBatch(source=source, log=refusal)))
            results.append(result)
            decoded.append(request is not None)
        for fut in [f for _, f in pending] + logged:  # resolved together, by one commit
            if not fut.done():
                try:
                    await fut
                except Exception:
                    pass  # read below
        for fut in logged:
            failure = fut.exception()
            if failure is not None:
                raise failure  # the log could not be written: a transient failure
        unstorable: list[int] = []
        for i, fut in pending:
            failure = fut.exception()
            if isinstance(failure, Unstorable):  # would fail again: answer it, or it loops
                log.error(
                    "request not storable: %s", failure.message, extra={"topic": requests[i][3]}
                )
                results[i] = Result(
                    results[i].id, REPLY_INTERNAL, failure.message, items=results[i].items
                )
                unstorable.append(i)
            elif failure is not None:
                raise failure
        for result in results:
            if result.batch is None:
                continue
            self.requests += 1
            self.points += result.points
            for hook in self.on_stored:
                r = hook(result, origin)
                if r is not None:
                    await r
        if unstorable:
            now, started = int(time.time() * 1000), time.perf_counter()
            records: list[tuple[str, int, str, bytes]] = []
            for i in unstorable:
                payload, _, _, topic = requests[i]
                records += self._refusal_records(results[i], origin, topic, payload, now, started)
            await self.store.append_log(records)
        for i, result in enumerate(results):
            if decoded[i]:
                _, _, product_key, topic = requests[i]
                result.wire = await self._encode_raw(product_key, result, origin, topic)
        return results

    # -- writing: requests that become ready together share one store write ----------------

    def _submit(self, batch: WriteBatch) -> asyncio.Future[None]:
        """Queue ``batch`` for the next merged write; the future is its outcome (set once
        it is committed).

        Every request made ready in the same turn of the event loop (the PUBLISHes of one
        socket read, the posts of many connections) is merged into one ``write_batch``:
        one write function, one set of statements in the store's writer thread instead of
        one per request. The store's group commit still groups such writes into one
        transaction. A request stays atomic: merging runs of requests in arrival order is
        what writing them one after the other in one transaction does, and if the merged
        write cannot be stored, each request is written alone so only the bad one fails.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((batch, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        # runs of the same source (a batch has one source), in arrival order
        run: list[tuple[WriteBatch, asyncio.Future[None]]] = []
        for item in pending:
            if run and item[0].source != run[0][0].source:
                self._start_group(run)
                run = []
            run.append(item)
        if run:
            self._start_group(run)

    def _start_group(self, group: list[tuple[WriteBatch, asyncio.Future[None]]]) -> None:
        task = asyncio.get_running_loop().create_task(self._write_group(group))
        self._group_tasks.add(task)
        task.add_done_callback(self._group_tasks.discard)

    async def _write_group(self, group: list[tuple[WriteBatch, asyncio.Future[None]]]) -> None:
        try:
            if len(group) == 1:
                await self.store.write_batch(group[0][0])
            else:
                self.merged_writes += 1
                try:
                    await self.store.write_batch(merge_batches([b for b, _ in group]))
                except Unstorable:  # one of them cannot be stored: each alone, once more
                    outcomes = await asyncio.gather(
                        *(self.store.write_batch(b) for b, _ in group), return_exceptions=True
                    )
                    for (_, fut), outcome in zip(group, outcomes, strict=True):
                        if fut.done():
                            continue
                        if isinstance(outcome, BaseException):
                            fut.set_exception(outcome)
                        else:
                            fut.set_result(None)
                    return
        except BaseException as e:  # transient (disk, database): every request fails
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for _, fut in group:
            if not fut.done():
                fut.set_result(None)

    def check(self, request: dict[str, Any], *, org_id: str, product_key: str) -> Result:
        """What ``handle`` would answer a request a parsing script made for
        ``product_key``, without storing anything (the scripts' debug run)."""
        origin = Origin(org_id=org_id, channel_id="", products=(product_key,))
        now = int(time.time() * 1000)
        if "id" not in request:
            request = {**request, "id": "unknown"}
        try:
            result = self._prepare(b"", None, product_key, origin, now, request)
        except Refused as e:
            result = Result(request.get("id"), e.reply_code, e.message)
        result.batch = None
        return result

    async def _decode_raw(self, product_key: str, payload: bytes) -> dict[str, Any]:
        if len(payload) > self.max_message_size:
            raise Refused(
                REPLY_TOO_LARGE,
                f"message of {len(payload)} bytes exceeds the limit of {self.max_message_size}",
            )
        try:
            request = await self.codec.decode(product_key, payload)
        except Exception as e:  # the script's fault: 1202, logged with its message
            raise Refused(REPLY_DECODE_FAILED, f"raw data could not be decoded: {e}") from None
        return request if "id" in request else {**request, "id": "unknown"}

    async def _encode_raw(
        self, product_key: str, result: Result, origin: Origin, topic: str
    ) -> bytes | None:
        try:
            return await self.codec.encode(product_key, json_encode(result.reply()))
        except Exception as e:
            await self._log_error(
                origin, topic, result.id, REPLY_DECODE_FAILED, f"jsonStrToRawData failed: {e}"
            )
            return None

    async def admit(self, origin: Origin, topic: str, payload: bytes = b"") -> Result | None:
        """The sender's rate: None when the request may go on, else its refusal."""
        if self.limiter.allow(origin.channel_id, origin.rate):
            return None
        return await self._rate_limited(origin, topic, payload)

    async def _rate_limited(self, origin: Origin, topic: str, payload: bytes) -> Result:
        """Refused for its rate; logged at most once a second per sender, so that a flood
        is not a flood of log writes."""
        started = time.perf_counter()
        now = int(time.time() * 1000)
        result = Result(
            self._request_id(payload, None),
            REPLY_RATE_LIMITED,
            "rate limited: over the request rate of this channel or service account",
        )
        last = self._rate_logged.get(origin.channel_id, 0.0)
        if started - last >= _RATE_LOG_INTERVAL:
            self._rate_logged[origin.channel_id] = started
            await self.log_refusal(result, origin, topic, payload, now, started)
        return result

    async def _log_error(
        self, origin: Origin, topic: str, rid: Any, code: int, message: str
    ) -> None:
        error = {"topic": topic, "requestId": _str_id(rid), "code": code, "message": message}
        now = int(time.time() * 1000)
        await self.store.append_log([(origin.channel_id, now, "error", json_encode(error))])

    async def log_refusal(
        self,
        result: Result,
        origin: Origin,
        topic: str,
        payload: bytes,
        now: int | None = None,
        started: float | None = None,
    ) -> None:
        """Write the payload and error records of a refused request to the message log."""
        now = now if now is not None else int(time.time() * 1000)
        started = started if started is not None else time.perf_counter()
        await self.store.append_log(
            self._refusal_records(result, origin, topic, payload, now, started)
        )

    def _refusal_records(
        self, result: Result, origin: Origin, topic: str, payload: bytes, now: int, started: float
    ) -> list[tuple[str, int, str, bytes]]:
        error = {
            "topic": topic,
            "requestId": _str_id(result.id),
            "code": result.code,
            "message": result.message,
            "errors": result.errors[:20],
        }
        return [
            self._payload_record(origin, topic, payload, result, now, started),
            (origin.channel_id, now, "error", json_encode(error)),
        ]

    def _payload_record(
        self, origin: Origin, topic: str, payload: bytes, result: Result, now: int, started: float
    ) -> tuple[str, int, str, bytes]:
        return (
            origin.channel_id,
            now,
            "payload",
            json_encode(
                {
                    "topic": topic,
                    "size": len(payload),
                    "requestId": _str_id(result.id),
                    "items": result.items,
                    "code": result.code,
                    "clientId": origin.client_id,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    **payload_fields(payload),  # the received bytes, capped
                }
            ),
        )

    @staticmethod
    def _request_id(payload: bytes, request: dict[str, Any] | None) -> Any:
        if request is not None:
            return request.get("id")
        try:
            return decode_envelope(payload).id
        except (msgspec.DecodeError, ValueError):
            return None

    def _prepare(
        self,
        payload: bytes,
        method: str | None,
        product_key: str,
        origin: Origin,
        now: int,
        request: dict[str, Any] | None,
    ) -> Result:
        if len(payload) > self.max_message_size:
            raise Refused(
                REPLY_TOO_LARGE,
                f"message of {len(payload)} bytes exceeds the limit of {self.max_message_size}",
            )
        if request is None and not payload.strip():
            raise Refused(REPLY_EMPTY, "payload is empty")
        if request is None and method == METHOD_MEASUREPOINT and product_key:
            fast = self._fast(payload, product_key, origin, now)
            if fast is not None:
                return fast
        try:
            if request is not None:  # already decoded (raw data scripts): params stay as they are
                env = Envelope(
                    method=request.get("method"),
                    id=request.get("id"),
                    version=request.get("version"),
                    isRealtimeIntegration=request.get("isRealtimeIntegration"),
                )
            else:
                env = decode_envelope(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise Refused(REPLY_BAD_JSON, f"payload is not a valid JSON request: {e}") from None
        rid = env.id
        if not isinstance(env.method, str) or env.method not in METHODS:
            return Result(rid, REPLY_UNKNOWN_METHOD, f"unknown method {env.method!r}")
        if method is not None and env.method != method:
            return Result(
                rid,
                REPLY_METHOD_MISMATCH,
                f"method {env.method} does not match the topic ({method})",
            )
        try:
            if request is not None:
                items = decode_items(env.method, request.get("params"))
            else:
                if not env.params:
                    return Result(rid, REPLY_BAD_JSON, "params is missing")
                items = decode_items(env.method, env.params)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return Result(rid, REPLY_BAD_JSON, f"params: {e}")
        if not items:
            return Result(rid, REPLY_EMPTY, "params is empty")
        realtime = origin.realtime
        if isinstance(env.isRealtimeIntegration, bool):
            realtime = env.isRealtimeIntegration
        return self._validate(rid, env.method, items, product_key, origin, now, realtime)

    def _fast(self, payload: bytes, product_key: str, origin: Origin, now: int) -> Result | None:
        """The topic's product's model decodes and checks the whole request in one msgspec
        pass (``model/fast.py``); None when it is not sure (then the general path)."""
        product = self.registry.products.get(product_key)
        if product is None:
            return None
        model = self.registry.models.get((product.orgId, product.modelId))
        fast = model[1].fast_measurepoints if model is not None else None
        if fast is None:
            return None
        decoded = fast(payload)
        if decoded is None:
            return None
        req, checked = decoded
        if req.method != METHOD_MEASUREPOINT or not req.params:
            return None
        realtime = origin.realtime
        if isinstance(req.isRealtimeIntegration, bool):
            realtime = req.isRealtimeIntegration
        return self._validate(
            req.id, METHOD_MEASUREPOINT, req.params, product_key, origin, now, realtime, checked
        )

    def _resolve(
        self,
        item: Item,
        product_key: str,
        origin: Origin,
        index: int,
        errors: list[dict[str, Any]],
        compiled_cache: dict[str, Any],
    ) -> tuple[DeviceEntry | None, Any]:
        """An item's device and its compiled model, or (None, None) with its error added
        to ``errors`` (not found, no permission)."""
        reg = self.registry
        pk = item.productKey or product_key
        by_asset = bool(item.assetId) and not item.deviceKey
        entry = reg.find_device(
            origin.org_id, product_key=pk, device_key=item.deviceKey, asset_id=item.assetId
        )
        if by_asset:
            if entry is None:  # unknown here, whoever else may own it
                what = f"device {item.assetId!r} not found"
                errors.append(_item_error(index, item, REPLY_DEVICE_NOT_FOUND, what))
                return None, None
            pk = entry.device.productKey
        if pk not in origin.products or (pk != product_key and product_key):
            errors.append(
                _item_error(index, item, REPLY_NO_PERMISSION, f"no permission for product {pk!r}")
            )
            return None, None
        if entry is None:
            what = f"device {item.deviceKey or item.assetId!r} not found in product {pk!r}"
            errors.append(_item_error(index, item, REPLY_DEVICE_NOT_FOUND, what))
            return None, None
        compiled = compiled_cache.get(pk)
        if compiled is None:
            product = reg.products[pk]
            compiled = compiled_cache[pk] = reg.models[(product.orgId, product.modelId)][1]
        return entry, compiled

    def _validate_one_device(
        self,
        rid: Any,
        items: list[Any],
        product_key: str,
        origin: Origin,
        now: int,
        realtime: bool,
        checked: list[Checked],
    ) -> Result | None:
        """``_validate`` of a checked measurepoint request whose items all name one device
        and carry points and a time in range (a history import), its records made in C;
        None for any other request (then the item by item loop, which says what is wrong)."""
        keys = list(map(_names_device, items))
        if not keys or keys.count(keys[0]) != len(keys):
            return None
        times = list(map(_time_of, items))
        if times.count(None):
            times = [now if t is None else t for t in times]
        if min(times) < 0 or max(times) > INT64_MAX:
            return None
        counts = list(map(len, map(_first, checked)))
        if min(counts) == 0:
            return None
        entry, _ = self._resolve(items[0], product_key, origin, 0, [], {})
        if entry is None:
            return None
        batch = WriteBatch(source=1 if realtime else 0)
        # (device, time) + (names, values, qualities) per item
        batch.measurepoints = list(map(add, zip(repeat(entry.id), times), checked))
        return Result(
            rid,
            REPLY_OK,
            "success",
            items=len(items),
            points=sum(counts),
            batch=batch,
            devices=[entry],
        )

    def _validate(
        self,
        rid: Any,
        method: str,
        items: list[Item],
        product_key: str,
        origin: Origin,
        now: int,
        realtime: bool,
        checked: list[Checked] | None = None,
    ) -> Result:
        if checked is not None:
            uniform = self._validate_one_device(
                rid, items, product_key, origin, now, realtime, checked
            )
            if uniform is not None:
                return uniform
        errors: list[dict[str, Any]] = []
        batch = WriteBatch(source=1 if realtime else 0)
        records, attributes, events = batch.measurepoints, batch.attributes, batch.events
        devices: list[DeviceEntry] = []
        points = 0
        compiled_cache: dict[str, Any] = {}
        # the last item's device, resolved and permitted: an import's items name one device
        last: tuple[str | None, str | None, str | None] | None = None
        entry: DeviceEntry | None = None
        compiled: Any = None
        for index, item in enumerate(items):
            names_device = (item.productKey, item.deviceKey, item.assetId)
            if names_device == last:
                assert entry is not None
                dev = entry.id
            else:
                last = None
                entry, compiled = self._resolve(
                    item, product_key, origin, index, errors, compiled_cache
                )
                if entry is None:
                    continue
                last = names_device
                dev = entry.id
                if not devices or devices[-1] is not entry:
                    devices.append(entry)
            ts = now
            if method != METHOD_ATTRIBUTE:
                given = item.time  # type: ignore[union-attr]
                if given is not None:
                    if not 0 <= given <= INT64_MAX:  # what the store holds: int64 ms
                        what = f"time {given} is out of range: ms since 1970, 0..{INT64_MAX}"
                        errors.append(_item_error(index, item, REPLY_BAD_JSON, what))
                        continue
                    ts = given
            try:
                if method == METHOD_MEASUREPOINT:
                    if checked is not None:  # checked while decoding: names, values, qualities
                        names, vals, quals = checked[index]
                    else:
                        names, vals, quals = _columns(
                            compiled.check_measurepoints(item.measurepoints)  # type: ignore[union-attr]
                        )
                    if not names:
                        raise ValueInvalid("no measurepoints given", "measurepoints")
                    records.append((dev, ts, names, vals, quals))
                    points += len(names)
                elif method == METHOD_ATTRIBUTE:
                    values = compiled.check_attributes(item.attributes)  # type: ignore[union-attr]
                    if not values:
                        raise ValueInvalid("no attributes given", "attributes")
                    for name, value in values.items():
                        attributes.append((dev, name, value, now))
                    points += len(values)
                else:
                    outputs_of = compiled.check_events(item.events)  # type: ignore[union-attr]
                    if not outputs_of:
                        raise ValueInvalid("no events given", "events")
                    for event_id, outputs in outputs_of.items():
                        events.append((dev, event_id, ts, json_encode(outputs)))
                    points += len(outputs_of)
            except ValueInvalid as e:
                errors.append(_item_error(index, item, REPLY_MODEL_INVALID, str(e)))
        if errors:
            first = errors[0]
            return Result(rid, first["code"], first["message"], errors=errors, items=len(items))
        return Result(
            rid, REPLY_OK, "success", items=len(items), points=points, batch=batch, devices=devices
        )


# the row lists of a batch (whatever the store adds to it: every list field is rows)
_BATCH_LISTS = tuple(f.name for f in dataclasses.fields(WriteBatch) if f.default_factory is list)


def merge_batches(batches: list[WriteBatch]) -> WriteBatch:
    """One batch holding every row of ``batches`` (all of one source), in their order."""
    merged = WriteBatch(source=batches[0].source)
    for name in _BATCH_LISTS:
        rows = getattr(merged, name)
        for b in batches:
            rows.extend(getattr(b, name))
    return merged


_names_device = attrgetter("productKey", "deviceKey", "assetId")
_time_of = attrgetter("time")
_first = itemgetter(0)


def _columns(
    checked: dict[str, tuple[Any, int | None]],
) -> tuple[tuple[str, ...], tuple[Any, ...], tuple[int | None, ...] | None]:
    """A ``check_measurepoints`` result as a record's names, values and qualities."""
    names = tuple(checked)
    values = tuple(v for v, _ in checked.values())
    quals = tuple(q for _, q in checked.values())
    return names, values, None if quals.count(None) == len(quals) else quals


def _item_error(index: int, item: Item, code: int, message: str) -> dict[str, Any]:
    return {
        "index": index,
        "deviceKey": item.deviceKey or item.assetId or "",
        "code": code,
        "message": message,
    }


def _str_id(rid: Any) -> str:
    return rid if isinstance(rid, str) else ("" if rid is None else json_encode(rid).decode())
