//! Typed configuration: built-in defaults (`config/default.toml`, compiled in), the same file in the
//! working directory if present, the file named by `HERALD_CONFIG`, then `HERALD__SECTION__KEY`
//! environment variables, later sources winning.

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;
use std::time::Duration;

const DEFAULTS: &str = include_str!("../config/default.toml");

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
    pub workers: usize,
}

/// Deliberately not `Debug`: the URL may carry a password, and settings must never reach a log.
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub create_if_missing: bool,
    pub pool_size: usize,
    pub acquire_timeout_ms: u64,
}

#[derive(Clone, Deserialize)]
pub struct AmqpSettings {
    pub url: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RealtimeSettings {
    pub exchange: String,
    pub ping_interval_secs: u64,
    pub client_timeout_secs: u64,
    pub queue_expires_ms: u32,
    pub queue_max_length: u32,
    pub max_frame_bytes: usize,
    pub fanout_page_size: i64,
    pub max_confirms_in_flight: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    pub token_ttl_secs: u64,
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
        let mut builder = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::with_name("config/default.toml").required(false));
        if let Ok(path) = std::env::var("HERALD_CONFIG") {
            builder = builder.add_source(File::with_name(&path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("HERALD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
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
                rt.max_confirms_in_flight > 0,
                "realtime.max_confirms_in_flight must be > 0",
            ),
            (
                self.database.pool_size > 0,
                "database.pool_size must be > 0",
            ),
            (
                self.http.body_limit_bytes > 0,
                "http.body_limit_bytes must be > 0",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(SettingsError::Invalid((*why).to_owned())),
            None => Ok(()),
        }
    }
}

impl RealtimeSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs)
    }
}
