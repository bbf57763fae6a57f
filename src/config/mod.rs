//! Typed configuration: built-in defaults (`config/default.toml`, compiled in), the same file in the
//! working directory if present, the file named by `HERALD_CONFIG`, then `HERALD__SECTION__KEY`
//! environment variables, later sources winning.

use std::collections::HashMap;
use std::time::Duration;

mod validate;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Longest watchdog period or timeout accepted (a week): beyond it timers overflow, and no
/// client should be kept that long without a sign of life.
const MAX_TIMER_SECS: u64 = 7 * 24 * 3600;

/// Longest an `Idempotency-Key` may be remembered: 30 days.
const MAX_IDEMPOTENCY_TTL_SECS: u64 = 30 * 24 * 3600;

#[derive(Clone, Deserialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub realtime: RealtimeSettings,
    pub auth: AuthSettings,
}

#[derive(Clone, Deserialize)]
pub struct HttpSettings {
    pub bind: String,
    pub body_limit_bytes: usize,
    /// A request body must arrive whole within this long, or the request gets 408.
    pub body_timeout_secs: u64,
    pub workers: usize,
    /// Origins browsers may call the API and open the feed from (see `http::cors`); empty:
    /// no CORS. In the environment: comma-separated.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed; empty: none,
    /// and every request is charged to its TCP peer. In the environment: comma-separated.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Searches one client address may make per `search_window_secs`; 0: unlimited.
    pub searches_per_address: u32,
    pub search_window_secs: u64,
    /// A listen address of its own for `/metrics` (which then leaves the main listener);
    /// unset or empty: `/metrics` is served with the API.
    #[serde(default)]
    pub metrics_bind: Option<String>,
    /// How long a write's `Idempotency-Key` is remembered (per user): a repeat within it gets the
    /// first outcome.
    pub idempotency_ttl_secs: u64,
}

impl HttpSettings {
    pub fn metrics_bind(&self) -> Option<&str> {
        non_empty(&self.metrics_bind)
    }

    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl_secs)
    }
}

/// Deliberately not `Debug`: the URL may carry a password, and settings must never reach a log.
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub create_if_missing: bool,
    pub pool_size: usize,
    pub acquire_timeout_ms: u64,
    /// `statement_timeout` of the pool's connections (API requests and feed history), in
    /// milliseconds: no request holds a pooled connection longer. 0: none.
    pub statement_timeout_ms: u64,
    /// PEM bundle of the CAs `sslmode=verify-ca|verify-full` trusts; unset: the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl DatabaseSettings {
    /// `ca_file`, unless unset or empty.
    pub fn ca_file(&self) -> Option<&str> {
        non_empty(&self.ca_file)
    }
}

#[derive(Clone, Deserialize)]
pub struct AmqpSettings {
    pub url: String,
    /// Several endpoints (the nodes of a cluster), tried in turn; when set, wins over `url`.
    /// In the environment: `HERALD__AMQP__URLS=amqp://…,amqp://…`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// PEM bundle of the CAs `amqps://` trusts; unset: the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// A client certificate (PEM, with its chain) and its key, presented to a broker that asks.
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

/// An optional path setting, with an empty value read as unset (handy in the environment).
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl AmqpSettings {
    pub fn ca_file(&self) -> Option<&str> {
        non_empty(&self.ca_file)
    }

    pub fn cert_file(&self) -> Option<&str> {
        non_empty(&self.cert_file)
    }

    pub fn key_file(&self) -> Option<&str> {
        non_empty(&self.key_file)
    }

    /// The URLs herald may connect to, in the order it tries them.
    pub fn endpoints(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }
}

/// How a node takes its events from RabbitMQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// One queue per herald instance; routing keys are bound while a local session needs them
    /// and the registry hands each delivery to the right sessions.
    Node,
    /// One queue per WebSocket session, bound to its user's routing key.
    Session,
}

