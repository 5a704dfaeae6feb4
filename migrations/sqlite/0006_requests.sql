-- Self-service requests (issue 11): each becomes a branch, a commit and a pull request,
-- governed like any other. One open request per environment: a second gets 409.
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    action TEXT NOT NULL,
    env_name TEXT NOT NULL,
    team TEXT NOT NULL,
    requester TEXT NOT NULL,
    branch TEXT NOT NULL,
    manifest_path TEXT NOT NULL,
    pr_number BIGINT,
    pr_url TEXT,
    open BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX requests_one_open_per_environment ON requests (repo, env_name) WHERE open;
CREATE INDEX requests_by_pr ON requests (repo, pr_number);
