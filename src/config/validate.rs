//! Checking a loaded configuration: every value in range and every URL, origin, proxy and
//! address parsable, so that a configuration that cannot work is one clear line at start.

use std::net::SocketAddr;

use super::{Settings, SettingsError, MAX_IDEMPOTENCY_TTL_SECS, MAX_TIMER_SECS};

impl Settings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        let rt = &self.realtime;
        let checks = [
            (
                rt.ping_interval_secs > 0,
                "realtime.ping_interval_secs must be > 0",
            ),
            (
                rt.client_timeout_secs >= rt.ping_interval_secs,
                "realtime.client_timeout_secs must be >= realtime.ping_interval_secs",
            ),
            (
                !rt.exchange.is_empty(),
                "realtime.exchange must not be empty",
            ),
            (
                rt.fanout_page_size > 0,
                "realtime.fanout_page_size must be > 0",
            ),
            (
                (1..=1_000_000).contains(&rt.max_confirms_in_flight),
                "realtime.max_confirms_in_flight must be between 1 and 1000000",
            ),
            (
                rt.client_timeout_secs <= MAX_TIMER_SECS,
                "realtime.client_timeout_secs must be at most 604800 (a week)",
            ),
            (
                rt.queue_expires_ms > 0,
                "realtime.queue_expires_ms must be > 0",
            ),
            (
                rt.queue_max_length > 0,
                "realtime.queue_max_length must be > 0",
            ),
            (
                rt.max_frame_bytes > 0,
                "realtime.max_frame_bytes must be > 0",
            ),
            (
                rt.node_queue_max_length > 0,
                "realtime.node_queue_max_length must be > 0",
            ),
            (rt.node_prefetch > 0, "realtime.node_prefetch must be > 0"),
            (
                rt.session_mailbox > 0,
                "realtime.session_mailbox must be > 0",
            ),
            (
                rt.celebrity_followers > 0,
                "realtime.celebrity_followers must be > 0",
            ),
            (
                rt.author_shards <= 4096,
                "realtime.author_shards must be between 0 and 4096",
            ),
            (
                rt.user_shards <= 4096,
                "realtime.user_shards must be between 0 and 4096",
            ),
            (
                (1..=1_000_000).contains(&rt.history_max_events),
                "realtime.history_max_events must be between 1 and 1000000",
            ),
            (
                (1..=MAX_TIMER_SECS * 52).contains(&rt.history_ttl_secs),
                "realtime.history_ttl_secs must be between 1 and a year",
            ),
            (
                (1..=100_000).contains(&rt.relay_batch),
                "realtime.relay_batch must be between 1 and 100000",
            ),
            (
                self.database.pool_size > 0,
                "database.pool_size must be > 0",
            ),
            (
                self.http.body_limit_bytes > 0,
                "http.body_limit_bytes must be > 0",
            ),
            (
                (1..=MAX_TIMER_SECS).contains(&self.http.body_timeout_secs),
                "http.body_timeout_secs must be between 1 and 604800",
            ),
            (
                (1..=MAX_IDEMPOTENCY_TTL_SECS).contains(&self.http.idempotency_ttl_secs),
                "http.idempotency_ttl_secs must be between 1 and 2592000 (30 days)",
            ),
            (
                (1..=MAX_TIMER_SECS).contains(&rt.write_timeout_secs),
                "realtime.write_timeout_secs must be between 1 and 604800",
            ),
            (
                self.auth.hash_concurrency <= 1024,
                "auth.hash_concurrency must be at most 1024",
            ),
            (
                (1..=65_536).contains(&self.auth.hash_queue),
                "auth.hash_queue must be between 1 and 65536",
            ),
            (
                (1..=MAX_TIMER_SECS).contains(&self.auth.login_failure_window_secs),
                "auth.login_failure_window_secs must be between 1 and 604800",
            ),
            (
                (1..=MAX_TIMER_SECS).contains(&self.auth.registration_window_secs),
                "auth.registration_window_secs must be between 1 and 604800",
            ),
            (
                (1..=MAX_TIMER_SECS).contains(&self.http.search_window_secs),
                "http.search_window_secs must be between 1 and 604800",
            ),
            (
                rt.max_sessions_per_user > 0,
                "realtime.max_sessions_per_user must be > 0",
            ),
            (
                rt.max_sessions_per_address > 0,
                "realtime.max_sessions_per_address must be > 0",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(SettingsError::Invalid((*why).to_owned()));
        }
        check_database_url(&self.database.url)?;
        let (_, readable) =
            crate::store::sslmode::SslMode::of_url(&self.database.url).map_err(|why| {
                SettingsError::Invalid(format!(
                    "database.url ({}): {why}",
                    crate::retry::redact(&self.database.url)
                ))
            })?;
        // tokio-postgres reads the whole URL when it connects: a key it does not know, or a
        // value it cannot take, is found now rather than at every connection. Its messages name
        // the option, never the value.
        readable.parse::<tokio_postgres::Config>().map_err(|why| {
            SettingsError::Invalid(format!(
                "database.url ({}): {why}",
                crate::retry::redact(&self.database.url)
            ))
        })?;
        check_url("amqp.url", &self.amqp.url, &["amqp", "amqps"])?;
        if self.amqp.cert_file().is_some() != self.amqp.key_file().is_some() {
            return Err(SettingsError::Invalid(
                "amqp.cert_file and amqp.key_file go together: set both or neither".into(),
            ));
        }
        crate::http::origins::AllowedOrigins::parse(&self.http.cors_origins)
            .map_err(SettingsError::Invalid)?;
        crate::http::client_address::TrustedProxies::parse(&self.http.trusted_proxies)
            .map_err(SettingsError::Invalid)?;
        if let Some(bind) = self.http.metrics_bind() {
            bind.parse::<SocketAddr>().map_err(|_| {
                SettingsError::Invalid(format!(
                    "http.metrics_bind must be an IP address and port such as 127.0.0.1:9100, \
                     not {bind:?}"
                ))
            })?;
        }
        for url in &self.amqp.urls {
            check_url("amqp.urls", url, &["amqp", "amqps"])?;
        }
        self.http.bind.parse::<SocketAddr>().map_err(|_| {
            SettingsError::Invalid(format!(
                "http.bind must be an IP address and port such as 127.0.0.1:8080, not {:?}",
                self.http.bind
            ))
        })?;
        Ok(())
    }
}

