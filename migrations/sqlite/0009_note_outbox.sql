-- Crash safety (issue 20): an operation's outcome never waits on its audit note. The note
-- is queued here in the same transaction that marks the operations reported, and pushed
-- later, retried with backoff until it lands (a note already holding the same text counts
-- as landed, so a push repeated after a crash adds nothing).
CREATE TABLE note_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repo            TEXT    NOT NULL,
    clone_url       TEXT    NOT NULL,
    installation    BIGINT,
    commit_sha      TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         BIGINT  NOT NULL,
    claimed_by      TEXT,
    claimed_until   BIGINT,
    landed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX note_outbox_pending ON note_outbox (next_at) WHERE landed_at IS NULL;

-- Which operations' records a queued note holds (what the API calls `note: pending`).
CREATE TABLE note_outbox_operations (
    note_id         BIGINT  NOT NULL,
    operation_id    BIGINT  NOT NULL,
    PRIMARY KEY (operation_id, note_id)
);
