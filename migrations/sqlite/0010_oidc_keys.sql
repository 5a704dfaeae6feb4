-- Paved as an OpenID Connect issuer (SPEC 13): the keys that sign each run's token. Kept
-- here so every replica signs with, and publishes, the same set. `slot` numbers the keys in
-- the order they take over; two replicas rotating at once both try the next slot and one
-- wins. A key signs from `signs_from` (a minute after it is made, so every replica's
-- published set holds it before any token it signed is seen), and is published until the
-- tokens it signed have expired.
CREATE TABLE oidc_keys (
    slot        BIGINT  PRIMARY KEY,
    kid         TEXT    NOT NULL UNIQUE,
    private_key TEXT    NOT NULL,
    public_jwk  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    signs_from  BIGINT  NOT NULL
);
