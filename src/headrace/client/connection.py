"""``IntegrationClient``: an asyncio client for headrace's MQTT integration (docs/protocols.md A).

Built on the project's sans-io ``proto.mqtt.ClientConnection``: this module owns the
socket, the timers and the request bookkeeping; the state machine owns the protocol.

- Login: channel credentials (``username``/``password``) or the EnOS signed login
  (``product_key``/``product_secret``, docs/protocols.md A.2), over plain TCP or TLS.
- Requests are published at QoS 1 with a unique ``id``; the client subscribes to the
  product's reply topics first and matches replies by id. Replies that carry no usable id
  (raw data replies, refusals made before the request was decoded) are matched by the
  server's ordering rule: a request's reply is published to its connection immediately
  before the request's PUBACK.
- Up to ``max_inflight`` requests are outstanding; further calls wait for a slot.
- When the connection drops, the client reconnects with exponential backoff (with jitter),
  subscribes again and resends every request that has no reply yet. Resending is safe:
  headrace stores samples idempotently on (device, point, time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec

from ..proto.enos import (
    METHOD_ATTRIBUTE,
    METHOD_EVENT,
    METHOD_MEASUREPOINT,
    METHOD_OF,
    REPLY_OK,
    SIGN_METHODS,
    SIGNED_USERNAME_PREFIX,
    Kind,
    request_topic,
    signature,
    signed_client_id,
)
from ..proto.mqtt import (
    ClientConnection,
    ConnAckReceived,
    DisconnectReceived,
    Event,
    ProtocolViolation,
    PublishAcked,
    PublishReceived,
    SubAckReceived,
)
from .errors import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    HeadraceClientError,
    LoginRefused,
    MissingReply,
    RequestTimeout,
    SubscribeRefused,
    reply_error,
)

log = logging.getLogger("headrace.client")

# the methods, topics and signed login are the protocol's (proto.enos); re-exported here
__all__ = [
    "METHOD_ATTRIBUTE",
    "METHOD_EVENT",
    "METHOD_MEASUREPOINT",
    "SIGN_METHODS",
    "IntegrationClient",
    "parse_broker",
    "post_method",
    "request_topic",
    "signed_login",
]

# kind -> method, of the kinds ``post`` sends (every kind but raw)
_POSTED: dict[str, str] = {kind: method for kind, method in METHOD_OF.items() if method}

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

Reply = dict[str, Any]
# an item as a mapping, or its JSON already encoded
Item = Mapping[str, Any] | msgspec.Raw
RawReply = dict[str, Any] | bytes


def post_method(kind: str) -> str:
    """The method of a ``post`` of ``kind`` (measurepoint, attribute, event)."""
    method = _POSTED.get(kind)
    if method is None:
        raise ValueError(f"kind must be one of {', '.join(_POSTED)}")
    return method


def _check_sign_method(sign_method: str) -> None:
    if sign_method not in SIGN_METHODS:
        raise ValueError(f"sign_method must be one of {', '.join(SIGN_METHODS)}")


def signed_login(
    product_key: str,
    product_secret: str,
    *,
    sign_method: str = "sha256",
    timestamp: str | None = None,
) -> tuple[str, str, str]:
    """``(client_id, username, password)`` of the EnOS signed login (docs/protocols.md A.2)."""
    _check_sign_method(sign_method)
    ts = timestamp if timestamp is not None else _unique_timestamp()
    # the client id's own part (before ``|``) is the product key
    client_id = signed_client_id(product_key, sign_method, ts)
    password = signature(product_key, product_key, ts, product_secret, sign_method)
    return client_id, SIGNED_USERNAME_PREFIX + product_key, password


_last_ts = 0.0


def _unique_timestamp() -> str:
    """Milliseconds with a fraction, as the Python SDK sends them; distinct within this
    process, so that several signed connections get distinct client ids (a client id
    already connected would be taken over)."""
    global _last_ts
    now = max(time.time() * 1000, _last_ts + 0.001)
    _last_ts = now
    return f"{now:.3f}"


def parse_broker(broker: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` from ``mqtt://host:1883`` / ``mqtts://host:8883`` (also
    ``tcp://``, ``ssl://``, ``tls://``; a bare ``host:port`` means plain TCP)."""
    if "://" not in broker:
        broker = "mqtt://" + broker
    parts = urlsplit(broker)
    scheme = parts.scheme.lower()
    if scheme in ("mqtt", "tcp"):
        tls = False
    elif scheme in ("mqtts", "ssl", "tls"):
        tls = True
    else:
        raise ValueError(f"unsupported broker scheme {scheme!r} (use mqtt:// or mqtts://)")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (8883 if tls else 1883)
    return host, port, tls


