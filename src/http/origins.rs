//! The origins `http.cors_origins` admits, read from the settings and checked against a
//! request's `Origin`. Kept apart from the CORS middleware (`cors`) so that the settings can
//! check the list at load without depending on the HTTP layer.

use actix_web::http::header;

/// The origins `http.cors_origins` admits, each as browsers send it (`scheme://host[:port]`,
/// lower case, no default port, no trailing slash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// No CORS: no headers, no `Origin` checked.
    Off,
    /// `*`: every origin.
    Any,
    /// Exactly these.
    Listed(Vec<String>),
}

impl AllowedOrigins {
    /// Reads `http.cors_origins`; an entry that is not an origin is an error naming it.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let entries: Vec<&str> = entries
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(AllowedOrigins::Off);
        }
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err(
                    "http.cors_origins: \"*\" (any origin) must be the only entry".to_owned(),
                );
            }
            return Ok(AllowedOrigins::Any);
        }
        let mut listed = Vec::with_capacity(entries.len());
        for entry in entries {
            let origin = canonical_origin(entry)
                .map_err(|why| format!("http.cors_origins: {entry:?} {why}"))?;
            if !listed.contains(&origin) {
                listed.push(origin);
            }
        }
        Ok(AllowedOrigins::Listed(listed))
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, AllowedOrigins::Off)
    }

    /// Whether a request from `origin` (its `Origin` header, if any) may open the feed socket.
    pub fn admits(&self, origin: Option<&header::HeaderValue>) -> bool {
        match (self, origin) {
            (AllowedOrigins::Off | AllowedOrigins::Any, _) | (_, None) => true,
            (AllowedOrigins::Listed(listed), Some(origin)) => origin
                .to_str()
                .is_ok_and(|origin| listed.iter().any(|allowed| allowed == origin)),
        }
    }
}

/// `entry` as browsers send an origin, or why it is not one.
fn canonical_origin(entry: &str) -> Result<String, &'static str> {
    let url =
        url::Url::parse(entry).map_err(|_| "is not an origin such as https://app.example.com")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must start with http:// or https://");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user or password");
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("must be scheme://host[:port] only, with no path, query or fragment");
    }
    Ok(url.origin().ascii_serialization())
}
