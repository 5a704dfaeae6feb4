-- Paved, SQLite schema 1.
-- Timestamps are Unix milliseconds (UTC) in INTEGER columns.

-- Webhook deliveries, stored before they are acknowledged.
CREATE TABLE deliveries (
    -- Arrival order (the rowid): deliveries of one queue key are processed in this order.
    seq             INTEGER PRIMARY KEY,
    -- X-GitHub-Delivery; the key that makes a redelivery a no-op.
    id              TEXT    NOT NULL UNIQUE,
    event           TEXT    NOT NULL,
    action          TEXT,
    queue_key       TEXT    NOT NULL,
    -- The exact bytes GitHub sent, as one zstd frame; body_len is their length.
    body            BLOB    NOT NULL,
    body_len        INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    received_at     INTEGER NOT NULL
);

-- The claim query walks pending deliveries in arrival order...
CREATE INDEX deliveries_pending ON deliveries (seq) WHERE state = 'pending';
-- ...and asks, per queue key, whether one is running...
CREATE INDEX deliveries_running ON deliveries (queue_key) WHERE state = 'running';
-- ...or an earlier one is still waiting.
CREATE INDEX deliveries_active_by_key ON deliveries (queue_key, seq)
    WHERE state IN ('pending', 'running');

-- The one summary comment Paved keeps on each pull request.
CREATE TABLE pr_comments (
    repo        TEXT    NOT NULL,
    pr          INTEGER NOT NULL,
    comment_id  INTEGER NOT NULL,
    PRIMARY KEY (repo, pr)
) WITHOUT ROWID;

-- One evaluation of a pull request head (what a status's target_url points at).
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT    NOT NULL,
    pr          INTEGER NOT NULL,
    head_sha    TEXT    NOT NULL,
    base_sha    TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    report      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX runs_by_pr ON runs (repo, pr, id);
