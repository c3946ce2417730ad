//! TLS for PostgreSQL connections through rustls (ring), with libpq's
//! `sslmode` semantics:
//!
//! | sslmode | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | if the server offers it | no |
//! | `require` | always | against `sslrootcert` if one is given, else no |
//! | `verify-ca` | always | chain against the roots |
//! | `verify-full` | always | chain and host name |
//!
//! The roots are the PEM file `sslrootcert` names, or the system's store
//! when it is absent or `system`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, ErrorKind, Result};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(super) fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::new(
                    ErrorKind::Url,
                    format!(
                        "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ),
                ));
            }
        })
    }

    /// Whether tokio-postgres must, may or must not negotiate TLS.
    pub(super) fn transport(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as T;
        match self {
            SslMode::Disable => T::Disable,
            SslMode::Allow | SslMode::Prefer => T::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => T::Require,
        }
    }
}

/// The connector for `mode`, or `None` when TLS is off. Reads the roots now,
/// so a bad `sslrootcert` fails when the engine is built, not per connect.
pub(super) fn connector(mode: SslMode, root_cert: Option<&str>) -> Result<Option<MakeRustlsConnect>> {
    // An explicit provider: the process-wide default may be ambiguous when
    // another crate enables a second rustls backend.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, check_name) = match (mode, root_cert) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => (None, false),
        (SslMode::Require | SslMode::VerifyCa, _) => (Some(web_pki(root_cert, &provider)?), false),
        (SslMode::VerifyFull, _) => (Some(web_pki(root_cert, &provider)?), true),
    };
    let verifier = Arc::new(Verifier {
        chain,
        check_name,
        provider: Arc::clone(&provider),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn tls_error(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// The standard chain-and-name verifier over the configured roots.
fn web_pki(root_cert: Option<&str>, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>> {
    let roots = Arc::new(roots(root_cert)?);
    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider))
        .build()
        .map_err(|e| tls_error(format!("cannot build the certificate verifier: {e}")))
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("sslrootcert={path}: cannot read certificates: {e}")))?;
            if certs.is_empty() {
                return Err(tls_error(format!("sslrootcert={path}: holds no PEM certificate")));
            }
            for cert in certs {
                store
                    .add(cert)
                    .map_err(|e| tls_error(format!("sslrootcert={path}: {e}")))?;
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _unparsable) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls_error(
                    "no trusted root certificates found on this system: set sslrootcert=<file>".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// What `sslmode` asks of the server's certificate. WebPKI checks the chain
/// before the name, so a name error means the chain passed (`verify-ca`).
/// The handshake signatures are verified in every mode.
#[derive(Debug)]
struct Verifier {
    /// `None`: encrypt only, as libpq's `prefer` and root-less `require` do.
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