impl QueueMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueMode::Node => "node",
            QueueMode::Session => "session",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct RealtimeSettings {
    pub exchange: String,
    pub queue_mode: QueueMode,
    pub ping_interval_secs: u64,
    pub client_timeout_secs: u64,
    pub queue_expires_ms: u32,
    pub queue_max_length: u32,
    pub max_frame_bytes: usize,
    pub fanout_page_size: i64,
    pub max_confirms_in_flight: usize,
    pub node_queue_max_length: u32,
    pub node_prefetch: u16,
    pub session_mailbox: usize,
    pub celebrity_followers: i64,
    /// Node mode: celebrities' events go under this many shard keys, each bound once by every
    /// node (see `realtime::broker::shards`); 0 binds `author.<id>` per author watched instead.
    /// Every instance of a deployment must agree.
    pub author_shards: u16,
    /// Node mode: `user.<id>` messages go under this many shard keys, a node binding a shard
    /// while a local session's user is in it; 0 (the default) binds `user.<id>` per user.
    pub user_shards: u16,
    pub history_max_events: i64,
    pub history_ttl_secs: u64,
    pub relay_batch: i64,
    pub write_timeout_secs: u64,
    pub socket_send_buffer_bytes: usize,
    /// Open feed sessions one user may hold on this instance; the next upgrade gets 429.
    pub max_sessions_per_user: usize,
    /// Open feed sessions one client address may hold on this instance; the next gets 429.
    pub max_sessions_per_address: usize,
    /// Open feed sessions this instance holds at most; the next upgrade gets 503. 0: derived
    /// from the open-files limit (each session takes two descriptors).
    pub max_sessions: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    pub token_ttl_secs: u64,
    /// Password hashes computed at once; 0 means one per core.
    pub hash_concurrency: usize,
    /// Hashes that may wait for a free hasher; past it, 503 with `Retry-After`.
    pub hash_queue: usize,
    /// Free failed logins for one user from one address within the window; past them, that
    /// address waits ever longer (429) for that user. 0: no limit.
    pub login_failures_per_user_address: u32,
    /// Free failed logins from one address (any users); past them, ever longer waits.
    pub login_failures_per_address: u32,
    /// Failed logins for one user from all addresses; past it, addresses that have failed for
    /// this user wait ever longer. Others are never refused.
    pub login_failures_per_user: u32,
    pub login_failure_window_secs: u64,
    /// Password checks one user, and one address, may have under way at once; past it, 429
    /// (retry in a second). 0: no limit.
    pub login_checks_in_flight_per_user: u32,
    pub login_checks_in_flight_per_address: u32,
    /// Registrations one client address may make per `registration_window_secs`; 0: unlimited.
    pub registrations_per_address: u32,
    pub registration_window_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads settings from every source, in order of precedence.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(std::env::var("HERALD_CONFIG").ok().as_deref(), None)
    }

    /// Loads settings with an explicit override file and, for tests, an explicit environment
    /// (`None` reads the process environment).
    pub fn load_from(
        config_file: Option<&str>,
        environment: Option<HashMap<String, String>>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::with_name("config/default.toml").required(false));
        if let Some(path) = config_file {
            builder = builder.add_source(File::with_name(path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("HERALD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("amqp.urls")
                    .with_list_parse_key("http.cors_origins")
                    .with_list_parse_key("http.trusted_proxies")
                    .source(environment),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }
}

impl RealtimeSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs)
    }

    pub fn history_ttl(&self) -> Duration {
        Duration::from_secs(self.history_ttl_secs)
    }

    /// Live events a session may hold while its gap is being filled: the history bound plus a
    /// mailbox's worth.
    pub fn held_max(&self) -> usize {
        usize::try_from(self.history_max_events)
            .unwrap_or(usize::MAX)
            .saturating_add(self.session_mailbox)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}

