//! Signing webhook bodies, per [Standard Webhooks](https://www.standardwebhooks.com/),
//! with a key per destination.
//!
//! The headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`.
//!
//! The key is not the master secret (`WEBHOOK_SECRET`) but one derived from
//! it for the destination's [`Origin`]: `HMAC-SHA256(master key, "origin:" +
//! origin)`. Every receiver then holds only its own key, and cannot forge
//! a notification to another. A receiver gets its key, written as a
//! Standard Webhooks secret (`whsec_<base64>`), from the producer's admin
//! endpoint `GET /webhooks/signing-key?origin=`. The derivation lives here
//! only: the consumer signs with it, the producer hands it out.
//!
//! A master secret written `whsec_<base64>` is base64-decoded first, as the
//! Standard Webhooks libraries do; any other value is used as its bytes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::webhook::origin::Origin;

/// Header carrying the event id (receivers deduplicate on it).
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the Unix time of the attempt.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying `v1,<signature>` (two, space-separated, during a rotation).
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// One HMAC-SHA256 key. It never prints.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

/// Why a webhook secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `whsec_` followed by something that is not base64.
    #[error("whsec_ secret is not base64: {0}")]
    NotBase64(#[from] base64::DecodeError),
    /// No key bytes.
    #[error("the secret is empty")]
    Empty,
}

impl Signer {
    /// A signer for `secret` (`whsec_<base64>` or plain text).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => BASE64.decode(b64)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// The `v1,<base64>` signature of one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mac = hmac(
            &self.key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        format!("v1,{}", BASE64.encode(mac))
    }

    /// The key of `origin` under this master key.
    pub fn for_origin(&self, origin: &Origin) -> Signer {
        Signer {
            key: hmac(&self.key, &[b"origin:", origin.as_str().as_bytes()]),
        }
    }

    /// The key written as a Standard Webhooks secret, `whsec_<base64>`:
    /// what a receiver configures. Only ever called on a derived key.
    pub fn secret(&self) -> String {
        format!("whsec_{}", BASE64.encode(&self.key))
    }
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail; an empty result
    // would only make every signature wrong, never a panic.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The master secrets: `WEBHOOK_SECRET` and, while receivers move to the
/// keys of a new one, `WEBHOOK_PREVIOUS_SECRET`.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    current: Signer,
    previous: Option<Signer>,
}

/// One destination's keys, derived from the [`SigningKeys`].
#[derive(Debug, Clone)]
pub struct DestinationKeys {
    /// The key of the current master secret.
    pub current: Signer,
    /// The key of the previous one, during a rotation.
    pub previous: Option<Signer>,
}

impl SigningKeys {
    /// The master secrets, each `whsec_<base64>` or text.
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, SecretError> {
        Ok(Self {
            current: Signer::new(current)?,
            previous: previous.map(Signer::new).transpose()?,
        })
    }

    /// The keys of the destination `origin`.
    pub fn for_origin(&self, origin: &Origin) -> DestinationKeys {
        DestinationKeys {
            current: self.current.for_origin(origin),
            previous: self.previous.as_ref().map(|p| p.for_origin(origin)),
        }
    }
}

impl DestinationKeys {
    /// The `webhook-signature` value of one attempt: `v1,<current>`, and
    /// during a rotation ` v1,<previous>` after it, so that a receiver that
    /// holds either key verifies the request (Standard Webhooks checks
    /// each signature of the header).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut header = self.current.sign(id, timestamp, body);
        if let Some(previous) = &self.previous {
            header.push(' ');
            header.push_str(&previous.sign(id, timestamp, body));
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's test vectors.
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(Signer::new("").is_err());
        assert!(Signer::new("whsec_").is_err());
        assert!(format!("{signer:?}").contains("***"));
    }

    #[test]
    fn each_origin_has_its_own_key_and_a_derived_secret_signs_alike() {
        let keys = SigningKeys::new("master", None).unwrap();
        let a = Origin::parse("https://a.example").unwrap();
        let b = Origin::parse("https://b.example").unwrap();
        let (ka, kb) = (keys.for_origin(&a), keys.for_origin(&b));
        let sig_a = ka.sign("id", 1, b"{}");
        assert_ne!(sig_a, kb.sign("id", 1, b"{}"));
        assert_ne!(sig_a, Signer::new("master").unwrap().sign("id", 1, b"{}"));
        // The same origin written otherwise is the same key.
        let again = keys.for_origin(&Origin::parse("HTTPS://A.example:443/").unwrap());
        assert_eq!(again.sign("id", 1, b"{}"), sig_a);
        // What a receiver configures signs as the deliverer does.
        let handed_out = Signer::new(&ka.current.secret()).unwrap();
        assert_eq!(handed_out.sign("id", 1, b"{}"), sig_a);
        assert!(!sig_a.contains(' '));
    }

    #[test]
    fn during_a_rotation_both_keys_sign() {
        let keys = SigningKeys::new("new", Some("old")).unwrap();
        let origin = Origin::parse("http://127.0.0.1:9").unwrap();
        let header = keys.for_origin(&origin).sign("id", 7, b"body");
        let new = SigningKeys::new("new", None).unwrap().for_origin(&origin);
        let old = SigningKeys::new("old", None).unwrap().for_origin(&origin);
        assert_eq!(
            header,
            format!(
                "{} {}",
                new.sign("id", 7, b"body"),
                old.sign("id", 7, b"body")
            )
        );
    }
}
