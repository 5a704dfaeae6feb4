-- Paved, PostgreSQL schema 2: provisioning (mirrors migrations/sqlite/0002_provisioning.sql).
-- Timestamps are Unix milliseconds (UTC) in BIGINT columns; JSON values are TEXT, as in
-- SQLite, so they read back exactly as written.

-- The inventory: one row per environment, kept after it is deleted (state 'deleted') so
-- the history stays visible. Names are unique per repository.
CREATE TABLE environments (
    repo            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    team            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    env_type        TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('provisioning', 'ready', 'failed', 'deleting', 'deleted')),
    -- Parameters of the last deploy (JSON object).
    parameters      TEXT    NOT NULL DEFAULT '{}',
    -- Outputs of the last successful deploy (JSON object), sensitive ones included: never
    -- shown without filtering them out.
    outputs         TEXT    NOT NULL DEFAULT '{}',
    -- operations.id of the last operation on this environment.
    last_operation  BIGINT,
    updated_at      BIGINT  NOT NULL,
    -- The environment's ADE_STORAGE folder as a tar archive, kept between operations so
    -- any replica can run the next one.
    storage         BYTEA,
    PRIMARY KEY (repo, name)
);

-- One deploy or delete of one environment for one merge. (repo, merge_sha, env_name,
-- kind, attempt) is unique: it is what makes a redelivered merge a no-op.
CREATE TABLE operations (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo            TEXT    NOT NULL,
    env_name        TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('deploy', 'delete')),
    merge_sha       TEXT    NOT NULL,
    pr              BIGINT  NOT NULL,
    -- 1 for the first try; an interrupted operation is retried as attempt + 1.
    attempt         BIGINT  NOT NULL,
    delivery_id     TEXT    NOT NULL,
    team            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    env_type        TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    manifest_path   TEXT    NOT NULL,
    parameters      TEXT    NOT NULL,
    requester       TEXT    NOT NULL,
    merger          TEXT    NOT NULL,
    -- JSON array of logins.
    approvers       TEXT    NOT NULL,
    -- The commit governance (platform.yaml, policies) was read at.
    governance_sha  TEXT    NOT NULL,
    -- JSON array of check verdicts at merge time.
    checks          TEXT    NOT NULL,
    -- 'refused' rows are recorded final at once: they say an operation will not run.
    state           TEXT    NOT NULL
                    CHECK (state IN ('planned', 'running', 'succeeded', 'failed',
                                     'interrupted', 'refused')),
    -- The GitHub deployment made for it.
    deployment_id   BIGINT,
    -- Process (and process group) id of the running script, on the replica running it.
    pid             BIGINT,
    started_at      BIGINT,
    finished_at     BIGINT,
    -- Why it was refused, failed or interrupted.
    error           TEXT,
    -- Capped, secret-redacted output of the script.
    log             TEXT    NOT NULL DEFAULT '',
    -- Outputs the run wrote (JSON object), sensitive ones included.
    outputs         TEXT    NOT NULL DEFAULT '{}',
    -- Bit set of the reports made once it finished (1: deployment status, 2: git note).
    reported        BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    UNIQUE (repo, merge_sha, env_name, kind, attempt)
);
-- An environment's history, newest first. (Operations of a merge use the UNIQUE index.)
CREATE INDEX operations_by_env ON operations (repo, env_name, id);
-- Start-up finds the operations a dead replica left running.
CREATE INDEX operations_running ON operations (id) WHERE state = 'running';

-- Leases: who may run an operation on an environment now. A lease that ran out
-- (expires_at <= now) may be taken over by anyone.
CREATE TABLE env_locks (
    repo        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (repo, name)
);

-- Merges Paved handled: a push of one of these commits is governed, not a bypass.
CREATE TABLE merges (
    repo        TEXT    NOT NULL,
    merge_sha   TEXT    NOT NULL,
    pr          BIGINT  NOT NULL,
    recorded_at BIGINT  NOT NULL,
    PRIMARY KEY (repo, merge_sha)
);
