//! TLS for the connections herald opens itself, to RabbitMQ (`amqps://`) and PostgreSQL
//! (`sslmode`): rustls with its ring provider, one configuration per service, built once at
//! start. A CA file named in the settings is the only thing trusted when given (as libpq's
//! `sslrootcert`); otherwise the system's store is (`/etc/ssl/certs` and the like).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Nothing: the connection is encrypted, but anyone in the middle could be the server
    /// (PostgreSQL's `sslmode=require` and `prefer`). The handshake's signatures are still
    /// checked against the certificate presented.
    Nothing,
    /// The chain up to a trusted CA, not the host name (`sslmode=verify-ca`).
    Chain,
    /// The chain and that the certificate names the host connected to (`verify-full`, and
    /// always for `amqps://`).
    Full,
}

/// Where the roots of trust come from: the setting that names a PEM bundle, and its value.
#[derive(Clone, Copy)]
pub struct CaSource<'a> {
    pub setting: &'static str,
    pub ca_file: Option<&'a str>,
}

/// A client certificate and its key, both PEM files, and the settings that named them.
#[derive(Clone, Copy)]
pub struct IdentityFiles<'a> {
    pub cert_setting: &'static str,
    pub cert_file: &'a str,
    pub key_setting: &'static str,
    pub key_file: &'a str,
}

/// Why a TLS configuration could not be built: a configuration error, reported at start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} ({path}): {why}")]
    File {
        setting: &'static str,
        path: String,
        why: String,
    },
    #[error(
        "no CA certificate could be loaded from the system's store ({0}); name a PEM bundle in {1}"
    )]
    NoSystemRoots(String, &'static str),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The one crypto provider herald's TLS uses (lapin's rustls transport is built on it too).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// A client configuration that checks what `verify` says against the roots `ca` names, and
/// presents `identity` if the server asks for a client certificate.
pub fn client_config(
    verify: Verify,
    ca: CaSource<'_>,
    identity: Option<IdentityFiles<'_>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(EncryptOnly(Arc::clone(&provider))),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(roots(ca)?);
            let full = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            match verify {
                Verify::Chain => Arc::new(ChainOnly(full)),
                _ => full,
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let (chain, key) = identity_of(files)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::File {
                    setting: files.key_setting,
                    path: files.key_file.to_owned(),
                    why: format!("does not fit {}: {e}", files.cert_setting),
                })?
        }
    };
    Ok(Arc::new(config))
}

/// The roots of trust: every certificate of the CA file, or the system's store.
fn roots(ca: CaSource<'_>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca.ca_file {
        Some(path) => {
            for cert in certificates(ca.setting, path)? {
                store.add(cert).map_err(|e| TlsError::File {
                    setting: ca.setting,
                    path: path.to_owned(),
                    why: format!("holds a certificate that cannot be a CA: {e}"),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(native.certs);
            if added == 0 {
                let why = native
                    .errors
                    .first()
                    .map_or_else(|| "it is empty".to_owned(), ToString::to_string);
                return Err(TlsError::NoSystemRoots(why, ca.setting));
            }
        }
    }
    Ok(store)
}

/// Every certificate of a PEM file; at least one.
fn certificates(
    setting: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |why: String| TlsError::File {
        setting,
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(pem_error(e)))?;
    if certs.is_empty() {
        return Err(file_error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn identity_of(
    files: IdentityFiles<'_>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(files.cert_setting, files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(files.key_file).map_err(|e| TlsError::File {
        setting: files.key_setting,
        path: files.key_file.to_owned(),
        why: pem_error(e),
    })?;
    Ok((chain, key))
}

/// A PEM error in words; never the file's contents.
fn pem_error(error: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(io) => format!("cannot be read: {io}"),
        Error::NoItemsFound => "holds no PEM item of the expected kind".into(),
        other => format!("is not valid PEM: {other}"),
    }
}

/// Whether `error`, or an error it wraps, is a server certificate that herald's verifier
/// refused: a configuration problem (a wrong CA file, a wrong host name) that no retry fixes.
pub fn is_certificate_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::InvalidCertificate(_)) = error.downcast_ref::<rustls::Error>() {
            return true;
        }
        // io::Error's `source()` skips the error it wraps: look inside explicitly.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(rustls::Error::InvalidCertificate(_)) =
                inner.downcast_ref::<rustls::Error>()
            {
                return true;
            }
        }
        next = error.source();
    }
    false
}

/// Accepts any certificate (`Verify::Nothing`), but still checks that the server holds its key.
struct EncryptOnly(Arc<CryptoProvider>);

impl fmt::Debug for EncryptOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptOnly")
    }
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The full check but for the host name (`Verify::Chain`): webpki checks the chain first and
/// the name last, so a name mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{client_config, CaSource, TlsError, Verify};

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let missing = CaSource {
            setting: "database.ca_file",
            ca_file: Some("/nonexistent/ca.pem"),
        };
        let error = client_config(Verify::Full, missing, None).expect_err("refused");
        assert!(matches!(error, TlsError::File { .. }), "{error}");
        assert!(error.to_string().contains("database.ca_file"), "{error}");

        let dir = std::env::temp_dir().join(format!("herald-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let path = empty.to_str().expect("utf-8");
        let source = CaSource {
            setting: "amqp.ca_file",
            ca_file: Some(path),
        };
        let error = client_config(Verify::Chain, source, None).expect_err("refused");
        assert!(error.to_string().contains("no PEM"), "{error}");
        // Encryption alone needs no roots at all.
        assert!(client_config(Verify::Nothing, source, None).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
