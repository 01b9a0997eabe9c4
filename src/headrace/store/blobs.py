"""Content-addressed blob store for integrated files, under ``<data_dir>/files``.

A blob is stored once per content at ``files/ab/cd/<sha256>``. An upload is written to a
temporary file in ``files/tmp``, hashed while it streams, fsynced, and only then renamed
to its content address (and the directory fsynced), so a crash never leaves a partial
file under a valid name; whatever is left in ``tmp`` is removed at the next start.

Writing and hashing run on a small thread pool (hashlib and file writes release the GIL):
each 1 MiB slice is hashed (SHA-256, MD5) and written by three threads at once while the
event loop reads the next slice from the request, so an upload holds at most ~2 MiB in
memory. Every 16 MiB an fdatasync starts in the background, so the fsync before the reply
has little left to do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("headrace.files")

SLICE = 1024 * 1024
SYNC_EVERY = 16 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobTooLarge(Exception):
    """The blob grew beyond the writer's limit."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    md5: str
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path, *, io_threads: int = 8):
        self.root = root
        self.tmp = root / "tmp"
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="headrace-blob")

    def open(self) -> int:
        """Create the directories and drop leftovers of interrupted uploads; returns how many."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        removed = 0
        for p in self.tmp.iterdir():
            try:
                p.unlink()
                removed += 1
            except OSError:
                log.warning("cannot remove a stale upload", extra={"path": str(p)})
        if removed:
            log.info("removed interrupted uploads", extra={"files": removed})
        return removed

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def scan(self) -> Iterator[str]:
        """Every stored blob's hash (for garbage collection at start)."""
        for first in self.root.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in first.iterdir():
                if not second.is_dir():
                    continue
                for p in second.iterdir():
                    if _HEX64.match(p.name):
                        yield p.name

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def writer(self, limit: int) -> BlobWriter:
        return BlobWriter(self, limit)

    def temp_files(self) -> list[Path]:
        return list(self.tmp.iterdir()) if self.tmp.exists() else []


class BlobWriter:
    """One upload in progress: ``await write(chunk)`` ..., ``await finish()``, then
    ``await commit()`` (or ``abort()`` at any point)."""

    def __init__(self, store: BlobStore, limit: int):
        self.store = store
        self.limit = limit
        self.size = 0
        self.temp_path = store.tmp / f"up-{os.urandom(12).hex()}"
        self._fd = os.open(
            self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5()
        self._buf = bytearray()
        self._pending: list[asyncio.Future[None]] = []
        self._sync: asyncio.Future[None] | None = None
        self._unsynced = 0
        self._closed = False
        self.info: BlobInfo | None = None

    def _write(self, data: bytearray) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise BlobTooLarge(f"file larger than {self.limit} bytes")
        self._buf += data
        if len(self._buf) >= SLICE:
            await self._flush()

    async def _flush(self) -> None:
        await self._wait()
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            loop = asyncio.get_running_loop()
            pool = self.store._pool
            # hashing and writing each on its own thread (all three release the GIL)
            self._pending = [
                loop.run_in_executor(pool, self._sha.update, buf),
                loop.run_in_executor(pool, self._md5.update, buf),
                loop.run_in_executor(pool, self._write, buf),
            ]
            self._unsynced += len(buf)
            if self._unsynced >= SYNC_EVERY and (self._sync is None or self._sync.done()):
                # start flushing to disk while the upload goes on: the final fsync is short
                self._unsynced = 0
                self._sync = loop.run_in_executor(pool, os.fdatasync, self._fd)

    async def _wait(self) -> None:
        # wait for both jobs even when one fails, so no thread still uses the file after
        if self._pending:
            results = await asyncio.gather(*self._pending, return_exceptions=True)
            self._pending = []
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def finish(self) -> BlobInfo:
        """Write what is buffered and fsync; the blob is complete but not yet visible."""
        await self._flush()
        await self._wait()
        if self._sync is not None:
            await self._sync
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.store._pool, os.fsync, self._fd)
        self.info = BlobInfo(self._sha.hexdigest(), self._md5.hexdigest(), self.size)
        return self.info

    async def commit(self) -> str:
        """Move the finished blob to its content address (durably); returns its hash."""
        if self.info is None:
            raise RuntimeError("commit before finish")
        sha = self.info.sha256
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.store._pool, self._commit_sync, sha)
        return sha

    def _commit_sync(self, sha: str) -> None:
        target = self.store.path(sha)
        os.close(self._fd)
        self._closed = True
        if target.exists():  # the same content is stored already: keep that copy
            os.unlink(self.temp_path)
            return
        created = []
        for d in (target.parent.parent, target.parent):
            if not d.exists():
                d.mkdir(exist_ok=True)
                created.append(d)
        os.rename(self.temp_path, target)
        _fsync_dir(target.parent)
        for d in reversed(created):
            _fsync_dir(d.parent)

    def abort(self) -> None:
        """Drop the upload: close and delete the temporary file (after any pending write)."""
        if self._closed:
            return
        self._closed = True
        pending = asyncio.gather(*self._pending, return_exceptions=True) if self._pending else None

        def cleanup() -> None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            try:
                os.unlink(self.temp_path)
            except OSError:
                pass

        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _f: cleanup())
        else:
            cleanup()
