//! TLS to RabbitMQ: what an `amqps://` connection trusts and presents.
//!
//! lapin's TLS layer is rustls (no OpenSSL to link); it trusts the system's
//! root certificates (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
//! On top of them:
//!
//! * `AMQP_TLS_CA_FILE`: PEM certificate(s) of a private CA the broker's
//!   certificate is signed by (trusted in addition to the system's roots);
//! * `AMQP_TLS_CERT_FILE` + `AMQP_TLS_KEY_FILE`: a client certificate
//!   chain and its key (PEM), for brokers that require mutual TLS.
//!
//! The files are read and checked once, at startup, with the code lapin
//! runs at each connect, so a wrong path, a file that is not PEM or a key
//! that does not match its certificate is a configuration error naming the
//! variable, not a failure at every reconnect.
//!
//! An `amqps://` node is always spoken to over TLS: an unknown issuer or a
//! certificate for another name fails the connection, never a retry in
//! clear. Setting any of these variables while no node of `AMQP_URL` is
//! `amqps://` is refused, so that a forgotten `s` cannot send the
//! credentials in clear to a broker the operator meant to reach over TLS.

use std::fmt;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig, RustlsConnectorConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::ErrorKind;

/// A TLS setting that cannot work: the variable at fault and why (the
/// settings turn it into their configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct TlsSettingError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl TlsSettingError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// The TLS settings of the AMQP connections. `Debug` shows the file names,
/// never the key.
#[derive(Clone, Default)]
pub struct AmqpTls {
    ca_file: Option<String>,
    cert_file: Option<String>,
    config: OwnedTLSConfig,
}

impl fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key", &self.config.identity.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AmqpTls {
    /// The files `AMQP_TLS_CA_FILE`, `AMQP_TLS_CERT_FILE` and
    /// `AMQP_TLS_KEY_FILE` name (each optional), read and checked.
    pub fn from_files(
        ca_file: Option<String>,
        cert_file: Option<String>,
        key_file: Option<String>,
    ) -> Result<Self, TlsSettingError> {
        let cert_chain = match &ca_file {
            None => None,
            Some(path) => {
                let pem = read("AMQP_TLS_CA_FILE", path)?;
                check_ca(&pem, path)?;
                Some(String::from_utf8(pem).map_err(|_| {
                    TlsSettingError::new("AMQP_TLS_CA_FILE", format!("{path}: is not PEM text"))
                })?)
            }
        };
        let identity = match (&cert_file, &key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsSettingError::new(
                    "AMQP_TLS_KEY_FILE",
                    "is required with AMQP_TLS_CERT_FILE (the client certificate's key)",
                ))
            }
            (None, Some(_)) => {
                return Err(TlsSettingError::new(
                    "AMQP_TLS_CERT_FILE",
                    "is required with AMQP_TLS_KEY_FILE (the key's certificate)",
                ))
            }
            (Some(cert_path), Some(key_path)) => {
                let pem = read("AMQP_TLS_CERT_FILE", cert_path)?;
                let key = read("AMQP_TLS_KEY_FILE", key_path)?;
                if CertificateDer::pem_slice_iter(&pem).next().is_none() {
                    return Err(TlsSettingError::new(
                        "AMQP_TLS_CERT_FILE",
                        format!("{cert_path}: contains no PEM certificate"),
                    ));
                }
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    TlsSettingError::new(
                        "AMQP_TLS_KEY_FILE",
                        format!("{key_path}: no PEM private key ({e})"),
                    )
                })?;
                Some(OwnedIdentity::PKCS8 { pem, key })
            }
        };
        Ok(Self {
            ca_file,
            cert_file,
            config: OwnedTLSConfig {
                identity,
                cert_chain,
            },
        })
    }

    /// Whether any `AMQP_TLS_*` variable is set.
    pub fn is_configured(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some()
    }

    /// Build the TLS client configuration the way each `amqps://` connect
    /// will (system roots, the CA, the client certificate), so that what
    /// would fail there fails here, once: no system root certificates and
    /// no CA file, a certificate that does not match its key.
    pub fn check(&self) -> Result<(), TlsSettingError> {
        let var = if self.cert_file.is_some() {
            "AMQP_TLS_CERT_FILE"
        } else {
            "AMQP_TLS_CA_FILE"
        };
        // lapin loads the system's roots at each connect, CA file or not.
        let mut roots = RustlsConnectorConfig::new_with_native_certs().map_err(|e| {
            TlsSettingError::new(
                var,
                format!(
                    "cannot load the system's root certificates (install ca-certificates): {e}"
                ),
            )
        })?;
        if let Some(chain) = &self.config.cert_chain {
            roots.add_parsable_certificates(pem_certificates(chain.as_bytes()));
        }
        let built = match &self.config.identity {
            Some(OwnedIdentity::PKCS8 { pem, key }) => {
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| TlsSettingError::new("AMQP_TLS_KEY_FILE", e.to_string()))?;
                roots.connector_with_single_cert(pem_certificates(pem), key)
            }
            _ => roots.connector_with_no_client_auth(),
        };
        built.map(|_| ()).map_err(|e| {
            TlsSettingError::new(var, format!("cannot build the TLS configuration: {e}"))
        })
    }

    /// The configuration lapin takes for each connect (for `amqp://` nodes
    /// it is not used).
    pub fn config(&self) -> OwnedTLSConfig {
        self.config.clone()
    }
}

