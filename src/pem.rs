//! Certificates and private keys read from PEM files, for TLS on both sides (the gateway's
//! listeners, [`crate::source::tls`], and the agent, `crate::agent::ship::tls`).
//!
//! Every error is an [`InvalidSetting`] under the key that named the file, saying which file
//! and what to put in it, so that both sides report a bad file the same way.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::setting::InvalidSetting;

/// The certificates (`BEGIN CERTIFICATE` blocks) of the file `key` names, at least one.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn read_certificates(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, InvalidSetting> {
    let pem = read_file(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidSetting::new(key, format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(InvalidSetting::new(
            key,
            format!(
                "{}: no certificate in it: give PEM blocks (BEGIN CERTIFICATE)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of the file `key` names.
///
/// # Errors
/// The file cannot be read or holds no private key.
pub fn read_private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, InvalidSetting> {
    let pem = read_file(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        InvalidSetting::new(
            key,
            format!(
                "{}: no private key read ({e}): give the key in PEM (BEGIN PRIVATE KEY, \
                 RSA PRIVATE KEY or EC PRIVATE KEY)",
                path.display()
            ),
        )
    })
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, InvalidSetting> {
    std::fs::read(path)
        .map_err(|e| InvalidSetting::new(key, format!("cannot read {}: {e}", path.display())))
}

/// Why rustls refused `key_file` with the certificate of `cert_file`, under the key `key_file`.
pub fn unusable_key(key_file: &Path, cert_file: &Path, error: &rustls::Error) -> InvalidSetting {
    let message = match error {
        rustls::Error::InconsistentKeys(_) => format!(
            "{} is not the private key of {}: give the key the certificate was issued for",
            key_file.display(),
            cert_file.display()
        ),
        other => format!(
            "{} cannot be used with {}: {other}",
            key_file.display(),
            cert_file.display()
        ),
    };
    InvalidSetting::new("key_file", message)
}
