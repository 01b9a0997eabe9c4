"""Sandbox worker processes: QuickJS runs in children so that what QuickJS cannot bound
takes down, at worst, a worker that is then restarted, never the hub.

Two things need it (both measured on quickjs 1.19): a script that hits the memory limit
can crash QuickJS (a segfault on some out-of-memory paths), and native code ignores the
time limit (regex backtracking, built-ins over huge array-likes). A watchdog thread kills
a worker whose call has run longer than ``busy_timeout_s``.

Each product is routed to one worker (stable hash), so its calls stay serialized and its
context lives in one place. A worker answers one request at a time: a product sharing a
worker with a runaway script waits for that script's time limit (or, for code stuck in C,
for the watchdog). Checks of a script (compiling it when saved, debug runs on sample
bytes) run in a worker of their own, so a script under test never holds up products'
calls. A worker is ``python -c '...worker import main; main()'`` (no multiprocessing:
its spawn re-imports the host's main module); the wire is its stdin/stdout carrying
length-prefixed pickled tuples, and the script source is only sent when the worker does
not hold that product's version yet.

Strikes: a call that crashes or hangs its worker is a strike against the product's script
version; a check that does is a strike against the product's checks of that source (a
debug sample is not production data, so it does not count against the version in use).
After ``MAX_STRIKES`` the version, or the source, is refused without running until the
product's script changes (saved, rolled back or deleted).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import IO, Any

from .sandbox import (
    DEFAULT_MAX_CONTEXTS,
    FUNCTION_NAMES,
    LocalEngine,
    NeedSource,
    ScriptError,
    ScriptLimits,
    ScriptVersion,
    check_script,
)

# A product whose calls (or checks of one source) crash or hang their worker this many
# times is refused (for that script version, or that source) instead of restarting
# workers forever.
MAX_STRIKES = 3

Reply = tuple[Any, ...]
StrikeKey = tuple[str, ScriptVersion | tuple[str, str]]
"""(product key, script version) for calls, (product key, ("check", sha-256 of the
source)) for checks."""


# -- the wire --------------------------------------------------------------------------------

_HEADER = struct.Struct("!I")


def _send(stream: IO[bytes], message: tuple[Any, ...]) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


# -- the child -------------------------------------------------------------------------------


def main() -> None:
    """Entry point of a worker process: answer requests on stdin/stdout until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    time_limit_ms, memory_limit, max_source_size, max_contexts = sys.argv[1:5]
    limits = ScriptLimits(float(time_limit_ms), int(memory_limit), int(max_source_size))
    # One request at a time: nothing to wait for; hangs are the parent's watchdog's job.
    engine = LocalEngine(limits, max_contexts=int(max_contexts), busy_timeout_s=None)
    # The protocol owns fd 0 and a private copy of fd 1; stray prints go to stderr.
    requests = os.fdopen(0, "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            request = _receive(requests)
        except (EOFError, OSError):
            return
        _send(replies, _handle(engine, request))


def _exit_with_parent(parent: int) -> None:
    # A parent that dies closes the pipe, which ends the loop above -- unless a call is
    # stuck in C code; then this thread (the binding releases the GIL) ends the process.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _handle(engine: LocalEngine, request: tuple[Any, ...]) -> Reply:
    try:
        if request[0] == "call":
            _, op, product_key, version, source, arg, fresh = request
            if fresh:
                engine.discard(product_key)
            return ("ok", engine.call(op, product_key, version, source, arg))
        if request[0] == "calls":  # one call per argument, each with its own outcome
            _, op, product_key, version, source, args, fresh = request
            if fresh:
                engine.discard(product_key)
            outcomes: list[Reply] = []
            for arg in args:
                try:
                    outcomes.append(("ok", engine.call(op, product_key, version, source, arg)))
                except NeedSource:
                    if not outcomes:  # the context is kept after a failure: only at first
                        return ("need_source",)
                    raise
                except ScriptError as exc:
                    outcomes.append(
                        ("error", exc.kind, exc.message, exc.line, exc.column, exc.stack)
                    )
            return ("ok", outcomes)
        if request[0] == "check":
            _, limits_args, source, raw = request
            return ("ok", check_script(source, raw, ScriptLimits(*limits_args)))
        return ("error", "exception", f"unknown request {request[0]!r}", None, None, None)
    except NeedSource:
        return ("need_source",)
    except ScriptError as exc:
        return ("error", exc.kind, exc.message, exc.line, exc.column, exc.stack)


def _error_of(reply: Reply) -> ScriptError:
    _, kind, message, line, column, stack = reply
    return ScriptError(message, kind=kind, line=line, column=column, stack=stack)


def _outcome(reply: Reply) -> Any:
    """One call's result, or its ``ScriptError`` (returned, not raised)."""
    return reply[1] if reply[0] == "ok" else _error_of(reply)


def _unpack(reply: Reply) -> Any:
    if reply[0] == "ok":
        return reply[1]
    _, kind, message, line, column, stack = reply
    raise ScriptError(message, kind=kind, line=line, column=column, stack=stack)


# -- the parent ------------------------------------------------------------------------------


class _WorkerLost(Exception):
    def __init__(self, killed: bool):
        super().__init__("sandbox worker lost")
        self.killed = killed  # by the watchdog (hung), else it died (crashed)


def _limits_args(limits: ScriptLimits) -> tuple[float, int, int]:
    return (limits.time_limit_ms, limits.memory_limit, limits.max_source_size)


class _Worker:
    """Parent side of one worker process; started lazily, restarted after a loss.
    Callers hold ``lock`` around ``exchange``."""

    def __init__(self, name: str, limits: ScriptLimits, max_contexts: int):
        self.name = name
        self.limits = limits
        self.max_contexts = max_contexts
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.known: dict[str, ScriptVersion] = {}  # product -> version the worker was sent
        self.busy_since: float | None = None
        self.busy_allow = 0.0
        self.killed = False

    def start(self) -> None:
        limits = self.limits
        env = dict(os.environ)
        # The child must import this very package, wherever it was imported from.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from headrace.scripts.worker import main; main()",
                repr(limits.time_limit_ms),
                str(limits.memory_limit),
                str(limits.max_source_size),
                str(self.max_contexts),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.known = {}
        self.killed = False

    def stop(self) -> None:
        process = self.process
        self.process = None
        self.known = {}
        if process is not None:
            process.kill()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            process.wait(timeout=5)

    def exchange(self, request: tuple[Any, ...], allow: float = 0.0) -> Reply:
        """Send one request, wait for its reply; ``allow``: seconds the watchdog grants
        beyond its timeout (a batch of calls may take each call's time limit)."""
        if self.process is None:
            self.start()
        process = self.process
        assert process is not None and process.stdin is not None and process.stdout is not None
        self.busy_allow = allow
        self.busy_since = time.monotonic()
        try:
            _send(process.stdin, request)
            reply: Reply = _receive(process.stdout)
            return reply
        except (EOFError, OSError, pickle.UnpicklingError):
            killed = self.killed
            self.stop()
            raise _WorkerLost(killed) from None
        finally:
            self.busy_since = None

    def watch(self, now: float, timeout: float) -> None:
        since, process = self.busy_since, self.process
        if since is not None and process is not None and now - since > timeout + self.busy_allow:
            self.killed = True
            process.kill()


class WorkerPool:
    """The worker processes of one engine, and the watchdog thread that kills a worker
    whose call runs past ``busy_timeout_s``."""

    def __init__(
        self,
        limits: ScriptLimits,
        *,
        workers: int = 2,
        max_contexts: int = DEFAULT_MAX_CONTEXTS,
        busy_timeout_s: float,
    ):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.limits = limits
        self.busy_timeout_s = busy_timeout_s
        per_worker = max(1, -(-max_contexts // workers))
        self._workers = [
            _Worker(f"headrace-script-{i}", limits, per_worker) for i in range(workers)
        ]
        self._checker = _Worker("headrace-script-check", limits, 1)
        self._lock = threading.Lock()
        self._strikes: dict[StrikeKey, int] = {}
        self._refused: dict[StrikeKey, ScriptError] = {}
        self._discarded: set[str] = set()
        self._watchdog: threading.Thread | None = None
        self._stop_watchdog = threading.Event()

    # -- requests ----------------------------------------------------------------------------

    def route(self, product_key: str) -> int:
        return zlib.crc32(product_key.encode("utf-8", "surrogatepass")) % len(self._workers)

    def call(self, op: int, product_key: str, version: ScriptVersion, source: str, arg: Any) -> Any:
        key: StrikeKey = (product_key, version)
        self._raise_if_refused(key)
        worker = self._workers[self.route(product_key)]
        with self._acquire(worker, product_key):
            try:
                reply = self._send(worker, "call", op, product_key, version, source, arg)
            except _WorkerLost as lost:
                error = self._lost_error(FUNCTION_NAMES[op], lost.killed)
                raise self._strike(key, error, "upload a new version") from None
            return _unpack(reply)

    def call_many(
        self, op: int, product_key: str, version: ScriptVersion, source: str, args: list[Any]
    ) -> list[Any]:
        """``call`` for each of ``args`` in one worker round trip: a list with the result,
        or the ``ScriptError``, of each. A batch that crashes or hangs its worker is
        retried call by call, so that only the message that does it fails (and strikes)."""
        if len(args) == 1:
            try:
                return [self.call(op, product_key, version, source, args[0])]
            except ScriptError as e:
                return [e]
        key: StrikeKey = (product_key, version)
        refused = self._refused.get(key)
        if refused is not None:
            return [refused.copy() for _ in args]
        worker = self._workers[self.route(product_key)]
        allow = len(args) * self.limits.time_limit_ms / 1000.0
        try:
            with self._acquire(worker, product_key):
                reply = self._send(worker, "calls", op, product_key, version, source, args, allow)
        except ScriptError as e:  # busy
            return [e.copy() for _ in args]
        except _WorkerLost:
            pass  # below: one by one
        else:
            if reply[0] != "ok":
                error = _error_of(reply)
                return [error.copy() for _ in args]
            return [_outcome(r) for r in reply[1]]
        out: list[Any] = []
        for arg in args:
            try:
                out.append(self.call(op, product_key, version, source, arg))
            except ScriptError as e:
                out.append(e)
        return out

    def check(self, limits: ScriptLimits, source: str, raw: bytes | None, owner: str = "") -> Any:
        """Build ``source`` (and run it on ``raw``) in a fresh context, in the checker
        worker; strikes count against ``owner``'s (a product key's) checks of it."""
        digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        key: StrikeKey = (owner, ("check", digest))
        self._raise_if_refused(key)
        worker = self._checker
        with self._acquire(worker, "(script check)"):
            try:
                reply = worker.exchange(("check", _limits_args(limits), source, raw))
            except _WorkerLost as lost:
                error = self._lost_error("script", lost.killed)
                raise self._strike(key, error, "change the script") from None
            return _unpack(reply)

    def discard(self, product_key: str) -> None:
        """Never blocks (the manager calls it on the event loop): the worker is told to
        drop its context with the product's next call."""
        with self._lock:
            for table in (self._strikes, self._refused):
                for key in [key for key in table if key[0] == product_key]:
                    del table[key]
            self._discarded.add(product_key)

    def close(self) -> None:
        with self._lock:
            self._stop_watchdog.set()
            self._watchdog = None
        for worker in (*self._workers, self._checker):
            with worker.lock:
                worker.stop()

    # -- internals ---------------------------------------------------------------------------

    def _send(
        self,
        worker: _Worker,
        what: str,
        op: int,
        product_key: str,
        version: ScriptVersion,
        source: str,
        arg: Any,
        allow: float = 0.0,
    ) -> Reply:
        """One ``what`` request ("call": ``arg``; "calls": a list of them) to ``worker``,
        whose lock the caller holds: the source goes along when the worker does not hold
        this version (or was told to drop it), and again if it dropped it since (LRU).
        A lost worker raises ``_WorkerLost``."""
        with self._lock:
            fresh = product_key in self._discarded
            self._discarded.discard(product_key)
        send_source = fresh or worker.known.get(product_key) != version
        while True:
            request = (what, op, product_key, version, source if send_source else None, arg, fresh)
            reply = worker.exchange(request, allow)
            if reply[0] == "need_source" and not send_source:
                send_source = True  # the worker dropped it (LRU): send it again
                continue
            worker.known[product_key] = version
            return reply

    def _acquire(self, worker: _Worker, what: str) -> _Held:
        self._ensure_watchdog()
        # Behind a hung call the wait is bounded by the watchdog; allow it one restart.
        if not worker.lock.acquire(timeout=self.busy_timeout_s + 10.0):
            raise ScriptError(
                f"the sandbox for {what} is still busy with an earlier call", kind="busy"
            )
        return _Held(worker.lock)

    def _lost_error(self, function: str, killed: bool) -> ScriptError:
        if killed:
            return ScriptError(
                f"{function}: did not finish within {self.busy_timeout_s:g} s (stuck in code "
                f"the time limit cannot interrupt); its sandbox process was restarted",
                kind="time",
            )
        return ScriptError(
            f"{function}: the script crashed its sandbox process, which was restarted",
            kind="crash",
        )

    def _raise_if_refused(self, key: StrikeKey) -> None:
        refused = self._refused.get(key)
        if refused is not None:
            raise refused.copy()

    def _strike(self, key: StrikeKey, error: ScriptError, remedy: str) -> ScriptError:
        """Count ``error`` (a lost worker) against ``key``; returns it."""
        with self._lock:
            strikes = self._strikes.get(key, 0) + 1
            self._strikes[key] = strikes
            if strikes >= MAX_STRIKES:
                self._refused[key] = ScriptError(
                    f"script refused: it crashed or hung its sandbox {strikes} times "
                    f"(last: {error.message}); {remedy}",
                    kind=error.kind,
                )
        return error

    def _ensure_watchdog(self) -> None:
        if self._watchdog is not None:
            return
        with self._lock:
            if self._watchdog is None:
                self._stop_watchdog = stop = threading.Event()
                thread = threading.Thread(
                    target=self._watch, args=(stop,), name="headrace-script-watchdog", daemon=True
                )
                thread.start()
                self._watchdog = thread

    def _watch(self, stop: threading.Event) -> None:
        interval = min(0.1, self.busy_timeout_s / 10)
        while not stop.wait(interval):
            now = time.monotonic()
            for worker in (*self._workers, self._checker):
                worker.watch(now, self.busy_timeout_s)


class _Held:
    """Context manager releasing a lock acquired with a timeout."""

    __slots__ = ("_lock",)

    def __init__(self, lock: threading.Lock):
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
