//! The `sslmode` of a PostgreSQL URL (see `pg_tls` for what each mode does), read without
//! anything else of the store, so the settings can check it at load.

/// What `sslmode` a database URL asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

const MODES: &str = "disable, prefer, require, verify-ca or verify-full";

impl SslMode {
    /// The mode `url` asks for (the last `sslmode` if it names several, as libpq reads it), and
    /// `url` as tokio-postgres takes it: it knows no `verify-*`, which become `require` (the
    /// checking is rustls's, see `tls`). Everything else in the URL is left byte for byte.
    pub fn of_url(url: &str) -> Result<(SslMode, String), String> {
        let Some((head, rest)) = url.split_once('?') else {
            return Ok((SslMode::Disable, url.to_owned()));
        };
        let (query, fragment) = match rest.split_once('#') {
            Some((query, fragment)) => (query, Some(fragment)),
            None => (rest, None),
        };
        let mut mode = SslMode::Disable;
        let mut pairs = Vec::new();
        for pair in query.split('&') {
            let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
            match decoded {
                Some((key, value)) if key == "sslmode" => {
                    mode = match &*value {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(format!("sslmode must be {MODES}, not {other:?}"));
                        }
                    };
                    pairs.push(match mode {
                        SslMode::VerifyCa | SslMode::VerifyFull => "sslmode=require",
                        _ => pair,
                    });
                }
                _ => pairs.push(pair),
            }
        }
        let mut rewritten = format!("{head}?{}", pairs.join("&"));
        if let Some(fragment) = fragment {
            rewritten.push('#');
            rewritten.push_str(fragment);
        }
        Ok((mode, rewritten))
    }
}
