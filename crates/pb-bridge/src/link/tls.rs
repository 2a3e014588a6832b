//! TLS for the emulator's TCP listener (it plays the Processor Bridge, the TLS server):
//! its certificate and key, and optionally a CA whose client certificates it requires.

use std::path::Path;
use std::sync::Arc;

use pb_runtime::pem::{self, PemError};

/// Why the listener's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client CA cannot verify clients: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A TLS server configuration: `cert` and `key` (PEM); with `client_ca`, only clients with a
/// certificate it signed are accepted.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in pem::certificates(ca)? {
                roots.add(c)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = pem::private_key(key)?;
    Ok(Arc::new(
        builder.with_single_cert(pem::certificates(cert)?, key)?,
    ))
}