@dataclass(eq=False, slots=True)
class _Request:
    key: str
    product_key: str
    topic: str
    payload: bytes
    future: asyncio.Future[Any]
    raw: bool = False
    packet_id: int | None = None
    sent: int = 0  # how many times published


@dataclass(eq=False, slots=True)
class _Link:
    """One connection: transport, state machine and its per-connection bookkeeping."""

    conn: ClientConnection
    transport: asyncio.Transport | None = None
    connack: asyncio.Future[ConnAckReceived] | None = None
    lost: asyncio.Future[None] | None = None
    subscribed: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    subacks: dict[int, asyncio.Future[list[int]]] = field(default_factory=dict)
    by_packet: dict[int, _Request] = field(default_factory=dict)
    unmatched: dict[str, bytes] = field(default_factory=dict)  # reply topic -> last payload
    last_rx: float = 0.0
    last_tx: float = 0.0


class _Protocol(asyncio.Protocol):
    def __init__(self, client: IntegrationClient, link: _Link):
        self.client = client
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.transport = transport  # type: ignore[assignment]
        self.link.last_rx = time.monotonic()

    def data_received(self, data: bytes) -> None:
        link = self.link
        link.last_rx = time.monotonic()
        for event in link.conn.receive_data(data):
            self.client._on_event(link, event)
        self.client._flush(link)

    def connection_lost(self, exc: Exception | None) -> None:
        link = self.link
        if link.lost is not None and not link.lost.done():
            link.lost.set_result(None)
        if link.connack is not None and not link.connack.done():
            link.connack.set_exception(ConnectError(f"connection closed before CONNACK: {exc}"))