impl AuthSettings {
    /// `hash_concurrency`, with 0 read as the number of cores.
    pub fn hashers(&self) -> usize {
        match self.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::Settings;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_match_the_contract() {
        let settings = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(settings.http.bind, "127.0.0.1:8080");
        assert_eq!(
            settings.database.url,
            "postgres://postgres@127.0.0.1:5432/herald"
        );
        assert_eq!(settings.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(settings.realtime.exchange, "herald.feed");
        assert_eq!(settings.realtime.ping_interval_secs, 10);
        assert_eq!(settings.realtime.client_timeout_secs, 30);
        assert_eq!(settings.realtime.queue_mode, super::QueueMode::Node);
    }

    #[test]
    fn several_amqp_urls_come_as_a_list_and_win_over_the_one() {
        let settings = Settings::load_from(
            None,
            env(&[(
                "HERALD__AMQP__URLS",
                "amqp://u:p@one:5672/%2f,amqp://u:p@two:5672/%2f",
            )]),
        )
        .expect("loads");
        assert_eq!(
            settings.amqp.endpoints(),
            vec!["amqp://u:p@one:5672/%2f", "amqp://u:p@two:5672/%2f"]
        );
        let one = Settings::load_from(None, env(&[])).expect("loads");
        assert_eq!(one.amqp.endpoints(), vec![one.amqp.url.as_str()]);
        let bad = Settings::load_from(
            None,
            env(&[("HERALD__AMQP__URLS", "amqp://one/%2f,http://two/")]),
        );
        let error = bad.err().expect("refused").to_string();
        assert!(error.contains("amqp.urls"), "{error}");
    }

    #[test]
    fn tls_and_cors_settings_are_checked_at_load() {
        let defaults = Settings::load_from(None, env(&[])).expect("loads");
        assert!(defaults.http.cors_origins.is_empty());
        assert_eq!(defaults.database.ca_file(), None);
        assert_eq!(defaults.amqp.ca_file(), None);
        let set = Settings::load_from(
            None,
            env(&[
                (
                    "HERALD__HTTP__CORS_ORIGINS",
                    "https://app.example.com,http://localhost:3000",
                ),
                (
                    "HERALD__DATABASE__URL",
                    "postgres://h/db?sslmode=verify-full",
                ),
                ("HERALD__DATABASE__CA_FILE", "/etc/herald/pg-ca.pem"),
                ("HERALD__AMQP__CA_FILE", ""),
            ]),
        )
        .expect("loads");
        assert_eq!(set.http.cors_origins.len(), 2);
        assert_eq!(set.database.ca_file(), Some("/etc/herald/pg-ca.pem"));
        assert_eq!(set.amqp.ca_file(), None);
        for (key, value, named) in [
            (
                "HERALD__HTTP__CORS_ORIGINS",
                "app.example.com",
                "cors_origins",
            ),
            (
                "HERALD__DATABASE__URL",
                "postgres://u:hunter2@h/db?sslmode=allow",
                "sslmode",
            ),
            (
                "HERALD__AMQP__CERT_FILE",
                "/etc/herald/client.pem",
                "key_file",
            ),
        ] {
            let error = Settings::load_from(None, env(&[(key, value)]))
                .err()
                .expect("refused")
                .to_string();
            assert!(error.contains(named), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn database_url_may_name_several_hosts() {
        let url =
            "postgres://herald:s3cret@db-a:5432,db-b:5432/herald?target_session_attrs=read-write";
        let settings =
            Settings::load_from(None, env(&[("HERALD__DATABASE__URL", url)])).expect("loads");
        assert_eq!(settings.database.url, url);
        assert_eq!(settings.http.idempotency_ttl_secs, 86400);
        for bad in [
            "postgres://herald:s3cret@db-a,,db-b/herald",
            "postgres://herald:s3cret@db-a,db-b/herald?target_session_attrs=sometimes",
            "mysql://herald:s3cret@db-a/herald",
        ] {
            let error = Settings::load_from(None, env(&[("HERALD__DATABASE__URL", bad)]))
                .err()
                .expect("refused")
                .to_string();
            assert!(error.contains("database.url"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn the_queue_mode_is_node_or_session() {
        let session =
            Settings::load_from(None, env(&[("HERALD__REALTIME__QUEUE_MODE", "session")]))
                .expect("loads");
        assert_eq!(session.realtime.queue_mode, super::QueueMode::Session);
        assert!(
            Settings::load_from(None, env(&[("HERALD__REALTIME__QUEUE_MODE", "cluster")])).is_err()
        );
    }

    #[test]
    fn a_config_file_overrides_defaults_and_the_environment_overrides_both() {
        let dir = std::env::temp_dir().join(format!("herald-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("override.toml");
        std::fs::write(
            &file,
            "[http]\nbind = \"0.0.0.0:9000\"\n[realtime]\nexchange = \"from.file\"\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf-8 path");

        let settings = Settings::load_from(Some(path), env(&[])).expect("loads");
        assert_eq!(settings.http.bind, "0.0.0.0:9000");
        assert_eq!(settings.realtime.exchange, "from.file");

        let settings = Settings::load_from(
            Some(path),
            env(&[
                ("HERALD__REALTIME__EXCHANGE", "from.env"),
                ("HERALD__REALTIME__PING_INTERVAL_SECS", "3"),
            ]),
        )
        .expect("loads");
        assert_eq!(settings.http.bind, "0.0.0.0:9000");
        assert_eq!(settings.realtime.exchange, "from.env");
        assert_eq!(settings.realtime.ping_interval_secs, 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let missing = Settings::load_from(Some("/nonexistent/herald.toml"), env(&[]));
        assert!(missing.is_err());
        let not_a_number = Settings::load_from(
            None,
            env(&[("HERALD__REALTIME__PING_INTERVAL_SECS", "soon")]),
        );
        assert!(not_a_number.is_err());
        for (key, value) in [
            ("HERALD__REALTIME__QUEUE_EXPIRES_MS", "0"),
            ("HERALD__REALTIME__MAX_CONFIRMS_IN_FLIGHT", "99999999999"),
            ("HERALD__REALTIME__CLIENT_TIMEOUT_SECS", "99999999999"),
        ] {
            assert!(
                Settings::load_from(None, env(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
        let inverted = Settings::load_from(
            None,
            env(&[
                ("HERALD__REALTIME__PING_INTERVAL_SECS", "30"),
                ("HERALD__REALTIME__CLIENT_TIMEOUT_SECS", "10"),
            ]),
        );
        let error = inverted.err().expect("refused").to_string();
        assert!(error.contains("client_timeout_secs"), "{error}");
    }
}
