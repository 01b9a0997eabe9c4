"""What the stream servers (MQTT, noti) share."""

from __future__ import annotations

import asyncio


def bound_port(server: asyncio.Server) -> int:
    """The port a listening server bound (the one the system picked for port 0)."""
    return int(server.sockets[0].getsockname()[1])
