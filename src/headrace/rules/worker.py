"""The rules' delivery process: every rule's runner, outside the hub's process.

Started by the hub (``process.DeliveryProcess``) as ``python -m headrace.rules.worker FD``
with one end of a socket pair as ``FD``. It reads the stream from the database itself
(``stream.follower``), transforms, formats and delivers with its own interpreter (its
own GIL: the hub's threads keep theirs for the ingest), and sends back what the hub
keeps: cursors, dead letters, counters, log records. It exits when the hub's end
closes (the hub stopped or died).

Messages from the hub (``channel.py`` frames):
    ["config", {"source", "batch", "scripts": {...}}]     first, once
    ["head", head, pruned, [[at, commit time], ...]]     after commits
    ["run", rule JSON, gen, position, counters]           start (or restart) a rule's runner
    ["halt", ruleId, forget]                              stop it (``forget``: rule deleted)
    ["quit"]                                              stop every runner, then exit
Messages to the hub:
    ["ready"]
    ["cursor", ruleId, gen, position, counters]           delivered up to position
    ["dead", ruleId, gen, [letter, ...]]                  dead letters (before the cursor past them)
    ["stats", ruleId, gen, counters]                      at most every STATS_INTERVAL when changed
    ["halted", ruleId, gen, counters]                     after its last cursor
    ["log", level, logger, message, extra]
    ["bye"]
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import msgspec

from ..scripts.engine import ScriptEngine
from ..store.sqlite.stream import StreamReader
from ..stream.follower import Follower, FollowerConsumer
from ..tasks import tune_gc
from .channel import Channel
from .deadletters import DeadLetter, letter_doc
from .model import Rule, stream_filter
from .runner import RuleRunner, RuleStats
from .transform import Transformer

log = logging.getLogger("headrace.rules")

STATS_INTERVAL = 0.2
_rule_dec = msgspec.json.Decoder(Rule)
_EXTRA = ("rule", "org", "records", "error")


class _Forward(logging.Handler):
    """Log records go to the hub, which logs them as its own."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.INFO)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            extra = {k: getattr(record, k) for k in _EXTRA if hasattr(record, k)}
            self.channel.send(["log", record.levelno, record.name, text, extra])
        except Exception:  # never fail the code that logged
            pass


class _Letters:
    """A runner's dead letters, sent to the hub (which stores them)."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def add(self, rule_id: str, letters: list[DeadLetter]) -> None:
        gen = self.host.gens.get(rule_id, 0)
        self.host.channel.send(["dead", rule_id, gen, [letter_doc(d) for d in letters]])


class Host:
    def __init__(self, channel: Channel, config: dict[str, Any]) -> None:
        self.channel = channel
        self.batch = int(config["batch"])
        self.follower = Follower(StreamReader(config["source"]))
        self.transformer = Transformer(ScriptEngine(**config["scripts"]))
        self.letters = _Letters(self)
        self.runners: dict[str, RuleRunner] = {}
        self.gens: dict[str, int] = {}
        self._sent: dict[str, dict[str, Any]] = {}

    # -- messages --------------------------------------------------------------------

    async def serve(self) -> None:
        stats = asyncio.create_task(self._stats())
        try:
            while (msg := await self.channel.receive()) is not None:
                kind = msg[0]
                if kind == "head":
                    self.follower.advance(msg[1], msg[2], msg[3])
                elif kind == "run":
                    await self._run(_rule_dec.decode(msg[1]), msg[2], msg[3], msg[4])
                elif kind == "halt":
                    await self._halt(msg[1], msg[2])
                elif kind == "quit":
                    for rule_id in list(self.runners):
                        await self._halt(rule_id, False)
                    self.channel.send(["bye"])
                    await self.channel.drain()
                    return
        finally:
            stats.cancel()

    async def _run(self, rule: Rule, gen: int, position: int, counters: dict[str, Any]) -> None:
        if rule.ruleId in self.runners:
            await self._halt(rule.ruleId, False)
        rule_id = rule.ruleId
        self.gens[rule_id] = gen

        def save(pos: int) -> None:  # with the counters, so that they cover the cursor
            r = self.runners.get(rule_id)
            counters = r.counters(latency=False) if r is not None else {}
            self.channel.send(["cursor", rule_id, gen, pos, counters])

        consumer = FollowerConsumer(self.follower, stream_filter(rule), position, save)
        stats = RuleStats(
            matched=counters.get("matched", 0),
            delivered=counters.get("delivered", 0),
            failed=counters.get("failed", 0),
            dead_lettered=counters.get("deadLettered", 0),
            last_error=counters.get("lastError") or "",
            last_error_at=counters.get("lastErrorAt") or 0,
        )
        runner = RuleRunner(
            rule, consumer, self.transformer, self.letters, batch=self.batch, stats=stats
        )
        self.runners[rule_id] = runner
        runner.start()

    async def _halt(self, rule_id: str, forget: bool) -> None:
        runner = self.runners.pop(rule_id, None)
        gen = self.gens.get(rule_id, 0)
        counters: dict[str, Any] = {}
        if runner is not None:
            await runner.stop()  # its last cursor is sent before
            counters = runner.counters()
        if forget:
            self.transformer.discard(rule_id)
            self.gens.pop(rule_id, None)
        self._sent.pop(rule_id, None)
        self.channel.send(["halted", rule_id, gen, counters])

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            for rule_id, runner in list(self.runners.items()):
                doc = runner.counters()
                if self._sent.get(rule_id) != doc:
                    self._sent[rule_id] = doc
                    self.channel.send(["stats", rule_id, self.gens[rule_id], doc])

    async def close(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners.values()), return_exceptions=True)
        self.transformer.close()
        self.transformer.engine.close()
        self.follower.close()


async def main(fd: int) -> None:
    tune_gc()
    channel = await Channel.open(socket.socket(fileno=fd))
    root = logging.getLogger()
    root.handlers[:] = [_Forward(channel)]
    root.setLevel(logging.INFO)
    msg = await channel.receive()
    if msg is None or msg[0] != "config":
        return
    host = Host(channel, msg[1])
    channel.send(["ready"])
    try:
        await host.serve()
    finally:
        await host.close()
        channel.close()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the hub's Ctrl-C is the hub's to handle
    asyncio.run(main(int(sys.argv[1])))
    os._exit(0)  # librdkafka's and the script workers' threads do not hold the exit
