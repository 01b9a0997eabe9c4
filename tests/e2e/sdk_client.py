"""A consumer built on the enos-subscribe SDK, run as a subprocess by the subscription
tests (the SDK's threads reconnect and die noisily; a process keeps that out of pytest).

    python tests/e2e/sdk_client.py CLASS PORT ACCESS_KEY SECRET SUB_ID GROUP

CLASS is an SDK client class (DataClient, OfflineClient, EventClient, AlertClient). It
subscribes, then obeys stdin: ``next N`` iterates the client N times (each value is
printed as ``{"value": ...}``); ``quit`` exits. Every commit the SDK sends is printed
as ``{"commit": [[topic, partition, offset], ...]}``. Auto-commit runs on every
iteration (interval 0), as the SDK does it: the offsets of the values returned before.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import enos_subscribe

_out = threading.Lock()


def emit(obj: object) -> None:
    with _out:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def main() -> None:
    cls_name, port, ak, secret, sub_id, group = sys.argv[1:7]
    # the SDK sets DEBUG on import; its reconnect loop would log a malformed debug line
    # per attempt (its "Auth fail" and "Sub fail" are INFO)
    logging.getLogger().setLevel(logging.INFO)
    client = getattr(enos_subscribe, cls_name)(
        host="127.0.0.1",
        port=int(port),
        access_key=ak,
        access_secret=secret,
        auto_commit_interval_seconds=0,
    )
    client.subscribe(sub_id=sub_id, consumer_group=group)
    ws = client.ws_client
    original = ws.commit_offsets

    def commit_offsets(dto: object) -> None:
        emit({"commit": [[c.topic, c.partition, c.offset] for c in dto.commits]})  # type: ignore[attr-defined]
        original(dto)

    ws.commit_offsets = commit_offsets
    emit({"subscribed": True})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "next":
            for _ in range(int(cmd[1])):
                emit({"value": next(client)})
        elif cmd[0] == "quit":
            break
    os._exit(0)  # the SDK's threads are not daemons of ours: leave at once


if __name__ == "__main__":
    main()
