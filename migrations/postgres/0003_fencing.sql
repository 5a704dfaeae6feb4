-- Fencing (issue 9): a lock's epoch goes up each time the lock changes hands, and an
-- operation records the holder and epoch it was started under. An operation's results are
-- written only while that holder still holds the lock at that epoch, so a replica that lost
-- its lock (paused, partitioned) can never overwrite what the new holder did.
ALTER TABLE env_locks ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN holder TEXT;
ALTER TABLE operations ADD COLUMN lease_epoch BIGINT;
