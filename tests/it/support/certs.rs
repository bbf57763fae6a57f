//! Throwaway certificate authorities for the TLS tests: a CA made in the test, the server
//! certificates it signs (for private PostgreSQL and RabbitMQ nodes), and client certificates.
//! Everything is written as PEM into a directory of the test's own, removed when the
//! [`CertDir`] is dropped.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A directory for a test's certificates and keys, removed when dropped.
pub struct CertDir(PathBuf);

impl CertDir {
    pub fn new(tag: &str) -> CertDir {
        let dir =
            std::env::temp_dir().join(format!("herald-certs-{tag}-{:08x}", rand::random::<u32>()));
        // 0711: private keys are written 0600, but the PostgreSQL server (another user, when
        // the tests run as root) must reach the files handed to it.
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        CertDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate, the file herald is told to trust.
    pub ca_file: PathBuf,
    dir: PathBuf,
    name: String,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `<dir>/<name>-ca.pem`.
    pub fn new(dir: &CertDir, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("herald test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        fs::write(&ca_file, issuer.pem()).expect("writing the CA certificate");
        TestCa {
            issuer,
            ca_file,
            dir: dir.path().to_owned(),
            name: name.to_owned(),
        }
    }

    /// A server certificate for `hosts` (names or IP addresses), signed by this CA.
    pub fn server(&self, label: &str, hosts: &[&str]) -> Issued {
        self.issue(label, hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate, signed by this CA.
    pub fn client(&self, label: &str) -> Issued {
        self.issue(label, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, label: &str, hosts: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("herald test {label}"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.issuer).expect("certificate");
        let stem = format!("{}-{label}", self.name);
        let issued = Issued {
            cert_file: self.dir.join(format!("{stem}.pem")),
            key_file: self.dir.join(format!("{stem}.key")),
        };
        fs::write(&issued.cert_file, cert.pem()).expect("writing a certificate");
        write_private(&issued.key_file, &key.serialize_pem());
        issued
    }
}

/// Writes a key file readable by its owner only.
fn write_private(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A path as the `&str` settings take.
pub fn text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}