class IntegrationClient:
    """An asyncio client for one integration channel.

    Give either ``username``/``password`` (the channel's credentials) or
    ``product_key``/``product_secret`` (EnOS signed login for a product with an enabled
    channel). ``broker``: ``mqtt://host:1883`` or ``mqtts://host:8883``; ``ca_file``: the
    CA (or self-signed certificate) to trust for TLS, else the system's trust store.

    ``max_inflight``: requests outstanding at once. ``reconnect``: reconnect and resend
    after a connection loss (else waiting requests fail with ``ConnectionLost``).
    ``request_timeout``: seconds a request may wait for its reply, reconnects included
    (None: no limit). ``products``: product keys to subscribe to at every connect (others
    are subscribed to on first use).

    Use as ``async with IntegrationClient(...) as client:`` or ``await connect()`` /
    ``await close()``.
    """

    def __init__(
        self,
        broker: str = "mqtt://127.0.0.1:1883",
        *,
        username: str | None = None,
        password: str | None = None,
        product_key: str | None = None,
        product_secret: str | None = None,
        sign_method: str = "sha256",
        client_id: str | None = None,
        ca_file: str | None = None,
        tls: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: int = 60,
        max_inflight: int = 16,
        version: int = 4,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        connect_timeout: float = 10.0,
        request_timeout: float | None = None,
        products: Iterable[str] = (),
    ) -> None:
        if (username is None) == (product_key is None):
            raise ValueError("give either username/password or product_key/product_secret")
        if product_key is not None and not product_secret:
            raise ValueError("the signed login needs product_secret")
        if username is not None and password is None:
            raise ValueError("the channel login needs a password")
        _check_sign_method(sign_method)
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.host, self.port, url_tls = parse_broker(broker)
        self.tls = url_tls if tls is None else tls
        if ssl_context is None and (self.tls or ca_file):
            self.tls = True
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self.ssl_context = ssl_context
        self.username = username
        self.password = password
        self.product_key = product_key
        self.product_secret = product_secret
        self.sign_method = sign_method
        self.client_id = client_id or f"headrace-sdk-{uuid.uuid4().hex[:12]}"
        self.keepalive = keepalive
        self.max_inflight = max_inflight
        self.version = version
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._products: list[str] = list(dict.fromkeys(products))
        if product_key is not None and product_key not in self._products:
            self._products.insert(0, product_key)
        # request ids are unique per client: replies go to every connection of the
        # channel subscribed to the topic, so other clients' replies are ignored by id
        self._id_prefix = uuid.uuid4().hex[:8] + "-"
        self._seq = itertools.count(1)
        self._pending: dict[str, _Request] = {}
        self._slots: asyncio.Semaphore | None = None
        self._link: _Link | None = None
        self._ready: asyncio.Event | None = None  # connected, subscribed, resent
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._dead: HeadraceClientError | None = None  # stopped for good: why
        self._first: asyncio.Future[None] | None = None
        # counters
        self.connects = 0
        self.resent = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> IntegrationClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ready is not None and self._ready.is_set() and self._dead is None

    @property
    def pending(self) -> int:
        """Requests sent or waiting to be sent that have no reply yet."""
        return len(self._pending)

    async def connect(self, *, wait: bool = False) -> None:
        """Connect, and keep the connection up in the background from then on.

        ``wait=False``: the first attempt's failure raises (``ConnectError``, or
        ``LoginRefused`` for a refused login). ``wait=True``: keep trying until connected
        (useful when the hub may not be up yet); a refused login still raises.
        """
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._dead is not None:
            raise ConnectionLost(str(self._dead))
        if self._runner is not None:
            assert self._ready is not None
            await self._ready.wait()
            return
        loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.max_inflight)
        self._ready = asyncio.Event()
        self._first = loop.create_future()
        self._runner = loop.create_task(self._run(wait))
        try:
            await self._first
        except BaseException:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
            self._runner = None
            raise

    async def close(self) -> None:
        """Disconnect cleanly; requests still waiting fail with ``ClientClosed``."""
        if self._closed:
            return
        self._closed = True
        link = self._link
        if link is not None and link.transport is not None:
            link.conn.disconnect()
            self._flush(link)
            link.transport.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
        self._stop(ClientClosed("the client was closed"))

    def _stop(self, reason: HeadraceClientError) -> None:
        """Stopped for good: fail what waits, and wake whatever waits for a connection."""
        if self._dead is None:
            self._dead = reason
        self._fail_all(reason)
        if self._ready is not None:
            self._ready.set()

    # -- requests --------------------------------------------------------------------------

    async def post_measurepoints(self, product_key: str, items: Sequence[Item]) -> Reply:
        """Post measurepoint items ``{"deviceKey", "time", "measurepoints": {...}}``.
        Returns the reply on code 200; raises the ``IntegrationReplyError`` of any other."""
        return await self.post(product_key, "measurepoint", items)

    async def post_attributes(self, product_key: str, items: Sequence[Item]) -> Reply:
        """Post attribute items ``{"deviceKey", "attributes": {...}}``."""
        return await self.post(product_key, "attribute", items)

    async def post_events(self, product_key: str, items: Sequence[Item]) -> Reply:
        """Post event items ``{"deviceKey", "time", "events": {eventId: {...}}}``."""
        return await self.post(product_key, "event", items)

    async def post(
        self,
        product_key: str,
        kind: str,
        items: Sequence[Item],
        *,
        version: str = "1.0",
    ) -> Reply:
        """Post ``items`` of ``kind`` (measurepoint, attribute, event). Items are
        mappings, or ``msgspec.Raw`` holding an item's JSON already encoded."""
        method = post_method(kind)
        rid = f"{self._id_prefix}{next(self._seq)}"
        body = {"id": rid, "version": version, "method": method, "params": items}
        payload = _encode(body)
        topic = request_topic(product_key, cast(Kind, kind))
        reply = await self._request(product_key, topic, payload, rid)
        assert isinstance(reply, dict)
        return reply

    async def post_raw(self, product_key: str, data: bytes) -> RawReply:
        """Post raw bytes (decoded by the product's parsing script, docs/protocols.md A.6).

        Returns the decoded JSON reply, or the reply bytes when the product's script
        encodes replies (``jsonStrToRawData``). A JSON reply with a code other than 200
        raises its ``IntegrationReplyError``.
        """
        key = f"raw:{next(self._seq)}"
        topic = request_topic(product_key, "raw")
        reply: RawReply = await self._request(product_key, topic, bytes(data), key, raw=True)
        return reply

    async def send_request(self, product_key: str, kind: str, payload: bytes) -> RawReply:
        """Publish ``payload`` as it is on the request topic of ``kind`` (measurepoint,
        attribute, event, raw) of ``product_key``, for callers that build their own JSON.
        The reply is matched by the server's ordering (the request's id is not needed);
        like ``post_raw``, it returns the decoded reply or raises its error."""
        if kind not in METHOD_OF:
            raise ValueError(f"kind must be one of {', '.join(METHOD_OF)}")
        key = f"req:{next(self._seq)}"
        topic = request_topic(product_key, kind)
        reply: RawReply = await self._request(product_key, topic, bytes(payload), key, raw=True)
        return reply

    async def _request(
        self, product_key: str, topic: str, payload: bytes, key: str, *, raw: bool = False
    ) -> Any:
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._dead is not None:
            raise type(self._dead)(str(self._dead))
        if self._slots is None or self._ready is None:
            raise HeadraceClientError("not connected: call connect() first")
        timeout = self.request_timeout
        try:
            async with asyncio.timeout(timeout), self._slots:
                loop = asyncio.get_running_loop()
                req = _Request(key, product_key, topic, payload, loop.create_future(), raw)
                self._pending[key] = req
                try:
                    if product_key not in self._products:
                        self._products.append(product_key)
                    await self._send_when_ready(req)
                    return await req.future
                finally:
                    self._pending.pop(key, None)
        except TimeoutError:
            raise RequestTimeout(f"no reply within {timeout} s") from None

    async def _send_when_ready(self, req: _Request) -> None:
        assert self._ready is not None
        while not req.future.done():
            await self._ready.wait()
            if self._dead is not None:
                raise type(self._dead)(str(self._dead))
            link = self._link
            if link is None:
                continue
            sub = link.subscribed.get(req.product_key)
            if sub is None:
                sub = self._subscribe(link, req.product_key)
            try:
                await asyncio.shield(sub)
            except SubscribeRefused:
                raise
            except HeadraceClientError:
                continue  # connection lost while subscribing: wait for the next one
            if self._link is link and req.sent == 0 and not req.future.done():
                self._publish(link, req)
            return

    # -- connection loop -------------------------------------------------------------------

    async def _run(self, wait_first: bool) -> None:
        assert self._first is not None and self._ready is not None
        delay = self.backoff_initial
        established = False
        while not self._closed:
            link: _Link | None = None
            try:
                link = await self._open()
                established = True
                delay = self.backoff_initial
                if not self._first.done():
                    self._first.set_result(None)
                await self._serve(link)
                reason: BaseException = ConnectionLost("connection lost")
            except asyncio.CancelledError:
                raise
            except LoginRefused as e:
                if not established:
                    if not self._first.done():
                        self._first.set_exception(e)
                    return
                reason = e
                log.warning("reconnect refused: %s", e)
            except (ConnectError, OSError) as e:
                if not established and not wait_first:
                    if not self._first.done():
                        self._first.set_exception(
                            e
                            if isinstance(e, ConnectError)
                            else ConnectError(f"cannot connect to {self.host}:{self.port}: {e}")
                        )
                    return
                reason = e
            except Exception as e:  # a bug here must not leave requests hanging
                log.exception("connection failed")
                if not self._first.done():
                    self._first.set_exception(e)
                    return
                reason = e
            finally:
                self._ready.clear()
                if link is not None:
                    self._drop(link)
            if self._closed:
                return
            if not self.reconnect and established:
                self._stop(ConnectionLost(f"connection lost: {reason}"))
                return
            log.info("reconnecting in %.2f s after: %s", delay, reason)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_max)

    async def _open(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = _Link(ClientConnection(self.version, max_inflight=self.max_inflight))
        link.connack = loop.create_future()
        link.lost = loop.create_future()
        if self.product_key is not None:
            assert self.product_secret is not None
            client_id, username, password = signed_login(
                self.product_key, self.product_secret, sign_method=self.sign_method
            )
        else:
            client_id = self.client_id
            username, password = self.username or "", self.password or ""
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: _Protocol(self, link),
                    self.host,
                    self.port,
                    ssl=self.ssl_context if self.tls else None,
                )
                link.conn.connect(
                    client_id,
                    username=username,
                    password=password,
                    keepalive=self.keepalive,
                    clean=True,
                )
                self._link = link
                self._flush(link)
                connack = await link.connack
        except TimeoutError:
            self._drop(link)
            raise ConnectError(f"no CONNACK from {self.host}:{self.port} in time") from None
        except BaseException:
            self._drop(link)
            raise
        if connack.reason_code:
            self._drop(link)
            raise LoginRefused(
                f"login refused by {self.host}:{self.port} (code {connack.reason_code})",
                connack.reason_code,
            )
        self.connects += 1
        return link

    async def _serve(self, link: _Link) -> None:
        """Subscribe, resend what has no reply, then wait for the connection to end."""
        assert self._ready is not None and link.lost is not None
        keepalive = asyncio.get_running_loop().create_task(self._keepalive(link))
        try:
            products = list(self._products)
            subs = [self._subscribe(link, pk) for pk in products]
            for pk, fut in zip(products, subs, strict=True):
                await asyncio.wait([fut, link.lost], return_when=asyncio.FIRST_COMPLETED)
                if link.lost.done():
                    return
                if fut.exception() is not None:
                    for req in list(self._pending.values()):
                        if req.product_key == pk and not req.future.done():
                            req.future.set_exception(fut.exception())  # type: ignore[arg-type]
            for req in list(self._pending.values()):
                if not req.future.done() and req.sent:
                    self.resent += 1
                    self._publish(link, req)
            # requests that arrived while offline are sent by their own callers
            if not link.lost.done():
                self._ready.set()
            await link.lost
        finally:
            keepalive.cancel()

    async def _keepalive(self, link: _Link) -> None:
        interval = self.keepalive
        if not interval:
            return
        while True:
            await asyncio.sleep(max(0.5, interval / 4))
            now = time.monotonic()
            if now - link.last_rx > interval * 1.5:
                log.warning("no data from the broker for %.0f s; reconnecting", now - link.last_rx)
                if link.transport is not None:
                    link.transport.abort()
                return
            if now - link.last_tx > interval * 0.5:
                with contextlib.suppress(RuntimeError):
                    link.conn.ping()
                    self._flush(link)

    def _subscribe(self, link: _Link, product_key: str) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        link.subscribed[product_key] = fut
        try:
            pid = link.conn.subscribe([(f"/sys/{product_key}/integration/#", 0)])
        except RuntimeError as e:
            fut.set_exception(ConnectionLost(str(e)))
            return fut
        suback: asyncio.Future[list[int]] = loop.create_future()
        link.subacks[pid] = suback

        def done(f: asyncio.Future[list[int]]) -> None:
            if fut.done():
                return
            if f.cancelled() or f.exception() is not None:
                fut.set_exception(ConnectionLost("connection lost while subscribing"))
            elif any(code >= 0x80 for code in f.result()):
                link.subscribed.pop(product_key, None)
                fut.set_exception(
                    SubscribeRefused(
                        f"subscription to product {product_key!r} refused: "
                        "the channel does not cover it"
                    )
                )
            else:
                fut.set_result(None)

        suback.add_done_callback(done)
        fut.add_done_callback(_consume)
        self._flush(link)
        return fut

    def _publish(self, link: _Link, req: _Request) -> None:
        try:
            pid = link.conn.publish(req.topic, req.payload, 1)
        except ValueError as e:  # larger than the broker accepts (5.0)
            req.future.set_exception(HeadraceClientError(str(e)))
            return
        except RuntimeError:
            return  # connection closing; resent on the next one
        req.packet_id = pid
        req.sent += 1
        link.by_packet[pid] = req
        self._flush(link)

    def _flush(self, link: _Link) -> None:
        data = link.conn.data_to_send()
        if data and link.transport is not None and not link.transport.is_closing():
            link.transport.write(data)
            link.last_tx = time.monotonic()

    def _drop(self, link: _Link) -> None:
        if link.transport is not None and not link.transport.is_closing():
            link.transport.abort()
        for fut in link.subacks.values():
            if not fut.done():
                fut.cancel()
        for sub in link.subscribed.values():
            if not sub.done():
                sub.set_exception(ConnectionLost("connection lost"))
        for req in link.by_packet.values():
            req.packet_id = None
        link.by_packet.clear()
        if self._link is link:
            self._link = None

    def _fail_all(self, exc: BaseException) -> None:
        for req in list(self._pending.values()):
            if not req.future.done():
                req.future.set_exception(exc)

    # -- incoming --------------------------------------------------------------------------

    def _on_event(self, link: _Link, event: Event) -> None:
        if isinstance(event, PublishReceived):
            self._on_reply(link, event.topic, event.payload)
        elif isinstance(event, PublishAcked):
            self._on_ack(link, event.packet_id, event.reason_code)
        elif isinstance(event, SubAckReceived):
            fut = link.subacks.pop(event.packet_id, None)
            if fut is not None and not fut.done():
                fut.set_result(list(event.reason_codes))
        elif isinstance(event, ConnAckReceived):
            if link.connack is not None and not link.connack.done():
                link.connack.set_result(event)
        elif isinstance(event, DisconnectReceived | ProtocolViolation):
            log.info("broker closed the session: %s", event)
            self._flush(link)
            if link.transport is not None:
                link.transport.close()

    def _on_reply(self, link: _Link, topic: str, payload: bytes) -> None:
        if not topic.endswith("_reply"):
            return
        try:
            reply = _decode(payload)
        except msgspec.DecodeError:
            reply = None
        if isinstance(reply, dict):
            rid = reply.get("id")
            if isinstance(rid, str):
                req = self._pending.get(rid)
                if req is not None and not req.raw:
                    self._resolve(req, reply)
                    return
        link.unmatched[topic] = payload

    def _on_ack(self, link: _Link, packet_id: int, reason_code: int) -> None:
        req = link.by_packet.pop(packet_id, None)
        if req is None:
            return
        payload = link.unmatched.pop(req.topic + "_reply", None)
        if req.future.done():
            return
        if reason_code >= 0x80:
            req.future.set_exception(
                HeadraceClientError(f"request refused with reason {reason_code:#x}")
            )
        elif payload is None:
            req.future.set_exception(MissingReply(f"no reply to the request on {req.topic}"))
        elif req.raw:
            try:
                reply = _decode(payload)
            except msgspec.DecodeError:
                req.future.set_result(payload)
                return
            if isinstance(reply, dict) and "code" in reply:
                self._resolve(req, reply)
            else:
                req.future.set_result(payload)
        else:
            try:
                reply = _decode(payload)
            except msgspec.DecodeError:
                reply = None
            if isinstance(reply, dict):
                self._resolve(req, reply)
            else:
                req.future.set_exception(MissingReply(f"undecodable reply on {req.topic}_reply"))

    @staticmethod
    def _resolve(req: _Request, reply: dict[str, Any]) -> None:
        if req.future.done():
            return
        if reply.get("code") == REPLY_OK:
            req.future.set_result(reply)
        else:
            req.future.set_exception(reply_error(reply))


def _consume(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (nobody may be waiting on it)."""
    if not fut.cancelled():
        fut.exception()
