//! The OpenID Connect issuer's signing keys (SPEC 13), shared by every replica.
//!
//! Times are the caller's (Paved's clock, which tests move), not the database's: a key's
//! age decides when the next one is made, and the lifecycle's clock is the one tests move.

use super::StoreError;
use async_trait::async_trait;

/// One signing key as stored. `private_key` is the PKCS#8 DER of the key, base64.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub slot: i64,
    pub kid: String,
    pub private_key: String,
    /// The public key as a JWK (JSON text), as the JWKS publishes it.
    pub public_jwk: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// From when it signs (milliseconds since the epoch).
    pub signs_from: i64,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("slot", &self.slot)
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Every key, oldest slot first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError>;
    /// Adds `key` in its slot; `false` when another replica filled that slot first.
    async fn add_signing_key(&self, key: SigningKeyRow) -> Result<bool, StoreError>;
    /// Removes the keys in `slots` (retired: every token they signed has expired).
    async fn remove_signing_keys(&self, slots: &[i64]) -> Result<(), StoreError>;
}

pub(super) const ALL: &str = "SELECT slot, kid, private_key, public_jwk, created_at, \
     signs_from FROM oidc_keys ORDER BY slot";
pub(super) const ADD: &str = "INSERT INTO oidc_keys \
     (slot, kid, private_key, public_jwk, created_at, signs_from) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
pub(super) const REMOVE: &str = "DELETE FROM oidc_keys WHERE slot = $1";

/// [`KeyStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_key_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::KeyStore for $store {
            async fn signing_keys(
                &self,
            ) -> Result<Vec<$crate::store::SigningKeyRow>, $crate::store::StoreError> {
                let q = $sql($crate::store::keys::ALL);
                let rows: Vec<(i64, String, String, String, i64, i64)> =
                    sqlx::query_as(&q).fetch_all(self.reader()).await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(slot, kid, private_key, public_jwk, created_at, signs_from)| {
                            $crate::store::SigningKeyRow {
                                slot,
                                kid,
                                private_key,
                                public_jwk,
                                created_at,
                                signs_from,
                            }
                        },
                    )
                    .collect())
            }

            async fn add_signing_key(
                &self,
                key: $crate::store::SigningKeyRow,
            ) -> Result<bool, $crate::store::StoreError> {
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::keys::ADD);
                        let done = sqlx::query(&q)
                            .bind(key.slot)
                            .bind(&key.kid)
                            .bind(&key.private_key)
                            .bind(&key.public_jwk)
                            .bind(key.created_at)
                            .bind(key.signs_from)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn remove_signing_keys(
                &self,
                slots: &[i64],
            ) -> Result<(), $crate::store::StoreError> {
                let slots = slots.to_vec();
                self.write(move |conn| {
                    Box::pin(async move {
                        for slot in slots {
                            let q = $sql($crate::store::keys::REMOVE);
                            sqlx::query(&q).bind(slot).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                })
                .await
            }
        }
    };
}
pub(super) use impl_key_store;
