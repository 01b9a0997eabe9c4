"""History files into headrace over MQTT, resumable: the library of ``headrace import``
(the command itself, with its progress bar and exit codes, is in ``headrace.cli``).

The file is read in order and cut into batches of ``batch`` items; up to ``inflight``
batches are outstanding at once (``IntegrationClient`` matches the replies). Batches are
numbered in file order, and the **checkpoint** only ever records the end of the longest
run of batches from the start that headrace acknowledged (the contiguous prefix): a
batch acknowledged out of order waits until everything before it is acknowledged too. An
import that is stopped any way at all (Ctrl-C, SIGKILL, a crash, network loss, a hub
restart) resumes from the checkpoint when the same command runs again; the batches sent
after it are sent again, which is harmless because headrace stores samples idempotently
on (device, point, time).

Items that headrace refuses (unknown device 1257, model validation 1204, ...) are taken
out of their batch, the rest of the batch is sent again, and the refused rows go to the
**reject file** (JSON Lines) with the reply code and message; rows the reader cannot turn
into an item (no device, bad time) go there too, with ``"code": null``. Reject lines are
written when their batch joins the committed prefix, and the checkpoint records the
reject file's size, so a resumed import truncates what a stopped run wrote past the
checkpoint: every rejected row is listed exactly once.

The checkpoint (JSON) names the file by path, size and hashes of its head and tail, and
the options that shape the items (format, layout, columns, product); resuming with a
different file or options is refused (``--restart`` starts over).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from .connection import IntegrationClient
from .errors import IntegrationReplyError, RateLimited, SubscribeRefused
from .readers import (
    BadRow,
    Columns,
    Format,
    Layout,
    Position,
    Record,
    read_records,
    source_size,
)

CHECKPOINT_VERSION = 1
_HASH_SPAN = 1 << 20
_encode = msgspec.json.Encoder().encode


class ImportAborted(Exception):
    """The import cannot go on (refused product, unusable checkpoint)."""


@dataclass(slots=True)
class ImportOptions:
    file: Path
    product: str
    fmt: Format
    layout: Layout = "wide"
    columns: Columns = field(default_factory=Columns)
    batch: int = 100
    inflight: int = 16
    connections: int = 1
    checkpoint: Path | None = None
    reject: Path | None = None
    restart: bool = False
    progress: bool = True  # report progress to ``on_progress`` (when one is given)
    checkpoint_interval: float = 1.0

    def checkpoint_path(self) -> Path:
        return self.checkpoint or self.file.with_name(self.file.name + ".checkpoint.json")

    def reject_path(self) -> Path:
        return self.reject or self.file.with_name(self.file.name + ".rejects.jsonl")


@dataclass(slots=True)
class ImportResult:
    complete: bool
    points: int  # stored, over all runs of this import
    items: int
    rows: int  # source rows read up to the committed position
    rejected: int
    elapsed: float  # seconds, over all runs
    run_points: int  # stored by this run
    run_elapsed: float
    resumed_from_row: int
    already_complete: bool = False

    @property
    def run_rate(self) -> float:
        return self.run_points / self.run_elapsed if self.run_elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where a running import stands, as reported to ``on_progress`` (at the start,
    every 0.2 s and at the end of the run)."""

    total: int  # what positions count toward: the source's bytes, or rows for Parquet
    done: int  # of ``total``, committed
    points: int  # stored, over all runs of this import
    rate: float  # points/s stored by this run
    rejected: int
    connected: bool  # every connection is up


OnProgress = Callable[[ImportProgress], None]


@dataclass(slots=True)
class _Batch:
    seq: int
    records: list[Record]
    bad: list[BadRow]
    end: Position
    last: bool = False
    points: int = 0
    items: int = 0
    rejects: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    encoded: list[msgspec.Raw] = field(default_factory=list)


# -- checkpoint ------------------------------------------------------------------------------


