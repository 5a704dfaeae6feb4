//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the exact body bytes, keyed with a
//! webhook secret, compared in constant time. Several secrets may be accepted at once so
//! a secret can be rotated without dropping deliveries.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The header GitHub signs deliveries with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// A webhook secret. Its `Debug` and `Display` print `[redacted]`, so it cannot leak
/// through logs or error messages. An empty secret never verifies anything (an HMAC
/// keyed with nothing authenticates nothing); deserializing one is an error.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct WebhookSecret(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret must not be empty")]
pub struct EmptySecret;

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        WebhookSecret(secret.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret itself, for computing a signature or storing it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        match HmacSha256::new_from_slice(self.0.as_bytes()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }
}

impl TryFrom<String> for WebhookSecret {
    type Error = EmptySecret;
    fn try_from(s: String) -> Result<Self, EmptySecret> {
        if s.is_empty() {
            Err(EmptySecret)
        } else {
            Ok(WebhookSecret(s))
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    #[error("signature does not match any configured webhook secret")]
    Mismatch,
    #[error("no webhook secret is configured")]
    NoSecret,
}

/// Checks `header` (the value of `X-Hub-Signature-256`, `sha256=<hex>`) against the HMAC
/// of `body` under each of `secrets`; succeeds if any matches. The comparison is constant
/// time (`hmac`'s `verify_slice`). Empty secrets are skipped.
pub fn verify(
    secrets: &[WebhookSecret],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    if secrets.iter().all(WebhookSecret::is_empty) {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut mac = secret.mac();
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value GitHub would send for `body` (for tests, the
/// emulator and benchmarks).
pub fn sign(secret: &WebhookSecret, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github")
    }

    fn vector() -> serde_json::Value {
        let text = std::fs::read_to_string(fixtures().join("signature-test-vector.json"))
            .expect("signature-test-vector.json");
        serde_json::from_str(&text).expect("vector JSON")
    }

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::new(s)
    }

    #[test]
    fn githubs_documented_vector() {
        let v = vector();
        let s = secret(v["secret"].as_str().expect("secret"));
        let payload = v["payload"].as_str().expect("payload").as_bytes();
        let expected = v["signature_256"].as_str().expect("signature");
        assert_eq!(s.expose(), "It's a Secret to Everybody");
        assert!(expected.starts_with("sha256=757107ea"));
        assert_eq!(sign(&s, payload), expected);
        assert_eq!(
            verify(std::slice::from_ref(&s), payload, Some(expected)),
            Ok(())
        );
        assert_eq!(
            verify(&[s], b"Hello, World?", Some(expected)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn derived_vectors_over_fixture_files() {
        let v = vector();
        let derived = &v["derived_vectors"];
        let s = secret(derived["secret"].as_str().expect("secret"));
        let vectors = derived["vectors"].as_array().expect("vectors");
        assert!(!vectors.is_empty());
        for case in vectors {
            let file = case["file"].as_str().expect("file");
            let body = std::fs::read(fixtures().join(file)).expect("fixture file");
            assert_eq!(
                body.len() as u64,
                case["bytes"].as_u64().expect("bytes"),
                "{file}"
            );
            let expected = case["x_hub_signature_256"].as_str().expect("sig");
            assert_eq!(sign(&s, &body), expected, "{file}");
            assert_eq!(
                verify(std::slice::from_ref(&s), &body, Some(expected)),
                Ok(()),
                "{file}"
            );
        }
    }

    #[test]
    fn any_configured_secret_is_accepted() {
        let old = secret("old-secret");
        let new = secret("new-secret");
        let body = b"{\"zen\":\"Keep it logically awesome.\"}";
        let sig = sign(&new, body);
        assert_eq!(
            verify(&[old.clone(), new.clone()], body, Some(&sig)),
            Ok(())
        );
        assert_eq!(
            verify(&[old], body, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&[], body, Some(&sig)), Err(SignatureError::NoSecret));
    }

    #[test]
    fn malformed_and_missing_headers() {
        let s = [secret("k")];
        let body = b"x";
        assert_eq!(verify(&s, body, None), Err(SignatureError::Missing));
        for bad in [
            "",
            "sha256=",
            "sha1=4a5e000449616d9730ae6bde19667e4a2a47f1c4",
            "sha256=zz",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(
                verify(&s, body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = secret("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", vec![s]), "[[redacted]]");
        assert!(WebhookSecret::try_from(String::new()).is_err());
        let sig = sign(&secret(""), b"x");
        assert_eq!(
            verify(&[secret("")], b"x", Some(&sig)),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(&[secret(""), secret("k")], b"x", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
    }
}
