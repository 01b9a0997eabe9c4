"""The outbound stream: one durable, ordered log of what was committed, and its consumers.

Every stored request item and every derived change becomes a ``Record`` (``records``)
appended **in the same transaction** as the data it describes: an acknowledged request
is stored and in the stream. Records carry ``seq`` (the position: commit order), ``at``
(commit time, ms), ``org``, ``product``, ``model``, ``assetId``, ``deviceKey``,
``source`` ("realtime"/"offline"), ``kind`` (``records.KINDS``), ``time`` (the data's
time, ms) and ``content``.

Every way out (noti queues, rules, data subscriptions) is a ``Consumer``: a durable named
cursor with a ``Filter`` and a ``Retention``. Nothing is written that no consumer's
filter may want (with no consumers, nothing at all). The stream is pruned past the
slowest cursor or a consumer's retention, whichever comes first; records that fall out
of a consumer's retention before it is done are counted (``Consumer.dropped``,
``Stream.dropped``) and logged, and its cursor moves past them.

API (``outbound.Stream``, one per hub, built and wired in ``app.py``)::

    stream.load()                                  # after the store started (sync)
    c = stream.open(name, Filter(...), Retention(seconds=..., bytes=...))
                                                   # stored cursor, else a new one at the head
    records = await c.read(limit=1000)             # matching records after c.read_position
    await c.wait(timeout)                          # woken by the next commit; False on timeout
    await c.commit()                               # done up to c.read_position: durable
    c.seek(position); c.seek(stream.position_at(time_ms))   # replay
    c.lag_records, c.lag_seconds, c.dropped
    await stream.drop(name)                        # forget a consumer and its cursor

    records, upto = await stream.read(after, limit, filter)  # cursor-less reads
    await stream.wait(after, timeout)
    stream.head, stream.pruned                     # last committed seq; all <= pruned are gone

Consumers that follow the head (the noti fan-out, ``push.fanout``) also get each
commit's records from memory right after the commit: ``stream.tails.append(fn)``,
``fn([(seq, at, doc), ...])`` on the loop, in commit order, before the writers' futures
resolve.

Producers: the pipeline calls ``stream.on_batch(result, origin)`` before its write (the
request's records go into ``WriteBatch.stream``); the online tracker and the file
records ask ``online_rows`` / ``file_rows`` for the records to write with their change.
The store (``store/sqlite/stream.py``) assigns seqs in its writer thread and calls the
stream after each commit, which wakes every waiter.

Delivery is at-least-once: a consumer that crashes between delivering and ``commit``
reads those records again. Order is commit order, so per device the order of its data.
"""

from .outbound import Consumer, Stream
from .records import KINDS, Filter, Record, Retention

__all__ = ["KINDS", "Consumer", "Filter", "Record", "Retention", "Stream"]
