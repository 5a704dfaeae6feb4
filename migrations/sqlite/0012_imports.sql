-- Imports from other tools (SPEC 15, `paved import ade`): the pull request an import opened
-- (at most one open per repository and source), and the environments it adopts at merge
-- with their outputs as the source reported them (sensitive ones too: they stay here, never
-- in Git). `adopted_at` is set once, so no environment is adopted twice.
CREATE TABLE imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    branch      TEXT    NOT NULL,
    head_sha    TEXT,
    pr_number   BIGINT,
    pr_url      TEXT,
    open        BIGINT  NOT NULL DEFAULT 1,
    created_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX imports_one_open ON imports (repo, source) WHERE open = 1;
CREATE INDEX imports_by_pr ON imports (repo, pr_number);

CREATE TABLE import_environments (
    import_id      BIGINT  NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    env_name       TEXT    NOT NULL,
    manifest_path  TEXT    NOT NULL,
    source_uri     TEXT    NOT NULL,
    outputs        TEXT    NOT NULL,
    adopted_at     BIGINT,
    PRIMARY KEY (import_id, env_name)
);

-- Operations: `adopt` (an environment an import brings, taken as it is; no script runs).
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with its rows,
-- ids and indexes (as 0007 did).
CREATE TABLE operations_v12 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repo            TEXT    NOT NULL,
    env_name        TEXT    NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('deploy', 'delete', 'expire', 'stop', 'start', 'reconcile', 'adopt')),
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
INSERT INTO operations_v12 (id, repo, env_name, kind, merge_sha, pr, attempt, delivery_id, team, owner, env_type, definition, manifest_path, parameters, requester, merger, approvers, governance_sha, checks, state, deployment_id, pid, started_at, finished_at, error, log, outputs, reported, created_at, holder, lease_epoch, cause)
SELECT id, repo, env_name, kind, merge_sha, pr, attempt, delivery_id, team, owner, env_type, definition, manifest_path, parameters, requester, merger, approvers, governance_sha, checks, state, deployment_id, pid, started_at, finished_at, error, log, outputs, reported, created_at, holder, lease_epoch, cause FROM operations;
DROP TABLE operations;
ALTER TABLE operations_v12 RENAME TO operations;
CREATE INDEX operations_by_env ON operations (repo, env_name, id);
CREATE INDEX operations_running ON operations (id) WHERE state = 'running';
CREATE INDEX operations_with_log ON operations (id) WHERE log <> '';
