//! The OpenID Connect issuer's signing keys (SPEC 13), shared by every replica.

use super::*;
use paved::store::SigningKeyRow;

fn key(slot: i64, signs_from: i64) -> SigningKeyRow {
    SigningKeyRow {
        slot,
        kid: format!("kid-{slot}-{signs_from}"),
        private_key: format!("private-{slot}"),
        public_jwk: format!("{{\"kid\":\"kid-{slot}\"}}"),
        created_at: signs_from - 60_000,
        signs_from,
    }
}

/// Keys come back oldest slot first, as written; a slot taken by another replica is not
/// overwritten (the second writer learns it lost); removed keys are gone.
pub(crate) async fn signing_keys(b: &Backend) {
    let store = b.open().await;
    assert!(store.signing_keys().await.unwrap().is_empty());
    assert!(store.add_signing_key(key(2, 2_000_000)).await.unwrap());
    assert!(store.add_signing_key(key(1, 1_000_000)).await.unwrap());
    // Another replica rotating at the same moment: its key for slot 2 does not replace it.
    assert!(!store.add_signing_key(key(2, 2_500_000)).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys, vec![key(1, 1_000_000), key(2, 2_000_000)]);
    store.remove_signing_keys(&[1]).await.unwrap();
    assert_eq!(store.signing_keys().await.unwrap(), vec![key(2, 2_000_000)]);
}