/// Refuse what would send credentials in clear to a broker meant to be
/// reached over TLS: `AMQP_TLS_*` with no `amqps://` node, or a node list
/// mixing `amqp://` and `amqps://` (a failover would drop TLS). With
/// `amqps://` nodes (`secured` of `nodes`), check the TLS configuration
/// once, now.
pub fn check_nodes(secured: usize, nodes: usize, tls: &AmqpTls) -> Result<(), TlsSettingError> {
    if secured == 0 {
        if tls.is_configured() {
            return Err(TlsSettingError::new(
                "AMQP_URL",
                "AMQP_TLS_* is set but no URL is amqps://: refusing to connect in clear",
            ));
        }
        return Ok(());
    }
    if secured < nodes {
        return Err(TlsSettingError::new(
            "AMQP_URL",
            "mixes amqp:// and amqps:// nodes: moving to another node would drop TLS",
        ));
    }
    tls.check()
}

/// A TLS handshake that failed: what rustls or the broker said, and the
/// setting to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// rustls' or the broker's words.
    pub reason: String,
    /// Which setting to look at.
    pub hint: &'static str,
}

/// A failed connect to an `amqps://` node told as a TLS failure, when it is
/// one (rustls reports those as invalid data; a refused or reset TCP
/// connection is not one).
pub fn handshake_failure(uri: &AMQPUri, error: &lapin::Error) -> Option<HandshakeFailure> {
    if uri.scheme != AMQPScheme::AMQPS {
        return None;
    }
    let ErrorKind::IOError(io) = error.kind() else {
        return None;
    };
    if io.kind() != std::io::ErrorKind::InvalidData {
        return None;
    }
    let reason = io.to_string();
    let hint = if reason.contains("UnknownIssuer") {
        "the broker's certificate is not signed by a trusted CA: set AMQP_TLS_CA_FILE to the CA that signed it"
    } else if reason.contains("not valid for name") {
        "the host in AMQP_URL must be a name the broker's certificate is issued for"
    } else if reason.contains("alert") {
        "the broker refused: if it requires a client certificate, set AMQP_TLS_CERT_FILE and AMQP_TLS_KEY_FILE"
    } else {
        "is the port a TLS listener? RabbitMQ's is 5671 by default"
    };
    Some(HandshakeFailure { reason, hint })
}

/// The contents of `path`, or an error naming `var`.
fn read(var: &'static str, path: &str) -> Result<Vec<u8>, TlsSettingError> {
    std::fs::read(path).map_err(|e| TlsSettingError::new(var, format!("cannot read {path}: {e}")))
}

