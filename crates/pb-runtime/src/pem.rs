//! Certificates and private keys from PEM files, for the TLS of the Processor Bridge's TCP
//! link: the gateway's client side and the bridge emulator's server side.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
}

/// Every certificate of `path`, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let read = |source| PemError::Read {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("pb-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let e = certificates(&empty).unwrap_err();
        assert!(matches!(e, PemError::NoCertificate { .. }), "{e:?}");
        assert!(e.to_string().contains("empty.pem holds no certificate"));
        let missing = dir.join("missing.pem");
        let e = certificates(&missing).unwrap_err();
        assert!(matches!(e, PemError::Read { .. }), "{e:?}");
        assert!(matches!(private_key(&missing), Err(PemError::Read { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