def file_identity(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    head = hashlib.sha256()
    tail = hashlib.sha256()
    with open(path, "rb") as f:
        head.update(f.read(_HASH_SPAN))
        f.seek(max(0, size - _HASH_SPAN))
        tail.update(f.read(_HASH_SPAN))
    return {
        "path": str(path.resolve()),
        "size": size,
        "head": head.hexdigest(),
        "tail": tail.hexdigest(),
    }


def _shape(opts: ImportOptions) -> dict[str, Any]:
    return {
        "format": opts.fmt,
        "layout": opts.layout,
        "product": opts.product,
        "columns": opts.columns.describe(),
    }


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ImportAborted(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
        raise ImportAborted(f"{path} is not a headrace import checkpoint")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- batching --------------------------------------------------------------------------------


def _batches(
    records: Iterator[Record | BadRow], size: int, eof: Position, first_seq: int = 0
) -> Iterator[_Batch]:
    """Batches of ``size`` records; each ends where the next element starts."""
    seq = first_seq
    current = _Batch(seq, [], [], eof)
    last_row = 0
    for element in records:
        if len(current.records) >= size:
            current.end = element.pos
            yield current
            seq += 1
            current = _Batch(seq, [], [], eof)
        if isinstance(element, BadRow):
            current.bad.append(element)
            last_row = element.pos.row
        else:
            current.records.append(element)
            last_row = element.pos.row + element.rows - 1
    current.end = Position(eof.offset, last_row)
    current.last = True
    yield current


def _reject_line(
    pos: Position, rows: int, code: int | None, message: str, **extra: Any
) -> dict[str, Any]:
    return {"row": pos.row, "rows": rows, "code": code, "message": message, **extra}


# -- the import ------------------------------------------------------------------------------


class Importer:
    """One import run; ``await run()``. ``clients``: one or more connected clients;
    batches go to the one with the fewest requests outstanding. ``on_progress`` is called
    with an ``ImportProgress`` when ``opts.progress`` is set."""

    def __init__(
        self,
        clients: IntegrationClient | list[IntegrationClient],
        opts: ImportOptions,
        on_progress: OnProgress | None = None,
    ):
        if opts.batch < 1 or opts.inflight < 1:
            raise ValueError("batch and inflight must be at least 1")
        self.clients = clients if isinstance(clients, list) else [clients]
        if not self.clients:
            raise ValueError("no client given")
        self.opts = opts
        self.on_progress = on_progress if opts.progress else None
        self.cp_path = opts.checkpoint_path()
        self.reject_path = opts.reject_path()
        self.identity = file_identity(opts.file)
        self.shape = _shape(opts)
        # committed state (what the checkpoint holds)
        self.position = Position(0, 0)
        self.points = 0
        self.items = 0
        self.rows = 0
        self.rejected = 0
        self.elapsed_before = 0.0
        self.complete = False
        self.reject_size = 0
        self._run_points = 0
        self._started = time.monotonic()
        self._reject_file: Any = None
        self._saving: asyncio.Task[None] | None = None
        self._last_save = 0.0

    # -- state -----------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        if self.opts.restart:
            self.cp_path.unlink(missing_ok=True)
            return None
        cp = load_checkpoint(self.cp_path)
        if cp is None:
            return None
        differs = [k for k in ("size", "head", "tail") if cp["file"].get(k) != self.identity[k]]
        differs += [k for k in self.shape if cp["shape"].get(k) != self.shape[k]]
        if differs:
            raise ImportAborted(
                f"checkpoint {self.cp_path} belongs to another import (differs in: "
                f"{', '.join(differs)}); remove it or pass --restart"
            )
        return cp

    def _state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "file": self.identity,
            "shape": self.shape,
            "position": {"offset": self.position.offset, "row": self.position.row},
            "complete": self.complete,
            "points": self.points,
            "items": self.items,
            "rows": self.rows,
            "rejected": self.rejected,
            "reject_file": str(self.reject_path.resolve()),
            "reject_size": self.reject_size,
            "elapsed": round(self.elapsed_before + time.monotonic() - self._started, 3),
            "updated": time.time(),
        }

    def _save_sync(self, state: dict[str, Any]) -> None:
        f = self._reject_file
        if f is not None:
            os.fsync(f.fileno())
        _write_atomic(self.cp_path, json.dumps(state, indent=1).encode())

    def _flush_rejects(self) -> None:
        f = self._reject_file
        if f is not None:
            f.flush()
            self.reject_size = f.tell()

    async def _save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < self.opts.checkpoint_interval:
            return
        if self._saving is not None:
            if not force and not self._saving.done():
                return
            await self._saving
            self._saving = None
        self._flush_rejects()
        self._last_save = now
        state = self._state()
        if force:
            self._save_sync(state)
        else:
            self._saving = asyncio.ensure_future(asyncio.to_thread(self._save_sync, state))

    # -- run -------------------------------------------------------------------------

    async def run(self) -> ImportResult:
        opts = self.opts
        cp = self._load()
        if cp is not None:
            self.position = Position(cp["position"]["offset"], cp["position"]["row"])
            self.points, self.items = cp["points"], cp["items"]
            self.rows, self.rejected = cp["rows"], cp["rejected"]
            self.elapsed_before = float(cp.get("elapsed", 0.0))
            self.reject_size = int(cp.get("reject_size", 0))
            if cp.get("complete"):
                self.complete = True
                return self._result(already=True)
        resumed_from = self.position.row
        # the reject file holds exactly what the committed prefix rejected
        if cp is None:
            self._reject_file = open(self.reject_path, "wb")  # noqa: SIM115
        else:
            exists = self.reject_path.exists()
            self._reject_file = open(self.reject_path, "r+b" if exists else "wb")  # noqa: SIM115
            # drop what a stopped run wrote past the checkpoint (never extend a file that
            # someone shortened or removed)
            size = min(self.reject_size, self.reject_path.stat().st_size)
            self._reject_file.truncate(size)
            self._reject_file.seek(size)
            self.reject_size = size
        total = source_size(opts.file, opts.fmt)
        eof = Position(total, -1)
        start = self.position if cp is not None and self.position.row > 0 else None
        records = read_records(opts.file, opts.fmt, opts.layout, opts.columns, start)
        batches = _batches(records, opts.batch, eof)
        try:
            await self._loop(batches, total)
            self.complete = True
        finally:
            with contextlib.suppress(Exception):
                await self._save(force=True)
            self._reject_file.close()
            self._reject_file = None
        return self._result(resumed_from=resumed_from)

    def _result(self, *, already: bool = False, resumed_from: int = 0) -> ImportResult:
        run_elapsed = time.monotonic() - self._started
        return ImportResult(
            complete=self.complete,
            points=self.points,
            items=self.items,
            rows=self.rows,
            rejected=self.rejected,
            elapsed=self.elapsed_before + (0.0 if already else run_elapsed),
            run_points=self._run_points,
            run_elapsed=run_elapsed,
            resumed_from_row=resumed_from,
            already_complete=already,
        )

    def _report(self, total: int) -> None:
        if self.on_progress is None:
            return
        elapsed = time.monotonic() - self._started
        self.on_progress(
            ImportProgress(
                total=total,
                done=max(0, self.position.offset),
                points=self.points,
                rate=self._run_points / elapsed if elapsed > 0 else 0.0,
                rejected=self.rejected,
                connected=all(c.connected for c in self.clients),
            )
        )

    async def _loop(self, batches: Iterator[_Batch], total: int) -> None:
        """Keep ``inflight`` batches outstanding, with as many more read and encoded
        ahead: when a group commit of the hub answers many requests at once, the next
        requests go out at once too (a request that trickles in late misses the hub's
        next group commit and waits for the one after)."""
        inflight = self.opts.inflight
        tasks: dict[asyncio.Task[_Batch], int] = {}
        done: dict[int, _Batch] = {}
        ready: deque[_Batch] = deque()
        next_commit = 0
        source_done = False
        last_ui = 0.0
        self._report(total)

        def take() -> None:
            nonlocal source_done
            b = next(batches, None)
            if b is None:
                source_done = True
                return
            self._prepare(b)
            if b.last:
                source_done = True
            if b.records:
                ready.append(b)
            else:
                done[b.seq] = b

        try:
            while True:
                while ready and len(tasks) < inflight:
                    b = ready.popleft()
                    tasks[asyncio.ensure_future(self._send(b))] = b.seq
                if not ready and not source_done and len(tasks) < inflight:
                    take()
                    continue
                while next_commit in done:
                    self._commit(done.pop(next_commit))
                    next_commit += 1
                if source_done and not ready and not tasks:
                    break
                await asyncio.sleep(0)  # the new tasks publish now
                # read ahead while the hub works, yielding between batches
                while (
                    not source_done and len(ready) < inflight and not any(t.done() for t in tasks)
                ):
                    take()
                    await asyncio.sleep(0)
                if tasks:
                    finished, _ = await asyncio.wait(
                        tasks, timeout=0.25, return_when=asyncio.FIRST_COMPLETED
                    )
                    for t in finished:
                        del tasks[t]
                        b = t.result()  # a fatal error propagates
                        done[b.seq] = b
                while next_commit in done:
                    self._commit(done.pop(next_commit))
                    next_commit += 1
                await self._save()
                now = time.monotonic()
                if now - last_ui > 0.2:
                    last_ui = now
                    self._report(total)
            self._report(total)
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if self._saving is not None:
                with contextlib.suppress(Exception):
                    await self._saving
                self._saving = None

    def _prepare(self, b: _Batch) -> None:
        """Reject lines of the reader's bad rows; each item's JSON encoded once."""
        for bad in b.bad:
            b.rejects.append(
                (bad.pos.row, _reject_line(bad.pos, 1, None, bad.message, source=bad.row))
            )
        b.encoded = [
            msgspec.Raw(_encode({"deviceKey": r.device, "time": r.time, "measurepoints": r.values}))
            for r in b.records
        ]

    def _commit(self, b: _Batch) -> None:
        """``b`` joins the committed prefix: write its rejects, advance the position."""
        f = self._reject_file
        b.rejects.sort(key=lambda r: r[0])
        for _, line in b.rejects:
            f.write(_encode(line) + b"\n")
        self.rejected += len(b.rejects)
        self.points += b.points
        self._run_points += b.points
        self.items += b.items
        # rows read up to the new position (rows without any value included)
        self.rows = b.end.row if b.last else b.end.row - 1
        self.position = b.end

    async def _send(self, b: _Batch) -> _Batch:
        """Send one batch until every item is stored or rejected."""
        records = b.records
        items = b.encoded
        queue: list[list[int]] = [list(range(len(items)))]
        pause = 0.5
        while queue:
            sub = queue.pop()
            client = min(self.clients, key=_load)
            try:
                await client.post_measurepoints(self.opts.product, [items[i] for i in sub])
            except RateLimited:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                queue.append(sub)
                continue
            except SubscribeRefused as e:
                raise ImportAborted(str(e)) from None
            except IntegrationReplyError as e:
                bad: dict[int, tuple[int, str]] = {}
                for err in e.errors:
                    index = err.get("index")
                    if isinstance(index, int) and 0 <= index < len(sub):
                        bad[sub[index]] = (
                            int(err.get("code", e.code)),
                            str(err.get("message", "")),
                        )
                if not bad and len(sub) == 1:
                    bad[sub[0]] = (e.code, e.message)
                if bad:
                    for i, (code, message) in bad.items():
                        r = records[i]
                        b.rejects.append(
                            (
                                r.pos.row,
                                _reject_line(
                                    r.pos,
                                    r.rows,
                                    code,
                                    message,
                                    deviceKey=r.device,
                                    time=r.time,
                                    measurepoints=r.values,
                                ),
                            )
                        )
                    rest = [i for i in sub if i not in bad]
                    if rest:
                        queue.append(rest)
                else:  # refused as a whole (e.g. too large): split to isolate
                    half = len(sub) // 2
                    queue += [sub[half:], sub[:half]]
                continue
            b.items += len(sub)
            b.points += sum(len(records[i].values) for i in sub)
        return b


def _load(client: IntegrationClient) -> tuple[bool, int]:
    return (not client.connected, client.pending)


async def import_file(
    opts: ImportOptions,
    *,
    broker: str,
    username: str | None = None,
    password: str | None = None,
    product_secret: str | None = None,
    ca_file: str | None = None,
    client_id: str | None = None,
    on_progress: OnProgress | None = None,
) -> ImportResult:
    """Connect, import ``opts.file``, disconnect. Login: channel ``username``/``password``
    or the signed login with ``opts.product`` and ``product_secret``. ``on_progress``:
    see ``Importer``."""
    n = max(1, min(opts.connections, opts.inflight))
    per_connection = -(-opts.inflight // n)
    clients: list[IntegrationClient] = []
    for i in range(n):
        if username is not None:
            cid = client_id if n == 1 or client_id is None else f"{client_id}-{i}"
            client = IntegrationClient(
                broker,
                username=username,
                password=password,
                ca_file=ca_file,
                client_id=cid,
                max_inflight=per_connection,
                products=[opts.product],
            )
        else:
            client = IntegrationClient(
                broker,
                product_key=opts.product,
                product_secret=product_secret,
                ca_file=ca_file,
                max_inflight=per_connection,
            )
        clients.append(client)
    importer = Importer(clients, opts, on_progress)
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        return await importer.run()
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