/// The certificates of a PEM text (those that parse).
fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// A CA file must hold at least one certificate rustls can use as a root:
/// lapin skips the ones it cannot parse without a word.
fn check_ca(pem: &[u8], path: &str) -> Result<(), TlsSettingError> {
    let refuse = |why: String| TlsSettingError::new("AMQP_TLS_CA_FILE", format!("{path}: {why}"));
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(refuse("contains no PEM certificate".into()));
    }
    RustlsConnectorConfig::default()
        .with_parsable_certificates(certificates)
        .connector_with_no_client_auth()
        .map(|_| ())
        .map_err(|e| refuse(format!("holds no usable CA certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Throwaway certificates made with openssl for these tests only
    /// (a CA, a client certificate it signed with its key, another key).
    fn testdata(name: &str) -> Option<String> {
        Some(format!(
            "{}/testdata/tls/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
    }

    #[test]
    fn a_private_ca_and_a_client_certificate() {
        let tls = AmqpTls::from_files(
            testdata("ca.pem"),
            testdata("client.pem"),
            testdata("client.key"),
        )
        .unwrap();
        assert!(tls.is_configured());
        assert_eq!(check_nodes(1, 1, &tls), Ok(()));
        // The key never shows in Debug.
        let printed = format!("{tls:?}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
        assert!(printed.contains("client.pem"), "{printed}");
        // amqps:// with the system's roots only.
        assert_eq!(check_nodes(1, 1, &AmqpTls::default()), Ok(()));
    }

    #[test]
    fn tls_settings_without_amqps_are_refused() {
        let tls = AmqpTls::from_files(testdata("ca.pem"), None, None).unwrap();
        let err = check_nodes(0, 1, &tls).unwrap_err();
        assert_eq!(err.var, "AMQP_URL");
        assert!(err.reason.contains("amqps://"), "{err}");
        let err = check_nodes(1, 2, &AmqpTls::default()).unwrap_err();
        assert!(err.reason.contains("mixes"), "{err}");
        // Plain AMQP with no TLS settings is fine.
        assert_eq!(check_nodes(0, 3, &AmqpTls::default()), Ok(()));
    }

    #[test]
    fn bad_tls_files_name_their_variable() {
        let (ca, cert, key, other) = (
            testdata("ca.pem"),
            testdata("client.pem"),
            testdata("client.key"),
            testdata("other.key"),
        );
        let missing = Some("/nonexistent/ca.pem".to_owned());
        // ((CA, certificate, key), the variable the error names, words of its reason)
        type Files = (Option<String>, Option<String>, Option<String>);
        let cases: [(Files, &str, &str); 6] = [
            ((missing, None, None), "AMQP_TLS_CA_FILE", "cannot read"),
            // A key is not a certificate.
            (
                (key.clone(), None, None),
                "AMQP_TLS_CA_FILE",
                "no PEM certificate",
            ),
            (
                (None, cert.clone(), None),
                "AMQP_TLS_KEY_FILE",
                "is required",
            ),
            (
                (None, None, key.clone()),
                "AMQP_TLS_CERT_FILE",
                "is required",
            ),
            (
                (None, cert.clone(), ca),
                "AMQP_TLS_KEY_FILE",
                "no PEM private key",
            ),
            // The client certificate with a key that is not its own.
            ((None, cert, other), "AMQP_TLS_CERT_FILE", "cannot build"),
        ];
        for ((ca, cert, key), var, reason) in cases {
            let what = format!("{ca:?} {cert:?} {key:?}");
            let err = AmqpTls::from_files(ca, cert, key)
                .and_then(|tls| check_nodes(1, 1, &tls))
                .unwrap_err();
            assert_eq!(err.var, var, "{what}: {err}");
            assert!(err.reason.contains(reason), "{what}: {err}");
        }
    }
}
