//! Retrying a start-up dependency (PostgreSQL, RabbitMQ) with capped exponential backoff:
//! one clear log line per failed attempt, never a panic.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, sleeping 0.25 s, 0.5 s, 1 s … (at most 30 s) in between.
pub async fn with_backoff<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_DELAY;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                log::warn!("{what} is unavailable ({error}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

/// A URL with its password replaced, fit for a log line.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
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
        Err(_) => "<unparsable url>".to_owned(),
    }
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
}
