"""What the stream servers (MQTT, noti) share: listeners and the transport half of a
connection.

A ``StreamConnection`` sits between an asyncio transport and a sans-io protocol object
(``proto.mqtt.ServerConnection``, ``proto.noti.ServerSession``): socket reads go to
``received`` (the subclass feeds its state machine and acts on the events), and
``flush`` writes what the state machine wants sent. The base owns the rest: the peer's
address, reading paused while the transport's write buffer is over its high-water mark
(or while the subclass says so), one timer, closing (a peer that does not read its last
bytes is aborted after ``ABORT_AFTER`` seconds instead of holding the socket), and the
server's caps on open and not-logged-in connections (``guard.Admission``: a connection
counts as pending until the subclass calls ``authenticated``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .guard import Admission

log = logging.getLogger("headrace.server")

# seconds a closed connection may take to flush its last bytes to a peer that does not read
ABORT_AFTER = 5.0


def bound_port(server: asyncio.Server) -> int:
    """The port a listening server bound (the one the system picked for port 0)."""
    return int(server.sockets[0].getsockname()[1])


class StreamServer:
    """Listeners of one protocol, their open connections and the caps on them: beyond
    ``max_open`` connections (0: no cap) or ``max_pending`` not logged in yet, a new one
    closes the oldest not logged in, or is closed at once if every one is logged in."""

    def __init__(
        self, label: str, logger: logging.Logger, *, max_open: int = 0, max_pending: int = 0
    ) -> None:
        self.connections: set[Any] = set()
        self.admission: Admission[StreamConnection] = Admission(
            label,
            logger,
            max_open=max_open,
            max_pending=max_pending,
            close=lambda c: c.close("pending cap"),
        )
        # the ports bound by listener name ("mqtt", "mqtt_tls", "noti"), once listening
        self.ports: dict[str, int] = {}
        self._listeners: list[asyncio.Server] = []

    async def listen(
        self,
        name: str,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        **kwargs: Any,
    ) -> None:
        """Listen on ``host:port`` (0: a port the system picks) and record the port."""
        srv = await asyncio.get_running_loop().create_server(factory, host, port, **kwargs)
        self._listeners.append(srv)
        self.ports[name] = bound_port(srv)

    def close_listeners(self) -> None:
        """Accept no more connections (the open ones stay)."""
        for srv in self._listeners:
            srv.close()

    async def wait_closed(self) -> None:
        for srv in self._listeners:
            await srv.wait_closed()
        self._listeners = []


class StreamConnection(asyncio.Protocol):
    """The transport half of one connection; subclasses implement ``received`` and
    ``data_to_send``, and may override ``opened``, ``wants_reading``, ``writable``,
    ``closing`` and ``finished``."""

    # the transport's write buffer limits (None: asyncio's defaults)
    write_limits: tuple[int, int] | None = None

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.address = ""
        self.closed = False
        self.last_rx = 0.0
        self._reading = True
        self._write_blocked = False
        self._timer: asyncio.TimerHandle | None = None
        self._reason = "connection lost"
        self._lost = False

    # -- what subclasses implement -------------------------------------------------------

    def received(self, data: bytes) -> None:
        """Feed the state machine; act on its events; ``flush``."""
        raise NotImplementedError

    def data_to_send(self) -> bytes:
        raise NotImplementedError

    def opened(self) -> None:
        """The connection is up (arm a first timer)."""

    def wants_reading(self) -> bool:
        """Whether the subclass can take more input now (besides the write buffer)."""
        return True

    def writable(self) -> None:
        """The write buffer drained below its low-water mark."""

    def closing(self) -> None:
        """About to close: queue last words (they are flushed next)."""

    def finished(self, reason: str) -> None:
        """Closed (by us or the peer): release what the connection held."""

    # -- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        if not self.server.admission.opened(self):
            self.closed = True  # never opened: nothing to finish
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        if peer:
            self.ip = str(peer[0])
            self.address = f"{peer[0]}:{peer[1]}"
        if self.write_limits is not None:
            high, low = self.write_limits
            try:
                transport.set_write_buffer_limits(high, low)  # type: ignore[attr-defined]
            except (AttributeError, NotImplementedError):
                pass
        self.server.connections.add(self)
        self.last_rx = asyncio.get_running_loop().time()
        self.opened()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_rx = asyncio.get_running_loop().time()
        try:
            self.received(data)
        except Exception:
            log.exception("connection failed", extra={"address": self.address})
            self.close("internal error")

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._finish(self._reason if exc is None else f"connection lost: {exc}")

    def pause_writing(self) -> None:
        self._write_blocked = True
        self.update_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self.update_reading()
        if not self.closed:
            self.writable()

    # -- flow control, writing, timer --------------------------------------------------------

    @property
    def write_blocked(self) -> bool:
        return self._write_blocked

    def update_reading(self) -> None:
        """Read while the write buffer is below its mark and the subclass wants input."""
        if self.transport is None or self.closed:
            return
        want = not self._write_blocked and self.wants_reading()
        if want != self._reading:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def flush(self) -> None:
        data = self.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        """(Re)arm the connection's one timer."""
        self.cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def authenticated(self) -> None:
        """Logged in: no longer counted against the server's cap on pending connections."""
        self.server.admission.authenticated(self)

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self._reason = reason
        self.closing()
        self.flush()
        transport = self.transport
        if transport is not None:
            transport.close()  # sends what is buffered first (a refusal, a DISCONNECT)
            if transport.get_write_buffer_size():
                # a peer that does not read would hold the socket open forever
                asyncio.get_running_loop().call_later(ABORT_AFTER, self._abort)
        self._finish(reason)

    def _abort(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abort()

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.connections.discard(self)
        self.server.admission.closed(self)
        self.cancel_timer()
        self.finished(reason)
