-- Retention (issue 10): finished operations' logs are emptied after `store.retention`.
-- Operations are kept forever, so the pruning query finds the ones still holding a log
-- through this partial index instead of scanning them all.
CREATE INDEX operations_with_log ON operations (id) WHERE log <> '';
