"""Versioned schema migrations; index i brings the database to ``user_version`` i+1.

Never edit a released migration: append a new one.
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: registry (generic objects + devices) and time series
    """
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        scope TEXT NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    CREATE INDEX objects_scope ON objects (kind, scope, key);

    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        asset_id TEXT NOT NULL UNIQUE,
        org_id TEXT NOT NULL,
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        doc BLOB NOT NULL,
        UNIQUE (product_key, device_key)
    );

    CREATE TABLE point_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);

    CREATE TABLE samples (
        device INTEGER NOT NULL,
        point INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value,
        quality INTEGER,
        source INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device, ts, point)
    ) WITHOUT ROWID;

    CREATE TABLE latest (
        device INTEGER NOT NULL,
        point INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value,
        quality INTEGER,
        source INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device, point)
    ) WITHOUT ROWID;

    CREATE TABLE attributes (
        device INTEGER NOT NULL,
        name TEXT NOT NULL,
        value,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (device, name)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        device INTEGER NOT NULL,
        event TEXT NOT NULL,
        ts INTEGER NOT NULL,
        outputs BLOB NOT NULL,
        source INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device, event, ts)
    ) WITHOUT ROWID;

    CREATE TABLE channel_log (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX channel_log_time ON channel_log (channel, ts);
    CREATE INDEX channel_log_age ON channel_log (ts)
    """,
    # 2: enterprise push queues (one per enterprise, ordered by seq) and the last
    # fault/alert state of each flagged point of each device (by assetId)
    """
    CREATE TABLE push_queue (
        enterprise TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (enterprise, seq)
    ) WITHOUT ROWID;

    CREATE TABLE push_fault_state (
        asset_id TEXT NOT NULL,
        point TEXT NOT NULL,
        value INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (asset_id, point)
    ) WITHOUT ROWID
    """,
    # 3: samples in chunks: one row per run of samples of one (device, point), columnar
    # (see chunks.py); the chunks of one (device, point) never overlap in time, so the
    # key (device, point, t1) orders them by time too. store_meta (the store's own
    # bookkeeping) holds the progress of moving the rows of the old samples table into
    # chunks (series.py), which runs at start in steps of its own transactions and drops
    # the old table when done.
    """
    CREATE TABLE chunks (
        device INTEGER NOT NULL,
        point INTEGER NOT NULL,
        t1 INTEGER NOT NULL,
        t0 INTEGER NOT NULL,
        n INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        src INTEGER NOT NULL,
        vmin, vmax, vsum, vfirst, vlast,
        tsb BLOB,
        vb BLOB NOT NULL,
        qb BLOB,
        sb BLOB,
        PRIMARY KEY (device, point, t1)
    ) WITHOUT ROWID;

    CREATE TABLE store_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID
    """,
    # 4: the outbound stream (store/sqlite/stream.py): one ordered log of what was
    # committed, the durable cursors of its consumers, and the stream's high-water mark
    """
    CREATE TABLE stream (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        org TEXT NOT NULL,
        kind TEXT NOT NULL,
        doc BLOB NOT NULL
    );

    CREATE TABLE stream_cursors (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE stream_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    # 5: the audit log of changes made through the admin API (user NULL: the admin token)
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        user TEXT,
        org TEXT,
        doc BLOB NOT NULL
    );
    CREATE INDEX audit_time ON audit (ts);
    CREATE INDEX audit_org ON audit (org, id);
    CREATE INDEX audit_user ON audit (user, id)
    """,
    # 6: one table of the store's own bookkeeping: the stream's high-water mark moves
    # from stream_meta into store_meta (key 'stream_pruned')
    """
    INSERT INTO store_meta(key, value) SELECT 'stream_' || key, value FROM stream_meta;
    DROP TABLE stream_meta
    """,
    # 7: the stream in blocks: a row holds the n records (seqs seq..seq+n-1) of one
    # organization and kind appended by one write; a row of one record keeps its JSON as
    # it is (every row written before), a block of more a msgpack array of their JSON
    """
    ALTER TABLE stream ADD COLUMN n INTEGER NOT NULL DEFAULT 1
    """,
    # 8: short runs (live data: a sample or a few per request and point) as plain rows,
    # one per (device, point, time), until the background fold moves them into chunks
    # (series.py). value and quality natively where SQLite holds them exactly (int64,
    # finite float but -0.0, text, NULL), else msgpack in a BLOB. A plain row is always
    # newer than a chunk's sample of the same time: reads let it win.
    """
    CREATE TABLE live (
        device INTEGER NOT NULL,
        point INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value,
        quality,
        source INTEGER NOT NULL,
        PRIMARY KEY (device, point, ts)
    ) WITHOUT ROWID
    """,
    # 9: chunks written in arrival order first (series.py): a B-tree keyed by (device,
    # point, t1) dirties a page per point a commit appends to once each point's chunks
    # fill leaves of their own, so new chunk rows go to chunks_recent (rowid order, its
    # small index the only per-point pages) and the background fold moves them into the
    # keyed table in key order, many per page. The view chunks is both: the chunks of
    # one (device, point) never overlap in time across the two tables.
    """
    ALTER TABLE chunks RENAME TO chunks_sorted;

    CREATE TABLE chunks_recent (
        id INTEGER PRIMARY KEY,
        device INTEGER NOT NULL,
        point INTEGER NOT NULL,
        t1 INTEGER NOT NULL,
        t0 INTEGER NOT NULL,
        n INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        src INTEGER NOT NULL,
        vmin, vmax, vsum, vfirst, vlast,
        tsb BLOB,
        vb BLOB NOT NULL,
        qb BLOB,
        sb BLOB
    );
    CREATE INDEX chunks_recent_key ON chunks_recent (device, point, t1);

    CREATE VIEW chunks AS
        SELECT device, point, t1, t0, n, kind, src, vmin, vmax, vsum, vfirst, vlast,
               tsb, vb, qb, sb FROM chunks_sorted
        UNION ALL
        SELECT device, point, t1, t0, n, kind, src, vmin, vmax, vsum, vfirst, vlast,
               tsb, vb, qb, sb FROM chunks_recent
    """,
)
