-- Lifecycle (issue 13, SPEC 11): expiry, drift and schedules (mirrors
-- migrations/sqlite/0007_lifecycle.sql).

-- Operations: scheduled ones (expire, stop, start, reconcile) beside deploy and delete,
-- and a `cause` telling apart two runs of the same kind at the same commit (the stop of
-- Monday and the stop of Tuesday): '' for a merge's, else what set it off.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('deploy', 'delete', 'expire', 'stop', 'start', 'reconcile'));
ALTER TABLE operations ADD COLUMN cause TEXT NOT NULL DEFAULT '';
ALTER TABLE operations DROP CONSTRAINT operations_repo_merge_sha_env_name_kind_attempt_key;
ALTER TABLE operations ADD CONSTRAINT operations_unique_run
    UNIQUE (repo, merge_sha, env_name, kind, cause, attempt);

-- The inventory: 'stopped' (a schedule stopped it), and the last drift check.
ALTER TABLE environments DROP CONSTRAINT environments_state_check;
ALTER TABLE environments ADD CONSTRAINT environments_state_check
    CHECK (state IN ('provisioning', 'ready', 'failed', 'deleting', 'deleted', 'stopped'));
-- NULL never checked, else 'in_sync', 'drifted' or 'unknown'.
ALTER TABLE environments ADD COLUMN drift TEXT
    CHECK (drift IN ('in_sync', 'drifted', 'unknown'));
ALTER TABLE environments ADD COLUMN drift_summary TEXT NOT NULL DEFAULT '';
ALTER TABLE environments ADD COLUMN drift_checked_at BIGINT;
-- The GitHub issue that tells of the drift, while one is open.
ALTER TABLE environments ADD COLUMN drift_issue BIGINT;

-- Timers: what falls due for an environment, by the scheduler's clock (Unix ms). One per
-- (environment, kind). `cause` says what it is for: setting a timer again for the same
-- cause keeps it as it is, so a timer that fired (due_at NULL) is not revived.
CREATE TABLE timers (
    repo        TEXT    NOT NULL,
    env_name    TEXT    NOT NULL,
    kind        TEXT    NOT NULL
                CHECK (kind IN ('warn', 'expire', 'stop', 'start', 'drift', 'reconcile')),
    due_at      BIGINT,
    cause       TEXT    NOT NULL,
    PRIMARY KEY (repo, env_name, kind)
);
CREATE INDEX timers_due ON timers (due_at) WHERE due_at IS NOT NULL;
