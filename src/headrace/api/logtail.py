"""Live tail of a channel's message log as server-sent events:
``GET /api/v1/orgs/{orgId}/channels/{channelId}/logs/stream?kinds=&device=&code=``.

Each record is one event: ``id:`` the record id, ``data:`` the record as ``GET .../logs``
returns it (``{"id", "time", "kind", ...}``). A reader that reconnects with
``Last-Event-ID`` (or ``?lastEventId=``) first gets the records after that id from the
store (at most ``REPLAY`` of them, else a ``gap`` event first), then the live ones. Live
records come from ``state.logfeed``; a reader that does not keep up loses what its queue
(``log.tail_buffer``) cannot hold and gets ``event: gap`` with ``{"reason": "slow",
"dropped": n}``. An idle stream gets a comment line every ``log.tail_heartbeat`` s.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Router, get
from litestar.params import Parameter
from litestar.response import Stream

from ..errors import ValidationFailed
from ..model.validate import INT64_MAX, INT64_MIN
from .channels import LOG_KINDS
from .common import admin_guard, log_matcher
from .services import services

Req = Request[Any, Any, Any]
REPLAY = 1000  # records replayed after a Last-Event-ID at the most
_dec = msgspec.json.Decoder()


def record(rid: int, ts: int, kind: str, doc: bytes) -> bytes:
    """A record exactly as ``GET .../logs`` items are: id, time, kind, then its fields."""
    return msgspec.json.encode({"id": rid, "time": ts, "kind": kind, **_dec.decode(doc)})


def _event(rid: int, data: bytes) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (rid, data)


def _gap(reason: str, dropped: int | None) -> bytes:
    data = msgspec.json.encode({"reason": reason, "dropped": dropped})
    return b"event: gap\ndata: %s\n\n" % data


@get("/orgs/{org_id:str}/channels/{channel_id:str}/logs/stream", media_type="text/event-stream")
async def channel_log_stream(
    request: Req,
    org_id: str,
    channel_id: str,
    kinds: str = "",
    device: str | None = None,
    code: int | None = None,
    lastEventId: int | None = Parameter(default=None, ge=INT64_MIN, le=INT64_MAX),
) -> Stream:
    """Live message-log records as server-sent events (``text/event-stream``)."""
    svc = services(request)
    svc.registry.channel(org_id, channel_id)
    wanted = {k for k in kinds.split(",") if k}
    for k in wanted:
        if k not in LOG_KINDS:
            raise ValidationFailed(f"kinds must be among {', '.join(LOG_KINDS)}", field="kinds")
    last_event_id = lastEventId
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        try:
            last_event_id = int(header)
        except ValueError:
            raise ValidationFailed(
                "Last-Event-ID must be a record id", field="Last-Event-ID"
            ) from None
    match = log_matcher(wanted, device or None, code)
    # subscribed before the replay reads the store: nothing committed in between is lost
    tail = svc.logfeed.subscribe(channel_id, lambda row: match(row[3], row[4]))
    heartbeat = float(svc.settings["log.tail_heartbeat"])

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            replayed: set[int] = set()
            if last_event_id is not None:
                now = int(time.time() * 1000) + 1
                rows = await svc.store.query_log(
                    channel_id, sorted(wanted), INT64_MIN, now, REPLAY, None
                )
                newer = [r for r in rows if r[0] > last_event_id]
                if len(newer) == REPLAY and newer[-1][0] > last_event_id + 1:
                    yield _gap("replay", None)  # more were missed than are replayed
                for r in reversed(newer):
                    replayed.add(r[0])
                    if match(r[2], r[3]):
                        yield _event(r[0], record(*r))
            while not tail.closed:
                live, dropped = await tail.take(heartbeat)
                if dropped:
                    yield _gap("slow", dropped)
                out = [
                    _event(r[0], record(r[0], r[2], r[3], r[4]))
                    for r in live
                    if r[0] not in replayed
                ]
                if out:
                    yield b"".join(out)
                elif not dropped and not tail.closed:
                    yield b": heartbeat\n\n"
        finally:
            svc.logfeed.unsubscribe(tail)

    return Stream(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


logtail_router = Router(
    path="/api/v1", guards=[admin_guard], tags=["channels"], route_handlers=[channel_log_stream]
)
