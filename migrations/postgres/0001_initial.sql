-- Paved, PostgreSQL schema 1 (mirrors migrations/sqlite/0001_initial.sql).
-- Timestamps are Unix milliseconds (UTC) in BIGINT columns, as in SQLite, so records
-- read the same from either store. They come from the database's clock (paved_now_ms),
-- never from a replica's, so every replica agrees on what "now" and "expired" mean.
-- Every integer is BIGINT: the store reads them all as i64.

-- The database's clock, in Unix milliseconds: the start of the current transaction (one
-- statement, for the store's autocommit statements), so one statement sees one "now".
CREATE FUNCTION paved_now_ms() RETURNS BIGINT
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT $$;

-- Webhook deliveries, stored before they are acknowledged.
CREATE TABLE deliveries (
    -- Arrival order: deliveries of one queue key are processed in this order. Inserts of
    -- one key are serialised (an advisory lock per key), so for one key seq order is
    -- also commit order.
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- X-GitHub-Delivery; the key that makes a redelivery a no-op.
    id              TEXT    NOT NULL UNIQUE,
    event           TEXT    NOT NULL,
    action          TEXT,
    queue_key       TEXT    NOT NULL,
    -- The exact bytes GitHub sent, as one zstd frame; body_len is their length.
    body            BYTEA   NOT NULL,
    body_len        BIGINT  NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    received_at     BIGINT  NOT NULL,
    -- Several replicas share the queue: a running delivery is leased to one of them
    -- (lease_owner, the store instance that claimed it) until lease_until. A running
    -- delivery whose lease ran out belonged to a replica that died: it may be claimed
    -- again. Both are NULL unless the delivery is running.
    lease_owner     TEXT,
    lease_until     BIGINT
);

-- The claim query walks pending and running deliveries in arrival order...
CREATE INDEX deliveries_active ON deliveries (seq) WHERE state IN ('pending', 'running');
-- ...and asks, per queue key, whether one is running...
CREATE INDEX deliveries_running ON deliveries (queue_key) WHERE state = 'running';
-- ...or an earlier one is still waiting.
CREATE INDEX deliveries_active_by_key ON deliveries (queue_key, seq)
    WHERE state IN ('pending', 'running');

-- The one summary comment Paved keeps on each pull request.
CREATE TABLE pr_comments (
    repo        TEXT    NOT NULL,
    pr          BIGINT  NOT NULL,
    comment_id  BIGINT  NOT NULL,
    PRIMARY KEY (repo, pr)
);

-- One evaluation of a pull request head (what a status's target_url points at).
CREATE TABLE runs (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo        TEXT    NOT NULL,
    pr          BIGINT  NOT NULL,
    head_sha    TEXT    NOT NULL,
    base_sha    TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    report      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX runs_by_pr ON runs (repo, pr, id);