/// A URL setting must be one URL of an expected scheme with a host. The message never quotes
/// the value itself, which may hold a password; it quotes the redacted form at most.
fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), SettingsError> {
    let invalid = |why: &str| {
        SettingsError::Invalid(format!("{key} ({}) {why}", crate::retry::redact(value)))
    };
    if value.matches("://").count() > 1 {
        return Err(invalid(
            "holds more than one URL; give exactly one (several nodes go in amqp.urls)",
        ));
    }
    let url = url::Url::parse(value.trim()).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(invalid(&format!(
            "must start with {}://",
            schemes.join(":// or ")
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    Ok(())
}

/// `database.url` must be one PostgreSQL URL with at least one host (several, libpq's way, are
/// fine) that tokio-postgres can read. Like [`check_url`], it quotes the redacted form at most.
fn check_database_url(value: &str) -> Result<(), SettingsError> {
    let invalid = |why: &str| {
        SettingsError::Invalid(format!(
            "database.url ({}) {why}",
            crate::retry::redact(value)
        ))
    };
    if value.matches("://").count() > 1 {
        return Err(invalid(
            "holds more than one URL; several hosts go in one URL: postgres://u@a:5432,b:5432/db",
        ));
    }
    crate::store::pg_url::PgUrl::parse(value).map_err(|why| invalid(&why))?;
    Ok(())
}
