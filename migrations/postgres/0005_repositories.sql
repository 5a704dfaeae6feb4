-- Repositories Paved has handled a delivery for (issue 11): what the API needs to act on
-- one without a webhook in hand: its default branch (where roles and governance are read),
-- the URL Git fetches it from, and the GitHub App installation that may act on it.
CREATE TABLE repositories (
    repo TEXT PRIMARY KEY,
    default_branch TEXT NOT NULL,
    clone_url TEXT NOT NULL,
    installation_id BIGINT,
    updated_at BIGINT NOT NULL
);
