-- Previews on the pull request (SPEC 14). The latest preview set of each pull request (its
-- head, the digest approvals are bound to, the previews as JSON), and the Terraform plan
-- files it made, kept so any replica applies the approved one at merge.
CREATE TABLE previews (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT    NOT NULL,
    pr          BIGINT  NOT NULL,
    head_sha    TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    previews    TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX previews_by_pr ON previews (repo, pr, id);

CREATE TABLE preview_plans (
    preview_id  BIGINT  NOT NULL REFERENCES previews (id) ON DELETE CASCADE,
    path        TEXT    NOT NULL,
    plan        BLOB    NOT NULL,
    PRIMARY KEY (preview_id, path)
);

-- Each approval is bound to the digest of the previews shown when Paved first saw it.
CREATE TABLE review_previews (
    repo        TEXT    NOT NULL,
    review_id   BIGINT  NOT NULL,
    pr          BIGINT  NOT NULL,
    digest      TEXT    NOT NULL,
    PRIMARY KEY (repo, review_id)
);
