"""The hub and its delivery process talk over a socket pair: msgpack arrays, each framed
by its length (4 bytes, big-endian). ``[kind, ...]`` -- the kinds are listed in
``process.py`` (hub side) and ``worker.py`` (delivery side)."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import msgspec

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(list[Any])
_LEN = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME)
        return cls(reader, writer)

    def send(self, msg: list[Any]) -> None:
        """Queue one message (in order; written as the socket takes it)."""
        if self.writer.is_closing():
            return
        body = _enc.encode(msg)
        self.writer.write(_LEN.pack(len(body)) + body)

    def backlog(self) -> int:
        """Bytes queued and not yet written to the socket."""
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    async def receive(self) -> list[Any] | None:
        """The next message, None once the other side closed."""
        try:
            (n,) = _LEN.unpack(await self.reader.readexactly(4))
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes")
            return _dec.decode(await self.reader.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self.writer.close()
