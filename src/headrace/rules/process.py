"""The hub's end of the rules' delivery process (``worker.py``).

The process is started when a rule first runs and restarted (after a backoff) when it
exits unexpectedly; the engine then runs its rules again from their durable cursors,
so a crash costs redelivery, never loss. Messages from it go to ``handle`` in order,
one at a time (a cursor is made durable before the next message is handled, so dead
letters are stored before the cursor that passes them). See ``worker.py`` for the
messages.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..tasks import cancel
from .channel import Channel

log = logging.getLogger("headrace.rules")

_READY_TIMEOUT = 60.0
_QUIT_TIMEOUT = 30.0


class DeliveryProcess:
    def __init__(
        self,
        config: dict[str, Any],
        handle: Callable[[list[Any]], Awaitable[None]],
        exited: Callable[[str], None],
    ) -> None:
        self.config = config
        self.handle = handle
        self.exited = exited  # called (on the loop) when the process ended unexpectedly
        self.channel: Channel | None = None
        self.pid = 0
        self.starts = 0  # processes started (restarts included)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._bye: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self.channel is not None

    async def ensure(self) -> None:
        """Start the process unless it runs (waits until it is ready)."""
        async with self._lock:
            if self.channel is not None or self._stopping:
                return
            ours, theirs = socket.socketpair()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "headrace.rules.worker",
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            self.starts += 1
            self.pid = self._proc.pid
            channel = await Channel.open(ours)
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._bye = loop.create_future()
            self._reader = asyncio.create_task(self._read(channel, self._proc))
            channel.send(["config", self.config])
            try:
                await asyncio.wait_for(asyncio.shield(self._ready), _READY_TIMEOUT)
            except TimeoutError:
                self._proc.kill()
                raise RuntimeError("the rules' delivery process did not start") from None
            self.channel = channel
            log.info("rules' delivery process started", extra={"pid": self.pid})

    def send(self, msg: list[Any]) -> None:
        if self.channel is not None:
            self.channel.send(msg)

    def backlog(self) -> int:
        """Bytes sent and not yet taken by the process."""
        return self.channel.backlog() if self.channel is not None else 0

    async def _read(self, channel: Channel, proc: asyncio.subprocess.Process) -> None:
        while (msg := await channel.receive()) is not None:
            kind = msg[0]
            if kind == "ready":
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif kind == "bye":
                if self._bye is not None and not self._bye.done():
                    self._bye.set_result(None)
            else:
                try:
                    await self.handle(msg)
                except Exception:
                    log.exception("handling a message of the delivery process failed")
        channel.close()
        code = await proc.wait()
        if self.channel is channel:
            self.channel = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"exited with {code}"))
            self._ready.exception()  # retrieved: ensure() reports it
        if not self._stopping:
            log.error("the rules' delivery process exited", extra={"code": code, "pid": proc.pid})
            self.exited(f"the rules' delivery process exited with code {code}")

    async def stop(self) -> None:
        """Every runner stopped and its last cursor handled, then the process ends."""
        self._stopping = True
        async with self._lock:
            proc, channel = self._proc, self.channel
            if proc is None:
                return
            if channel is not None and self._bye is not None:
                channel.send(["quit"])
                try:
                    await asyncio.wait_for(asyncio.shield(self._bye), _QUIT_TIMEOUT)
                except TimeoutError:
                    log.error("the rules' delivery process did not stop in time: killed")
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 5.0)
                except TimeoutError:
                    proc.kill()
            if self._reader is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._reader), 5.0)
                except TimeoutError:
                    await cancel(self._reader)
            self.channel = None
            self._proc = None
