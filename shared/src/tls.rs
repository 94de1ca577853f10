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

use crate::amqp::ConnectError;
use crate::config::{ConfigError, Env};

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
    /// Read `AMQP_TLS_CA_FILE`, `AMQP_TLS_CERT_FILE` and `AMQP_TLS_KEY_FILE`
    /// (all optional), reading and checking each file named.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ca_file = env.raw("AMQP_TLS_CA_FILE")?;
        let cert_file = env.raw("AMQP_TLS_CERT_FILE")?;
        let key_file = env.raw("AMQP_TLS_KEY_FILE")?;
        let cert_chain = match &ca_file {
            None => None,
            Some(path) => {
                let pem = read("AMQP_TLS_CA_FILE", path)?;
                check_ca(&pem)
                    .map_err(|e| ConfigError::new("AMQP_TLS_CA_FILE", format!("{path}: {e}")))?;
                Some(String::from_utf8(pem).map_err(|_| {
                    ConfigError::new("AMQP_TLS_CA_FILE", format!("{path}: is not PEM text"))
                })?)
            }
        };
        let identity = match (&cert_file, &key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "AMQP_TLS_KEY_FILE",
                    "is required with AMQP_TLS_CERT_FILE (the client certificate's key)",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "AMQP_TLS_CERT_FILE",
                    "is required with AMQP_TLS_KEY_FILE (the key's certificate)",
                ))
            }
            (Some(cert_path), Some(key_path)) => {
                let pem = read("AMQP_TLS_CERT_FILE", cert_path)?;
                let key = read("AMQP_TLS_KEY_FILE", key_path)?;
                if CertificateDer::pem_slice_iter(&pem).next().is_none() {
                    return Err(ConfigError::new(
                        "AMQP_TLS_CERT_FILE",
                        format!("{cert_path}: contains no PEM certificate"),
                    ));
                }
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    ConfigError::new(
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
    pub fn check(&self) -> Result<(), ConfigError> {
        let var = if self.cert_file.is_some() {
            "AMQP_TLS_CERT_FILE"
        } else {
            "AMQP_TLS_CA_FILE"
        };
        // lapin loads the system's roots at each connect, CA file or not.
        let mut roots = RustlsConnectorConfig::new_with_native_certs().map_err(|e| {
            ConfigError::new(
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
                    .map_err(|e| ConfigError::new("AMQP_TLS_KEY_FILE", e.to_string()))?;
                roots.connector_with_single_cert(pem_certificates(pem), key)
            }
            _ => roots.connector_with_no_client_auth(),
        };
        built
            .map(|_| ())
            .map_err(|e| ConfigError::new(var, format!("cannot build the TLS configuration: {e}")))
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
/// `amqps://` nodes, check the TLS configuration once, now.
pub fn check_nodes(nodes: &crate::amqp::Nodes, tls: &AmqpTls) -> Result<(), ConfigError> {
    let secured = nodes.tls_count();
    if secured == 0 {
        if tls.is_configured() {
            return Err(ConfigError::new(
                "AMQP_URL",
                "AMQP_TLS_* is set but no URL is amqps://: refusing to connect in clear",
            ));
        }
        return Ok(());
    }
    if secured < nodes.len() {
        return Err(ConfigError::new(
            "AMQP_URL",
            "mixes amqp:// and amqps:// nodes: moving to another node would drop TLS",
        ));
    }
    tls.check()
}

/// A failed connect to an `amqps://` node told as a TLS failure, with the
/// setting to look at, when it is one (rustls reports those as invalid
/// data; a refused or reset TCP connection stays a broker error).
pub fn handshake_failure(uri: &AMQPUri, error: &lapin::Error) -> Option<ConnectError> {
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
    Some(ConnectError::Tls {
        node: format!("{}:{}", uri.authority.host, uri.authority.port),
        reason,
        hint,
    })
}

/// The contents of `path`, or an error naming `var`.
fn read(var: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))
}

/// The certificates of a PEM text (those that parse).
fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// A CA file must hold at least one certificate rustls can use as a root:
/// lapin skips the ones it cannot parse without a word.
fn check_ca(pem: &[u8]) -> Result<(), String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("contains no PEM certificate".into());
    }
    RustlsConnectorConfig::default()
        .with_parsable_certificates(certificates)
        .connector_with_no_client_auth()
        .map(|_| ())
        .map_err(|e| format!("holds no usable CA certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommonSettings;

    /// Throwaway certificates made with openssl for these tests only
    /// (a CA, a client certificate it signed with its key, another key).
    fn testdata(name: &str) -> String {
        format!("{}/testdata/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn settings(pairs: &[(&str, &str)]) -> Result<CommonSettings, ConfigError> {
        let mut all = vec![("DATABASE_URL", "postgres://db/x")];
        all.extend_from_slice(pairs);
        CommonSettings::from_env(&Env::from_pairs(all.iter().copied()))
    }

    #[test]
    fn amqps_with_a_private_ca_and_a_client_certificate() {
        let (ca, cert, key) = (
            testdata("ca.pem"),
            testdata("client.pem"),
            testdata("client.key"),
        );
        let s = settings(&[
            ("AMQP_URL", "amqps://u:p@rabbit:5671/%2f"),
            ("AMQP_TLS_CA_FILE", &ca),
            ("AMQP_TLS_CERT_FILE", &cert),
            ("AMQP_TLS_KEY_FILE", &key),
        ])
        .unwrap();
        assert_eq!(s.amqp_nodes.tls_count(), 1);
        // The key never shows in Debug.
        let tls = AmqpTls::from_env(&Env::from_pairs([
            ("AMQP_TLS_CERT_FILE", cert.as_str()),
            ("AMQP_TLS_KEY_FILE", key.as_str()),
        ]))
        .unwrap();
        let printed = format!("{tls:?}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
        assert!(printed.contains("client.pem"), "{printed}");
        // Plain amqps:// with the system's roots only.
        assert!(settings(&[("AMQP_URL", "amqps://u:p@rabbit:5671/%2f")]).is_ok());
    }

    #[test]
    fn tls_settings_without_amqps_are_refused() {
        let ca = testdata("ca.pem");
        let err = settings(&[
            ("AMQP_URL", "amqp://u:p@rabbit:5672/%2f"),
            ("AMQP_TLS_CA_FILE", &ca),
        ])
        .unwrap_err();
        assert_eq!(err.var, "AMQP_URL");
        assert!(err.reason.contains("amqps://"), "{}", err.reason);
        let err =
            settings(&[("AMQP_URL", "amqps://u:p@a:5671/%2f,amqp://u:p@b:5672/%2f")]).unwrap_err();
        assert!(err.reason.contains("mixes"), "{}", err.reason);
    }

    #[test]
    fn bad_tls_files_name_their_variable() {
        let url = ("AMQP_URL", "amqps://u:p@rabbit:5671/%2f");
        let (ca, cert, key, other) = (
            testdata("ca.pem"),
            testdata("client.pem"),
            testdata("client.key"),
            testdata("other.key"),
        );
        // (variables set, the variable the error names, words of its reason)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 6] = [
            (
                &[("AMQP_TLS_CA_FILE", "/nonexistent/ca.pem")],
                "AMQP_TLS_CA_FILE",
                "cannot read",
            ),
            // A key is not a certificate.
            (
                &[("AMQP_TLS_CA_FILE", &key)],
                "AMQP_TLS_CA_FILE",
                "no PEM certificate",
            ),
            (
                &[("AMQP_TLS_CERT_FILE", &cert)],
                "AMQP_TLS_KEY_FILE",
                "is required",
            ),
            (
                &[("AMQP_TLS_KEY_FILE", &key)],
                "AMQP_TLS_CERT_FILE",
                "is required",
            ),
            (
                &[("AMQP_TLS_CERT_FILE", &cert), ("AMQP_TLS_KEY_FILE", &ca)],
                "AMQP_TLS_KEY_FILE",
                "no PEM private key",
            ),
            // The client certificate with a key that is not its own.
            (
                &[("AMQP_TLS_CERT_FILE", &cert), ("AMQP_TLS_KEY_FILE", &other)],
                "AMQP_TLS_CERT_FILE",
                "cannot build",
            ),
        ];
        for (pairs, var, reason) in cases {
            let mut all = vec![url];
            all.extend_from_slice(pairs);
            let err = settings(&all).unwrap_err();
            assert_eq!(err.var, var, "{pairs:?}: {err}");
            assert!(err.reason.contains(reason), "{pairs:?}: {err}");
        }
    }
}
