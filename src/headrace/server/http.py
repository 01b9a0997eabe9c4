"""The HTTP edge: uvicorn's httptools protocol with what it lacks against a hostile client.

uvicorn closes a kept-alive connection that sends nothing, but has no deadline for a
request's headers (bytes trickled one at a time hold a connection forever), none for a
body that stops arriving, and no cap on connections. ``HTTPProtocol`` adds:

- a header timeout: a connection has ``http.header_timeout`` seconds to send a request's
  complete headers, from connecting and from the end of the previous response;
- a body idle timeout: ``http.body_timeout`` seconds without a byte of a request body
  close the connection (not while reading is paused because the app has not taken what
  came, nor while the app works on a whole request);
- caps (``guard.Admission``): ``http.max_connections`` open and ``http.max_pending`` not
  yet past the headers of a first request; a new connection beyond either closes the
  oldest of those, or is closed at once when every open connection is past its first
  request. Established clients and a new admin call thus get through a flood of idle
  sockets, which holds at most ``http.max_pending`` descriptors for ``http.header_timeout``.

Closes are counted and logged at most once a second per kind (``guard.Tally``). The hot
path stays cheap: one timer per connection, re-armed only when it fires (at most once per
the shorter timeout), and per request a few attribute writes in the parser callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings
from .guard import Admission, Tally

log = logging.getLogger("headrace.http")

# what the connection waits for: a request's headers, its body, or (the request whole) the app
_HEAD, _BODY, _APP = 0, 1, 2


class HTTPEdge:
    """What the HTTP connections of one hub share: limits, caps, counters."""

    def __init__(
        self,
        *,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
        max_pending: int,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        # how often a connection's timer looks at it at the most
        self.tick = max(0.05, min(header_timeout, body_timeout))
        self.admission: Admission[HTTPProtocol] = Admission(
            "HTTP",
            log,
            max_open=max_connections,
            max_pending=max_pending,
            close=lambda p: p.transport.close(),
            pending_means="without a request",
        )
        self.header_timeouts = Tally(
            log, "HTTP header timeout: connections closed", timeout_s=header_timeout
        )
        self.body_timeouts = Tally(
            log, "HTTP body timeout: connections closed", timeout_s=body_timeout
        )

    @classmethod
    def from_settings(cls, s: Settings) -> HTTPEdge:
        return cls(
            header_timeout=s["http.header_timeout"],
            body_timeout=s["http.body_timeout"],
            max_connections=s["http.max_connections"],
            max_pending=s["http.max_pending"],
        )

    def protocol(self) -> type[HTTPProtocol]:
        """The protocol class for ``uvicorn.Config(http=...)``, bound to this edge."""

        class BoundHTTPProtocol(HTTPProtocol):
            edge = self

        return BoundHTTPProtocol


class HTTPProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the edge's timeouts and caps (see the module)."""

    edge: ClassVar[HTTPEdge]

    # per connection (class defaults: no __init__ of our own)
    _admitted = False
    _established = False  # past the headers of a first request
    _phase = _HEAD
    _since = 0.0  # when the phase began (_BODY: the last body bytes)
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.edge.admission.opened(self):
            transport.close()  # over the cap: closed at once
            return
        self._admitted = True
        super().connection_made(transport)
        loop = self.loop
        self._since = loop.time()
        self._timer = loop.call_later(self.edge.tick, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self.edge.admission.closed(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    # -- parser callbacks: the phase of the request ------------------------------------------

    def on_headers_complete(self) -> None:
        if not self._established:
            self._established = True
            self.edge.admission.authenticated(self)
        self._phase = _BODY
        self._since = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._phase == _BODY:
            self._since = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._phase == _BODY:  # not a body still arriving after its response
            self._phase = _APP
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline:  # else the next request, already read, starts now
            self._phase = _HEAD
        self._since = self.loop.time()
        super().on_response_complete()

    # -- the timer ---------------------------------------------------------------------------

    def _check(self) -> None:
        self._timer = None
        transport = self.transport
        if transport.is_closing():
            return
        edge = self.edge
        now = self.loop.time()
        phase = self._phase
        tally: Tally | None = None
        if phase == _HEAD:
            left = self._since + edge.header_timeout - now
            tally = edge.header_timeouts
        elif phase == _BODY and not self.flow.read_paused:
            left = self._since + edge.body_timeout - now
            tally = edge.body_timeouts
        else:  # the app has the request, or has not taken the body read so far: our turn
            self._since = now
            left = edge.tick
        if left > 0 or tally is None:
            self._timer = self.loop.call_later(min(left, edge.tick), self._check)
            return
        tally.add()
        transport.close()
