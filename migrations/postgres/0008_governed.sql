-- Governed input (issue 19, SPEC 12): what runs is what was governed.

-- Each environment's last governed change: the merge commit its manifest is read at
-- (`governed_sha`), and the commit its definition is read at (`code_sha`: the same, or
-- the first parent for a pull request from a fork). Scheduled and requested work reads
-- both there, never at the default branch's tip. NULL for rows from before this migration:
-- they fall back to the commit of their last operation.
ALTER TABLE environments ADD COLUMN governed_sha TEXT;
ALTER TABLE environments ADD COLUMN code_sha TEXT;

-- Paths under environments/, .paved/, catalog/ or workflows/ that a push to the default
-- branch changed without a governed pull request. Nothing they changed runs until a
-- governed pull request changes each of them again (which removes its row).
CREATE TABLE ungoverned_paths (
    repo        TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    commit_sha  TEXT    NOT NULL,
    pusher      TEXT    NOT NULL,
    PRIMARY KEY (repo, path)
);

-- The commit Paved made for a request (or an expiry's clean-up) on its branch: the
-- requester counts as the pull request's author only while its head is that commit.
ALTER TABLE requests ADD COLUMN head_sha TEXT;

-- An environment is (repository, name, generation) (SPEC 12): a deploy after a successful
-- delete starts the next generation, and `generation_since` is the id of its first
-- operation. The environment's operations and logs are those of its current generation
-- and team. NULL for rows from before: all their operations.
ALTER TABLE environments ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE environments ADD COLUMN generation_since BIGINT;
