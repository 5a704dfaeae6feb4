-- Imports from other tools (SPEC 15, `paved import ade`): the pull request an import opened
-- (at most one open per repository and source), and the environments it adopts at merge
-- with their outputs as the source reported them (sensitive ones too: they stay here, never
-- in Git). `adopted_at` is set once, so no environment is adopted twice.
CREATE TABLE imports (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('deploy', 'delete', 'expire', 'stop', 'start', 'reconcile', 'adopt'));
