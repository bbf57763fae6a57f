//! Retrying a start-up dependency (PostgreSQL, RabbitMQ) with capped exponential backoff:
//! one clear log line per failed attempt, never a panic.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(250);
/// Capped low: a broker node that comes back (or a cluster's other node) is used within
/// seconds, not half a minute later.
const MAX_DELAY: Duration = Duration::from_secs(4);

/// Runs `attempt` until it succeeds, sleeping 0.25 s, 0.5 s, 1 s … (at most 4 s) in between.
pub async fn with_backoff<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    // No error is permanent here, so the inner loop only ever ends with a value.
    loop {
        if let Ok(value) = with_backoff_unless(what, |_: &E| false, &mut attempt).await {
            return value;
        }
    }
}

/// [`with_backoff`], but an error `permanent` says no retry can fix (a server certificate that
/// does not verify, say) ends the attempts at once and is returned.
pub async fn with_backoff_unless<T, E, F, Fut>(
    what: &str,
    permanent: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_DELAY;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if permanent(&error) => return Err(error),
            Err(error) => {
                log::warn!("{what} is unavailable ({error}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

/// A URL with its password replaced, fit for a log line, whatever the string looks like: one
/// well-formed URL keeps its shape; anything else (several URLs run together, a malformed one)
/// has every `user:password@` and `password=` value masked where it appears.
pub fn redact(url: &str) -> String {
    // Parsed first, so a well-formed URL keeps its shape; masked textually afterwards in any
    // case, since a password holding '/', '?' or '#' unescaped can make a URL that still parses
    // (as a host, a port and a path) without any password in it.
    let shaped = match url::Url::parse(url) {
        Ok(parsed) if url.matches("://").count() == 1 => redact_parsed(parsed),
        _ => url.to_owned(),
    };
    mask_everywhere(&shaped)
}

fn redact_parsed(mut parsed: url::Url) -> String {
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    // libpq-style URLs may carry the password as a query parameter too.
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".into()
                } else {
                    value
                };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Masks, in any text, the password of every `scheme://user:password@` and the value of every
/// `password=`.
fn mask_everywhere(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        // The user information ends at the last '@' before the next URL (',') or blank, even
        // past a '/', '?' or '#' (an unescaped password may hold them); its first ':' starts
        // the password.
        let end = tail
            .find(|c: char| c == ',' || c.is_whitespace())
            .unwrap_or(tail.len());
        let segment = &tail[..end];
        let masked = segment.rfind('@').and_then(|at| {
            let colon = segment[..at].find(':')?;
            Some(format!("{}***{}", &segment[..=colon], &segment[at..]))
        });
        out.push_str(masked.as_deref().unwrap_or(segment));
        rest = &tail[end..];
    }
    out.push_str(rest);
    mask_password_params(&out)
}

fn mask_password_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("password=") {
        let (head, tail) = rest.split_at(start + "password=".len());
        out.push_str(head);
        out.push_str("***");
        let end = tail
            .find(|c: char| matches!(c, '&' | ',' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    #[actix_web::test]
    async fn retries_until_success() {
        let calls = Cell::new(0);
        let value = super::with_backoff("thing", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err("down")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[actix_web::test]
    async fn a_permanent_error_ends_the_retries() {
        let calls = Cell::new(0);
        let outcome: Result<(), &str> = super::with_backoff_unless(
            "thing",
            |error: &&str| *error == "hopeless",
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { Err(if n < 2 { "down" } else { "hopeless" }) }
            },
        )
        .await;
        assert_eq!(outcome, Err("hopeless"));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(
            super::redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact("postgres://u@h/db?sslmode=require&password=hunter2"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn redact_hides_passwords_whatever_the_shape() {
        let two = "amqp://guest:first@a:5672/%2f,amqp://admin:second@b:5672/%2f";
        let shown = super::redact(two);
        assert!(
            !shown.contains("first") && !shown.contains("second"),
            "{shown}"
        );
        assert!(shown.contains("admin:***@b"), "{shown}");
        let broken = "amqp://u:p@ss@word@host:port:bad/vhost";
        let shown = super::redact(broken);
        assert!(
            !shown.contains("p@ss") && !shown.contains("word"),
            "{shown}"
        );
        let hosts =
            "postgres://herald:hunter2@db-a:5432,db-b:5432/herald?target_session_attrs=read-write";
        let shown = super::redact(hosts);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("herald:***@db-a:5432,db-b:5432/herald"),
            "{shown}"
        );
        let spaced = "postgres://h/db password=hunter2 user=x";
        assert!(!super::redact(spaced).contains("hunter2"));
        assert_eq!(super::redact("not a url"), "not a url");
        for unescaped in [
            "amqp://guest:ab/cd+ef==@rabbit:5672/%2f",
            "amqp://u:1234/x@host/%2f",
            "amqp://u:a?b#c@host/%2f",
        ] {
            let shown = super::redact(unescaped);
            assert!(shown.contains(":***@"), "{unescaped} → {shown}");
        }
    }
}
