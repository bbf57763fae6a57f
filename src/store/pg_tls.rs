//! PostgreSQL over TLS: the `sslmode` of `database.url` and the `database.ca_file` it verifies
//! against, made once into what every connection herald opens uses (`database::connect`).
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | not given, `disable` | never | — |
//! | `prefer` | if the server offers it | not checked |
//! | `require` | always | not checked |
//! | `verify-ca` | always | chain to `database.ca_file` (or the system's CAs) |
//! | `verify-full` | always | that, and it names the host in the URL |
//!
//! Unlike libpq, a URL without `sslmode` means `disable` (herald's behaviour before TLS), and a
//! CA file is only used by the two `verify-` modes.

use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

pub use super::sslmode::SslMode;
use crate::config::DatabaseSettings;
use crate::tls::{self, CaSource, TlsError, Verify};

impl SslMode {
    fn verify(self) -> Option<Verify> {
        match self {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(Verify::Nothing),
            SslMode::VerifyCa => Some(Verify::Chain),
            SslMode::VerifyFull => Some(Verify::Full),
        }
    }
}

/// The TLS side of `database.url` and `database.ca_file`: cheap to clone, shared by the pool,
/// migrations, the relay's connections and database creation.
#[derive(Clone)]
pub struct PgTls {
    mode: SslMode,
    connector: Option<MakeRustlsConnect>,
}

impl PgTls {
    /// Reads the CA file (if the mode verifies) and builds the rustls configuration.
    pub fn new(settings: &DatabaseSettings) -> Result<Self, TlsError> {
        let (mode, _) = SslMode::of_url(&settings.url).map_err(TlsError::Config)?;
        let ca = CaSource {
            setting: "database.ca_file",
            ca_file: settings.ca_file(),
        };
        let connector = match mode.verify() {
            None => None,
            Some(verify) => {
                if verify == Verify::Nothing && ca.ca_file.is_some() {
                    log::warn!(
                        "database.ca_file is set but sslmode={}: PostgreSQL's certificate is \
                         not verified (use verify-ca or verify-full)",
                        if mode == SslMode::Prefer {
                            "prefer"
                        } else {
                            "require"
                        }
                    );
                }
                let config = tls::client_config(verify, ca, None)?;
                Some(MakeRustlsConnect::new(Arc::unwrap_or_clone(config)))
            }
        };
        Ok(PgTls { mode, connector })
    }

    /// No TLS at all, whatever a URL says (for tools and tests that talk to a plain server).
    pub fn disabled() -> Self {
        PgTls {
            mode: SslMode::Disable,
            connector: None,
        }
    }

    /// The mode `database.url` asked for.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The rustls connector, for the modes that use TLS.
    pub(crate) fn connector(&self) -> Option<&MakeRustlsConnect> {
        self.connector.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::SslMode;

    #[test]
    fn sslmode_is_read_and_verify_modes_become_require_for_tokio_postgres() {
        assert_eq!(
            SslMode::of_url("postgres://u@h/db").expect("ok"),
            (SslMode::Disable, "postgres://u@h/db".to_owned())
        );
        let (mode, url) =
            SslMode::of_url("postgres://u:p%40ss@h/db?application_name=a%20b&sslmode=verify-full")
                .expect("ok");
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(
            url,
            "postgres://u:p%40ss@h/db?application_name=a%20b&sslmode=require"
        );
        let (mode, url) =
            SslMode::of_url("postgres://h/db?sslmode=verify-ca&keepalives=1").expect("ok");
        assert_eq!(mode, SslMode::VerifyCa);
        assert_eq!(url, "postgres://h/db?sslmode=require&keepalives=1");
        let (mode, _) =
            SslMode::of_url("postgres://h/db?sslmode=require&sslmode=prefer").expect("ok");
        assert_eq!(mode, SslMode::Prefer);
        let error = SslMode::of_url("postgres://h/db?sslmode=allow").expect_err("refused");
        assert!(error.contains("verify-full"), "{error}");
    }
}
