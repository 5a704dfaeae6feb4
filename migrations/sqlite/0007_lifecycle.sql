-- Lifecycle (issue 13, SPEC 11): expiry, drift and schedules.
-- SQLite cannot change a CHECK constraint in place: the two tables whose allowed values
-- grow are rebuilt with their rows, ids and indexes.

-- Operations: scheduled ones (expire, stop, start, reconcile) beside deploy and delete,
-- and a `cause` telling apart two runs of the same kind at the same commit (the stop of
-- Monday and the stop of Tuesday): '' for a merge's, else what set it off.
CREATE TABLE operations_v7 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repo            TEXT    NOT NULL,
    env_name        TEXT    NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('deploy', 'delete', 'expire', 'stop', 'start', 'reconcile')),
    merge_sha       TEXT    NOT NULL,
    pr              INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    delivery_id     TEXT    NOT NULL,
    team            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    env_type        TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    manifest_path   TEXT    NOT NULL,
    parameters      TEXT    NOT NULL,
    requester       TEXT    NOT NULL,
    merger          TEXT    NOT NULL,
    approvers       TEXT    NOT NULL,
    governance_sha  TEXT    NOT NULL,
    checks          TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('planned', 'running', 'succeeded', 'failed',
                                     'interrupted', 'refused')),
    deployment_id   INTEGER,
    pid             INTEGER,
    started_at      INTEGER,
    finished_at     INTEGER,
    error           TEXT,
    log             TEXT    NOT NULL DEFAULT '',
    outputs         TEXT    NOT NULL DEFAULT '{}',
    reported        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    holder          TEXT,
    lease_epoch     INTEGER,
    cause           TEXT    NOT NULL DEFAULT '',
    UNIQUE (repo, merge_sha, env_name, kind, cause, attempt)
);
INSERT INTO operations_v7 (id, repo, env_name, kind, merge_sha, pr, attempt, delivery_id,
    team, owner, env_type, definition, manifest_path, parameters, requester, merger,
    approvers, governance_sha, checks, state, deployment_id, pid, started_at, finished_at,
    error, log, outputs, reported, created_at, holder, lease_epoch)
SELECT id, repo, env_name, kind, merge_sha, pr, attempt, delivery_id,
    team, owner, env_type, definition, manifest_path, parameters, requester, merger,
    approvers, governance_sha, checks, state, deployment_id, pid, started_at, finished_at,
    error, log, outputs, reported, created_at, holder, lease_epoch
FROM operations;
DROP TABLE operations;
ALTER TABLE operations_v7 RENAME TO operations;
CREATE INDEX operations_by_env ON operations (repo, env_name, id);
CREATE INDEX operations_running ON operations (id) WHERE state = 'running';
CREATE INDEX operations_with_log ON operations (id) WHERE log <> '';

-- The inventory: 'stopped' (a schedule stopped it), and the last drift check.
CREATE TABLE environments_v7 (
    repo            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    team            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    env_type        TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('provisioning', 'ready', 'failed', 'deleting', 'deleted',
                                     'stopped')),
    parameters      TEXT    NOT NULL DEFAULT '{}',
    outputs         TEXT    NOT NULL DEFAULT '{}',
    last_operation  INTEGER,
    updated_at      INTEGER NOT NULL,
    storage         BLOB,
    -- The last drift check: NULL never checked, else 'in_sync', 'drifted' or 'unknown'.
    drift           TEXT    CHECK (drift IN ('in_sync', 'drifted', 'unknown')),
    -- What the check printed (capped, redacted).
    drift_summary   TEXT    NOT NULL DEFAULT '',
    drift_checked_at INTEGER,
    -- The GitHub issue that tells of the drift, while one is open.
    drift_issue     INTEGER,
    PRIMARY KEY (repo, name)
);
INSERT INTO environments_v7 (repo, name, team, owner, env_type, definition, state,
    parameters, outputs, last_operation, updated_at, storage)
SELECT repo, name, team, owner, env_type, definition, state,
    parameters, outputs, last_operation, updated_at, storage
FROM environments;
DROP TABLE environments;
ALTER TABLE environments_v7 RENAME TO environments;

-- Timers: what falls due for an environment, by the scheduler's clock (Unix ms). One per
-- (environment, kind). `cause` says what it is for (the `expiresAt` a warning is about,
-- the day a stop is for): setting a timer again for the same cause keeps it as it is, so a
-- timer that fired (due_at NULL) is not revived by the next sync.
CREATE TABLE timers (
    repo        TEXT    NOT NULL,
    env_name    TEXT    NOT NULL,
    kind        TEXT    NOT NULL
                CHECK (kind IN ('warn', 'expire', 'stop', 'start', 'drift', 'reconcile')),
    due_at      INTEGER,
    cause       TEXT    NOT NULL,
    PRIMARY KEY (repo, env_name, kind)
) WITHOUT ROWID;
-- A tick reads only what is due: flat in the number of environments.
CREATE INDEX timers_due ON timers (due_at) WHERE due_at IS NOT NULL;
