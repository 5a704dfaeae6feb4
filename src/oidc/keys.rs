//! RS256 signing keys: made with `rsa`, used with `ring`, published as JWKs.
//!
//! RS256 rather than ES256 because every cloud's workload identity federation takes it
//! (Microsoft Entra's federated credentials take only RS256).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

/// RSA modulus size: what GitHub Actions' and Entra's issuers use.
const BITS: usize = 2048;

/// A new key: its id (the RFC 7638 thumbprint of its public key), its private key
/// (PKCS#8 DER, base64) and its public JWK (JSON text).
pub(super) struct NewKey {
    pub kid: String,
    pub private_key: String,
    pub public_jwk: String,
}

/// Makes a key. Slow (tens of milliseconds to seconds): call it on a blocking thread.
pub(super) fn generate() -> Result<NewKey, String> {
    let mut rng = rand::rngs::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, BITS).map_err(|e| format!("RSA key: {e}"))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| format!("RSA key encoding: {e}"))?;
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    // RFC 7638: the members kty, n, e in lexicographic order, no white space.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e,
    });
    Ok(NewKey {
        kid,
        private_key: STANDARD.encode(der.as_bytes()),
        public_jwk: jwk.to_string(),
    })
}

/// A key ready to sign.
pub(super) struct LoadedKey {
    pub kid: String,
    pair: RsaKeyPair,
}

impl LoadedKey {
    pub(super) fn load(kid: &str, private_key: &str) -> Result<LoadedKey, String> {
        let der = STANDARD
            .decode(private_key)
            .map_err(|e| format!("signing key {kid}: not base64: {e}"))?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("signing key {kid}: not a usable RSA key: {e}"))?;
        Ok(LoadedKey {
            kid: kid.to_string(),
            pair,
        })
    }

    /// A compact JWS (`header.payload.signature`) of `claims`, signed RS256.
    pub(super) fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let mut jws = URL_SAFE_NO_PAD.encode(header.to_string());
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                jws.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing failed".to_string())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_key_signs_what_its_jwk_verifies() {
        let key = generate().expect("key");
        let loaded = LoadedKey::load(&key.kid, &key.private_key).expect("load");
        let jws = loaded.sign(&serde_json::json!({"sub": "x"})).expect("sign");
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk).expect("jwk");
        let (n, e) = (jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap());
        let public = ring::signature::RsaPublicKeyComponents {
            n: URL_SAFE_NO_PAD.decode(n).unwrap(),
            e: URL_SAFE_NO_PAD.decode(e).unwrap(),
        };
        let (signed, sig) = jws.rsplit_once('.').unwrap();
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).unwrap(),
            )
            .expect("verifies");
        assert_eq!(jwk["kid"], key.kid);
        assert_eq!(key.kid.len(), 43, "a SHA-256 thumbprint, base64url");
    }
}
